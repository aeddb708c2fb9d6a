"""MQTT brokers and clients compared in one run.

    python3 bench/mqtt_bench.py                 # brokers, then clients
    python3 bench/mqtt_bench.py --only clients
    python3 bench/mqtt_bench.py --scale 0.3     # fewer messages: a quick look

Brokers: our MqttBroker on CPython and on PyPy (``plain``, and with sessions,
an ACL file, $SYS and a bridge switched on: ``features``, see
``servers/mqtt_broker.py``), mosquitto, and amqtt (from ``bench/.venv-amqtt``,
made with ``python3 -m venv bench/.venv-amqtt && bench/.venv-amqtt/bin/pip
install amqtt`` when missing; its rows are left out when that fails).  The
load generator is ``bin/mqtt_load`` (C, on the vendored Mongoose, built
here from ``mqtt_load.c``): it runs on the same 2 cores.  For each scenario
it prints deliveries/s and the p50/p99 latency from publish to delivery;
this script adds the broker's CPU (utime + stime from ``/proc``) per
delivery.

Clients: QoS 0 and QoS 1 publishes to mosquitto, as fast as the client
goes: ``Connection.mqtt_pub`` (``conn``, no in-flight window) and
``MqttClient.publish`` (``client``; ``client-acks`` with a handler that takes
every PUBACK) against paho-mqtt's ``publish`` (paho from the test
virtualenv), timed until the last message has left (QoS 0) or been
acknowledged (QoS 1), after an untimed first round of up to 20,000 (PyPy's
JIT warms up).  Every client makes all its publishes first (paho's network
thread starts sending meanwhile; ours when the loop runs, or when 1 MiB of
output waits) and then waits for the last; ``MqttClient`` and paho both
keep at most 20 QoS 1 messages in flight.  Each run prints publishes/s and the client process's
CPU (user + system, all its threads) per publish; with ``--runs`` > 1 the
runs are interleaved and a table of medians and ranges follows.
``--clients`` picks the kinds; ``before-client`` is ``client`` on the
``--before`` package.  mosquitto's default Nagle on its sockets holds the
last PUBACKs of a run until the client's delayed TCP ACK (~40 ms): a fixed
cost per run that weighs on the fastest client most; ``--nodelay`` runs
mosquitto with ``set_tcp_nodelay true``.  ``--only client-count`` counts instructions per
publish of our clients on CPython with callgrind instead (see
``client_instructions``).

Interpreters: ``.venv-cpython`` and ``.venv-pypy`` of this checkout (``make
install-cpython install-pypy``); override with ``--cpython``/``--pypy``.

Before/after in one run: ``--before cpython=DIR,pypy=DIR`` adds brokers
``before-INTERP-VARIANT`` (and the client ``before-client``) that import
the ``cymongoose`` package copied into DIR (PYTHONPATH), e.g. a copy of the installed package taken before a
change.  ``--loads 50->1 --qos 0 --runs 3`` narrows the scenarios and
repeats each, printing the median and the range of the CPU per delivery.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOAD = os.path.join(HERE, "bin", "mqtt_load")
AMQTT = os.path.join(HERE, ".venv-amqtt", "bin", "amqtt")
TICK = os.sysconf("SC_CLK_TCK")
BEFORE: Dict[str, str] = {}  # interpreter -> PYTHONPATH of the "before" package

# name, publishers, subscribers, messages per publisher, window per publisher
SCENARIOS = [("1->1", 1, 1, 30000, 100), ("1->100", 1, 100, 600, 10),
             ("100->1", 100, 1, 300, 5), ("1->50", 1, 50, 1200, 10),
             ("50->1", 50, 1, 600, 5)]


def free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("broker on port %d did not start" % port)


def build_load() -> None:
    src = os.path.join(HERE, "mqtt_load.c")
    if os.path.exists(LOAD) and os.path.getmtime(LOAD) > os.path.getmtime(src):
        return
    os.makedirs(os.path.dirname(LOAD), exist_ok=True)
    subprocess.run(["gcc", "-O3", "-DMG_ENABLE_IPV6=1", "-I", os.path.join(ROOT, "vendor"),
                    "-o", LOAD, src, os.path.join(ROOT, "vendor", "mongoose.c")], check=True)


def start_broker(kind: str, port: int, workdir: str, python: Dict[str, str],
                 upstream: int, nodelay: bool = False) -> subprocess.Popen:
    log = open(os.path.join(workdir, "%s.log" % kind), "w")
    env = None
    if kind == "mosquitto":
        conf = os.path.join(workdir, "mosquitto-%d.conf" % port)
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n" % port)
            if nodelay:
                f.write("set_tcp_nodelay true\n")
        cmd = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", conf]
    elif kind == "amqtt":
        conf = os.path.join(workdir, "amqtt.yaml")
        with open(conf, "w") as f:
            f.write("listeners:\n  default:\n    type: tcp\n    bind: 127.0.0.1:%d\n"
                    "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                    "    allow_anonymous: true\n" % port)
        cmd = [AMQTT, "-c", conf]
    else:  # ours-<interp>-<variant> or before-<interp>-<variant>
        who, interp, variant = kind.split("-")
        cmd = [python[interp], os.path.join(HERE, "servers", "mqtt_broker.py"), str(port),
               variant, str(upstream)]
        if who == "before":
            env = dict(os.environ, PYTHONPATH=BEFORE[interp])
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    wait_port(port, proc)
    return proc


def run_load(port: int, pubs: int, subs: int, qos: int, per_pub: int, window: int,
             keep: bool) -> Optional[Dict[str, float]]:
    out = subprocess.run([LOAD, "mqtt://127.0.0.1:%d" % port, str(pubs), str(subs), str(qos),
                          str(per_pub), str(window), "1" if keep else "0"],
                         capture_output=True, text=True, timeout=120).stdout
    found = dict(re.findall(r"(\w+)=([\d.]+)", out))
    return {k: float(v) for k, v in found.items()} if found else None


def brokers(args: argparse.Namespace, python: Dict[str, str]) -> None:
    build_load()
    kinds = ["mosquitto"]
    for interp in python:
        kinds += ["ours-%s-plain" % interp, "ours-%s-features" % interp]
        if interp in BEFORE:
            kinds += ["before-%s-plain" % interp, "before-%s-features" % interp]
    if os.path.exists(AMQTT):
        kinds.append("amqtt")
    if args.brokers:
        kinds = [k for k in kinds if k in args.brokers.split(",")]
    workdir = tempfile.mkdtemp(prefix="mqtt-bench-")
    upstream_port = free_port()
    upstream = start_broker("mosquitto", upstream_port, workdir, python, 0)
    print("%-22s %-7s %3s %12s %9s %9s %13s" % ("broker", "load", "qos", "deliveries/s",
                                               "p50 us", "p99 us", "CPU us/deliv"))
    try:
        scenarios = [sc for sc in SCENARIOS
                     if not args.loads or sc[0] in args.loads.split(",")]
        for name, pubs, subs, per_pub, window in scenarios:
            for qos in [int(q) for q in args.qos.split(",")]:
                for kind in kinds:
                    count = per_pub
                    if kind == "amqtt" and subs * pubs * per_pub > 20000:
                        count = max(1, 20000 // (subs * pubs))  # amqtt is slow
                    cpus = []
                    for _ in range(args.runs):
                        cpu_us = one_run(args, kind, name, pubs, subs, qos, count, window,
                                         workdir, python, upstream_port)
                        if cpu_us is not None:
                            cpus.append(cpu_us)
                    if args.runs > 1 and cpus:
                        cpus.sort()
                        print("%-22s %-7s %3d  CPU us/deliv median %.2f (%.2f-%.2f, %d runs)"
                              % (kind, name, qos, cpus[len(cpus) // 2], cpus[0], cpus[-1],
                                 len(cpus)), flush=True)
    finally:
        upstream.terminate()
        upstream.wait(20)


def one_run(args: argparse.Namespace, kind: str, name: str, pubs: int, subs: int, qos: int,
            per_pub: int, window: int, workdir: str, python: Dict[str, str],
            upstream_port: int) -> Optional[float]:
    """One load run against a fresh broker; prints its row, returns CPU us per delivery."""
    port = free_port()
    proc = start_broker(kind, port, workdir, python, upstream_port)
    try:
        n = max(1, int(per_pub * args.scale))
        before = cpu_seconds(proc.pid)
        res = run_load(port, pubs, subs, qos, n, window,
                       keep=kind.endswith("features"))
        cpu = cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(20)
    if not res or not res.get("deliveries"):
        print("%-22s %-7s %3d  (no result)" % (kind, name, qos))
        return None
    print("%-22s %-7s %3d %12.0f %9.0f %9.0f %13.2f%s" % (
        kind, name, qos, res["rate"], res["p50_us"], res["p99_us"],
        cpu * 1e6 / res["deliveries"],
        "  lost %d" % res["lost"] if res.get("lost") else ""), flush=True)
    return cpu * 1e6 / res["deliveries"]


CLIENT = r"""
import resource, sys, time
N, qos, kind, port = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
WARM = min(N, 20000)  # an untimed first round: PyPy's JIT compiles it
payload = b"x" * 16


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return r.ru_utime + r.ru_stime


