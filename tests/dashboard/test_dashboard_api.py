"""The dashboard's HTTP API with a plain client: authentication, the rate
limit, validation, upload limits and static assets."""

import hashlib
import json
import os

import httpx
import pytest

from support.dashboard import PASSWORD, Dashboard
from support.fixtures import made

FAST = {"device_name": "bench-1", "sample_interval_ms": 200,
        "mqtt_topic_prefix": "devices/bench-1", "telemetry_enabled": True}


@pytest.fixture
def dashboard(tmp_path):
    yield from made(lambda: Dashboard(str(tmp_path / "data"), dict(FAST)), Dashboard.stop)


def log_in(client: httpx.Client) -> httpx.Client:
    r = client.post("/api/login", json={"password": PASSWORD})
    assert r.status_code == 200 and "session" in client.cookies
    return client


def test_unauthenticated_api_calls_get_401(dashboard):
    d = dashboard()
    with httpx.Client(base_url=d.url, timeout=10) as c:
        for method, path in [("GET", "/api/settings"), ("POST", "/api/settings"),
                             ("GET", "/api/metrics"), ("GET", "/api/events"),
                             ("GET", "/ws"), ("POST", "/api/logout")]:
            r = c.request(method, path, content=b"{}")
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]
        # Refused at the head: the body is never read.
        r = c.post("/api/upload", content=b"x" * 1000)
        assert r.status_code == 401
        assert c.get("/api/session").json() == {"authenticated": False}
    assert os.listdir(os.path.join(d.data, "uploads")) == []


def test_wrong_passwords_are_rate_limited(dashboard):
    d = dashboard()
    with httpx.Client(base_url=d.url, timeout=10) as c:
        codes = [c.post("/api/login", json={"password": "nope%d" % i}).status_code
                 for i in range(6)]
        assert codes == [401] * 5 + [429]
        r = c.post("/api/login", json={"password": PASSWORD})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
        assert c.post("/api/login", content=b"not json").status_code in (400, 429)


def test_login_session_and_logout(dashboard):
    d = dashboard()
    with httpx.Client(base_url=d.url, timeout=10) as c:
        log_in(c)
        assert c.get("/api/session").json() == {"authenticated": True}
        m = c.get("/api/metrics").json()
        assert m["type"] == "metrics" and m["rss"] > 0 and m["device"] == "bench-1"
        assert c.post("/api/logout").status_code == 200
        assert c.get("/api/settings").status_code == 401


def test_invalid_settings_get_422_and_nothing_is_saved(dashboard):
    d = dashboard()
    before = d.settings_file()
    with httpx.Client(base_url=d.url, timeout=10) as c:
        log_in(c)
        bad = [dict(FAST, sample_interval_ms=5), dict(FAST, device_name=""),
               dict(FAST, mqtt_topic_prefix="a/#"), dict(FAST, telemetry_enabled="yes"),
               dict(FAST, extra=1), {"device_name": "x"}, [1, 2]]
        for settings in bad:
            r = c.post("/api/settings", json=settings)
            assert r.status_code == 422, settings
            assert r.json()["error"]
        assert c.post("/api/settings", content=b"{not json").status_code == 400
        assert d.settings_file() == before
        good = dict(FAST, device_name="renamed")
        r = c.post("/api/settings", json=good)
        assert r.status_code == 200 and r.json() == good
    assert d.settings_file() == good
    assert not [n for n in os.listdir(d.data) if n.startswith(".settings-")]


def test_upload_checksum_and_oversize_refused(dashboard):
    d = dashboard()
    blob = os.urandom(50_000)
    with httpx.Client(base_url=d.url, timeout=10) as c:
        log_in(c)
        r = c.post("/api/upload", content=blob, headers={"X-File-Name": "../fw.bin"})
        assert r.status_code == 200
        assert r.json() == {"name": "fw.bin", "size": len(blob),
                            "sha256": hashlib.sha256(blob).hexdigest()}
        r = c.post("/api/upload", content=b"y" * (64 * 1024 + 1),
                   headers={"X-File-Name": "big.bin"})
        assert r.status_code == 413
    uploads = os.path.join(d.data, "uploads")
    assert sorted(os.listdir(uploads)) == ["fw.bin"]
    with open(os.path.join(uploads, "fw.bin"), "rb") as f:
        assert f.read() == blob


def test_static_assets_have_etag_and_gzip(dashboard):
    d = dashboard()
    with httpx.Client(base_url=d.url, timeout=10) as c:
        r = c.get("/app.js", headers={"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in r.headers["Vary"] and "import" in r.text
        etag = r.headers["ETag"]
        again = c.get("/app.js", headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
        assert again.status_code == 304
        page = c.get("/")
        assert page.status_code == 200 and "<title>" in page.text
        assert c.get("/.hidden").status_code == 404


def test_server_sent_events_fallback_streams_values(dashboard):
    d = dashboard()
    with httpx.Client(base_url=d.url, timeout=10) as c:
        log_in(c)
        with c.stream("GET", "/api/events") as r:
            assert r.status_code == 200
            assert r.headers["Content-Type"] == "text/event-stream"
            seen = []
            for line in r.iter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if len(seen) == 2:
                        break
    assert all(m["type"] == "metrics" and m["device"] == "bench-1" for m in seen)
