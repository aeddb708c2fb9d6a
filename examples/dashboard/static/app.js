// The dashboard page: login, live values over WebSocket (SSE as a
// fallback), MQTT publish/subscribe, settings and a firmware upload.
import { Chart } from "/chart.js";

const $ = (id) => document.getElementById(id);
const chart = new Chart($("chart"), [
  { key: "cpu", color: "#1f6feb", label: "CPU %" },
  { key: "rps", color: "#2e7d32", label: "requests/s" },
  { key: "mps", color: "#ef6c00", label: "MQTT msgs/s" },
]);
let socket = null;
let events = null;

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = {};
  try { body = await response.json(); } catch (e) { body = {}; }
  return { status: response.status, body };
}

function show(loggedIn) {
  $("login").hidden = loggedIn;
  $("dashboard").hidden = !loggedIn;
  $("logout").hidden = !loggedIn;
  if (loggedIn) { connect(); loadSettings(); } else { disconnect(); }
}

function render(m) {
  $("cpu").textContent = m.cpu.toFixed(1);
  $("rss").textContent = (m.rss / 1048576).toFixed(1);
  $("connections").textContent = m.connections;
  $("rps").textContent = m.rps.toFixed(1);
  $("mps").textContent = m.mps.toFixed(1);
  $("requests").textContent = m.requests;
  $("device").textContent = m.device;
  $("clients").textContent = m.clients.length ? m.clients.join(", ") : "none";
  const rows = m.topics.map((t) => {
    const tr = document.createElement("tr");
    for (const value of [t.topic, t.count, t.last]) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    }
    return tr;
  });
  $("topics").replaceChildren(...rows);
  chart.push(m);
}

function onMessage(text) {
  const m = JSON.parse(text);
  if (m.type === "metrics") {
    render(m);
  } else if (m.type === "mqtt") {
    const li = document.createElement("li");
    li.textContent = `${m.topic}: ${m.payload}`;
    li.className = "mqtt-message";
    $("messages").prepend(li);
    while ($("messages").children.length > 50) $("messages").lastChild.remove();
  } else if (m.type === "published") {
    $("pub-status").textContent = `published to ${m.topic}`;
  } else if (m.type === "subscribed") {
    $("pub-status").textContent = `subscribed to ${m.filter}`;
  } else if (m.type === "error") {
    $("pub-status").textContent = m.error;
  }
}

function connect() {
  if (socket || events) return;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  let opened = false;
  socket = new WebSocket(url);
  socket.onopen = () => {
    opened = true;
    $("transport").textContent = "(WebSocket)";
    socket.send(JSON.stringify({ type: "subscribe", filter: $("sub-filter").value }));
  };
  socket.onmessage = (e) => onMessage(e.data);
  socket.onclose = () => {
    socket = null;
    if (!opened && $("logout").hidden === false) {
      // No WebSocket on this path: fall back to server-sent events.
      events = new EventSource("/api/events");
      events.onmessage = (e) => onMessage(e.data);
      $("transport").textContent = "(SSE)";
    }
  };
}

function disconnect() {
  if (socket) { socket.onclose = null; socket.close(); socket = null; }
  if (events) { events.close(); events = null; }
}

async function loadSettings() {
  const { status, body } = await api("/api/settings");
  if (status !== 200) return;
  for (const key of ["device_name", "sample_interval_ms", "mqtt_topic_prefix"]) $(key).value = body[key];
  $("telemetry_enabled").checked = body.telemetry_enabled;
}

$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const { status, body } = await api("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ password: $("password").value }),
  });
  $("password").value = "";
  if (status === 200) { $("login-error").textContent = ""; show(true); }
  else { $("login-error").textContent = body.error || `error ${status}`; }
});

$("logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" });
  show(false);
});

$("publish-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    $("pub-status").textContent = "not connected";
    return;
  }
  socket.send(JSON.stringify({ type: "publish", topic: $("pub-topic").value,
                               payload: $("pub-payload").value }));
});

$("subscribe-form").addEventListener("submit", (e) => {
  e.preventDefault();
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "subscribe", filter: $("sub-filter").value }));
  }
});

$("settings-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const settings = {
    device_name: $("device_name").value,
    sample_interval_ms: Number($("sample_interval_ms").value),
    mqtt_topic_prefix: $("mqtt_topic_prefix").value,
    telemetry_enabled: $("telemetry_enabled").checked,
  };
  const { status, body } = await api("/api/settings", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(settings),
  });
  $("settings-status").textContent = status === 200 ? "saved" : `not saved: ${body.error}`;
  $("settings-status").className = status === 200 ? "" : "error";
});

$("upload-button").addEventListener("click", () => {
  const file = $("upload-file").files[0];
  if (!file) { $("upload-result").textContent = "choose a file first"; return; }
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/upload");
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  xhr.setRequestHeader("X-File-Name", file.name);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) $("upload-progress").value = (100 * e.loaded) / e.total;
  };
  xhr.onload = () => {
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
    if (xhr.status === 200) {
      $("upload-progress").value = 100;
      $("upload-result").innerHTML = "";
      const code = document.createElement("code");
      code.id = "upload-sha256";
      code.textContent = body.sha256;
      $("upload-result").append(`${body.name}, ${body.size} bytes, SHA-256 `, code);
    } else {
      $("upload-result").textContent = `upload refused: ${body.error || xhr.status}`;
    }
  };
  xhr.onerror = () => { $("upload-result").textContent = "upload failed (connection closed)"; };
  xhr.send(file);
});

api("/api/session").then(({ body }) => show(Boolean(body.authenticated)));