if kind == "paho":
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho")
    c.max_queued_messages_set(0)
    c.max_inflight_messages_set(20)
    c.connect("127.0.0.1", port)
    c.loop_start()
    while not c.is_connected():
        time.sleep(0.01)

    def run(n):
        infos = [c.publish("bench/c", payload, qos) for _ in range(n)]
        for i in infos:
            i.wait_for_publish(60)

    def stop():
        c.disconnect()
        c.loop_stop()
else:
    import cymongoose as cm
    mgr = cm.Manager()
    acks = []
    if kind == "conn":
        opened = []

        def h(conn, ev, data):
            if ev == cm.MG_EV_MQTT_OPEN:
                opened.append(data)
            elif ev == cm.MG_EV_MQTT_CMD and data.cmd == 4:
                acks.append(1)
        conn = mgr.mqtt_connect("mqtt://127.0.0.1:%d" % port, h, client_id="bench-ours")
        while not opened:
            mgr.poll(5)

        def run(n):
            del acks[:]
            for _ in range(n):
                conn.mqtt_pub("bench/c", payload, qos)
                if qos == 0 and conn.send_len > 1 << 20:
                    mgr.poll(0)
            while (qos and len(acks) < n) or conn.send_len:
                mgr.poll(1)

        def stop():
            mgr.close()
    else:  # client, client-acks (a handler that takes every PUBACK)
        handler = None
        if kind == "client-acks":
            @cm.handles(cm.MG_EV_MQTT_CMD)
            def handler(conn, ev, data):
                if data.cmd == 4:
                    acks.append(data.id)
        client = cm.MqttClient(mgr, "mqtt://127.0.0.1:%d" % port, handler,
                               client_id="bench-client", max_queued=max(N, WARM))
        while not client.connected:
            mgr.poll(5)

        def run(n):
            # as paho's run: every publish made first (QoS 1 ones queue behind the
            # window), then the loop runs until the last has been acknowledged
            for _ in range(n):
                client.publish("bench/c", payload, qos)
                if qos == 0 and client.connection.send_len > 1 << 20:
                    mgr.poll(0)
            while client.queued or client.inflight or client.connection.send_len:
                mgr.poll(1)

        def stop():
            assert kind != "client-acks" or qos == 0 or len(acks) == WARM + N
            client.close()
            mgr.close()
run(WARM)
t, t_cpu = time.perf_counter(), cpu()
run(N)
dt, dt_cpu = time.perf_counter() - t, cpu() - t_cpu
stop()
print("rate=%.0f cpu_us=%.3f" % (N / dt, dt_cpu * 1e6 / N))
"""

CLIENT_KINDS = ("paho", "conn", "client", "client-acks", "before-client")


def median_range(values: List[float], unit: float = 1.0, fmt: str = "%.2f") -> str:
    """The median, then the range in brackets (the upper middle for an even count)."""
    values = sorted(v / unit for v in values)
    mid = fmt % values[len(values) // 2]
    if len(values) < 2:
        return mid
    return "%s (%s-%s)" % (mid, fmt % values[0], fmt % values[-1])


def clients(args: argparse.Namespace, python: Dict[str, str]) -> None:
    """Each client kind, interpreter and QoS ``--runs`` times, interleaved."""
    workdir = tempfile.mkdtemp(prefix="mqtt-bench-")
    port = free_port()
    mosq = start_broker("mosquitto", port, workdir, python, 0, args.nodelay)
    script = os.path.join(workdir, "client.py")
    with open(script, "w") as f:
        f.write(CLIENT)
    kinds = [k for k in (args.clients or "paho,conn,client,before-client").split(",")
             if k in CLIENT_KINDS]
    qos_levels = [int(q) for q in args.qos.split(",")]
    results: Dict[Tuple[str, str, int], List[Tuple[float, float]]] = {}
    print("\n%-8s %-14s %3s %12s %14s" % ("python", "client", "qos", "publishes/s",
                                         "CPU us/publish"))
    try:
        for _ in range(args.runs):
            for interp, exe in python.items():
                for qos in qos_levels:
                    # paho numbers its messages from one 16-bit counter, queued ones
                    # included: beyond 65535 queued publishes it refuses more
                    n = max(100, int((50000 if qos == 0 else 20000) * args.scale))
                    n = min(n, 60000) if qos else n
                    for kind in kinds:
                        env = None
                        if kind.startswith("before-"):
                            if interp not in BEFORE:
                                continue
                            env = dict(os.environ, PYTHONPATH=BEFORE[interp])
                        out = subprocess.run([exe, script, str(n), str(qos),
                                              kind.replace("before-", ""), str(port)],
                                             capture_output=True, text=True, timeout=300,
                                             env=env)
                        found = re.search(r"rate=(\d+) cpu_us=([\d.]+)", out.stdout)
                        if not found:
                            print("%-8s %-14s %3d  failed: %s" % (interp, kind, qos,
                                                                 out.stderr[-300:]))
                            continue
                        rate, cpu_us = float(found.group(1)), float(found.group(2))
                        results.setdefault((interp, kind, qos), []).append((rate, cpu_us))
                        print("%-8s %-14s %3d %12.0f %14.2f" % (interp, kind, qos, rate,
                                                                cpu_us), flush=True)
    finally:
        mosq.terminate()
        mosq.wait(20)
    if args.runs < 2:
        return
    print("\nmedian (range) of %d runs; x paho = ratio of the medians" % args.runs)
    print("%-8s %-14s %3s %26s %8s %24s" % ("python", "client", "qos", "k publishes/s",
                                            "x paho", "CPU us/publish"))
    for (interp, kind, qos), runs in results.items():
        paho = results.get((interp, "paho", qos))
        rates = [r for r, _ in runs]
        ratio = ""
        if paho:
            ratio = "%.1f" % (sorted(rates)[len(rates) // 2]
                              / sorted(r for r, _ in paho)[len(paho) // 2])
        print("%-8s %-14s %3d %26s %8s %24s" % (interp, kind, qos,
                                                median_range(rates, 1000, "%.0f"), ratio,
                                                median_range([c for _, c in runs])))


def total_instructions(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in %s" % path)


def client_instructions(args: argparse.Namespace, python: Dict[str, str]) -> None:
    """Instructions per publish of our clients on CPython, counted by callgrind.

    Each kind runs twice under valgrind, with N and 2N timed publishes after
    the same warm-up; the difference over N cancels start-up and warm-up.
    Under valgrind the client is the slow side, so the broker's PUBACKs
    arrive in longer runs than at full speed: compare kinds, not loads.
    """
    workdir = tempfile.mkdtemp(prefix="mqtt-count-")
    port = free_port()
    mosq = start_broker("mosquitto", port, workdir, python, 0)
    script = os.path.join(workdir, "client.py")
    with open(script, "w") as f:
        f.write(CLIENT)
    exe = os.path.realpath(python["cpython"])  # valgrind does not follow a venv's symlink
    venv = os.path.dirname(os.path.dirname(python["cpython"]))
    site = [os.path.join(venv, "lib", d, "site-packages")
            for d in os.listdir(os.path.join(venv, "lib"))]
    kinds = [k for k in (args.clients or "client,before-client").split(",")
             if k != "paho" and (not k.startswith("before-") or "cpython" in BEFORE)]
    n = 20000
    print("\n%-14s %3s %22s" % ("client", "qos", "instructions/publish"))
    try:
        for qos in [int(q) for q in args.qos.split(",")]:
            for kind in kinds:
                path = os.pathsep.join(([BEFORE["cpython"]] if kind.startswith("before-")
                                        else []) + site)
                counts = []
                for count in (n, 2 * n):
                    out = os.path.join(workdir, "callgrind.%s.%d.%d" % (kind, qos, count))
                    subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
                                    exe, script, str(count), str(qos),
                                    kind.replace("before-", ""), str(port)],
                                   capture_output=True, text=True, timeout=900, check=True,
                                   env=dict(os.environ, PYTHONPATH=path))
                    counts.append(total_instructions(out))
                print("%-14s %3d %22.0f" % (kind, qos, (counts[1] - counts[0]) / n), flush=True)
    finally:
        mosq.terminate()
        mosq.wait(20)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["brokers", "clients", "client-count"])
    p.add_argument("--scale", type=float, default=1.0, help="multiply message counts")
    p.add_argument("--brokers", help="comma-separated subset, e.g. ours-cpython-plain,mosquitto")
    p.add_argument("--cpython", default=os.path.join(ROOT, ".venv-cpython", "bin", "python"))
    p.add_argument("--pypy", default=os.path.join(ROOT, ".venv-pypy", "bin", "python"))
    p.add_argument("--before", help="cpython=DIR,pypy=DIR: also run the package in DIR")
    p.add_argument("--loads", help="comma-separated scenarios, e.g. 50->1,1->50")
    p.add_argument("--qos", default="0,1", help="comma-separated QoS levels")
    p.add_argument("--runs", type=int, default=1, help="runs per broker and scenario")
    p.add_argument("--nodelay", action="store_true",
                   help="clients: mosquitto with set_tcp_nodelay (no Nagle on its PUBACKs)")
    p.add_argument("--clients", help="comma-separated subset of " + ",".join(CLIENT_KINDS))
    args = p.parse_args()
    for item in (args.before or "").split(","):
        if item:
            interp, _, path = item.partition("=")
            BEFORE[interp] = path
    python = {k: v for k, v in (("cpython", args.cpython), ("pypy", args.pypy))
              if os.path.exists(v)}
    print("# %s, %s" % (" ".join(sys.argv), time.strftime("%Y-%m-%d %H:%M")))
    if args.only in (None, "brokers"):
        brokers(args, python)
    if args.only in (None, "clients"):
        clients(args, python)
    if args.only == "client-count":
        client_instructions(args, python)


if __name__ == "__main__":
    main()
