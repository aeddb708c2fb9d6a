"""The Eclipse Paho MQTT interoperability suite against a broker, one test at a time.

    PYTHONPATH=. python3 bench/mqtt_interop.py PAHO_TESTING [--broker ours|mosquitto]
        [--server-python PYTHON] [--acl] [-k NAME]

PAHO_TESTING is a checkout of https://github.com/eclipse/paho.mqtt.testing;
its ``interoperability/client_test.py`` (MQTT 3.1.1) and ``client_test5.py``
(MQTT 5) run against a broker this script starts on a free port: our
``python -m cymongoose mqtt-broker`` (under ``--server-python``) or
``mosquitto``, each with anonymous clients allowed.  ``--acl`` gives it an
ACL that refuses subscriptions to ``test/nosubscribe``, which the suites'
subscribe failure tests ask for.  Each test runs in its own process with a
time limit (``flow_control2`` waits for a DISCONNECT after 65,536
unacknowledged messages); the table says OK, FAIL or TIMEOUT for each.
Exit status 0 whatever the verdicts: the suite is the reference, not a gate.
"""

import argparse
import os
import pwd
import re
import socket
import subprocess
import sys
import tempfile
import time
from typing import List

# Run a suite file as __main__ with its host and port, and with unittest
# running only the named test (the files hand their own argv to unittest).
RUNNER = """
import runpy, sys, unittest
script, port, test = sys.argv[1:4]
real = unittest.main
unittest.main = lambda *a, **k: real(argv=[script, test], **k)
port_args = ["-p", port] if script.endswith("5.py") else ["--port=" + port]
sys.argv = [script, "--hostname=127.0.0.1"] + port_args
sys.path.insert(0, ".")
runpy.run_path(script, run_name="__main__")
"""


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def wait_listening(port: int, deadline: float) -> None:
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # the broker is still starting


def start_broker(kind: str, python: str, port: int, acl: bool, tmp: str) -> subprocess.Popen:
    acl_path = os.path.join(tmp, "acl")
    with open(acl_path, "w") as f:
        f.write("topic readwrite #\ntopic deny test/nosubscribe\n")
    if kind == "mosquitto":
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\n" % port)
            # started by root, mosquitto would become the user "mosquitto",
            # who cannot read an ACL file in our temporary directory
            f.write("user %s\n" % pwd.getpwuid(os.geteuid()).pw_name)
            if acl:
                f.write("acl_file %s\n" % acl_path)
        cmd = ["mosquitto", "-c", conf]
    else:
        cmd = [python, "-m", "cymongoose", "mqtt-broker", "--listen",
               "mqtt://127.0.0.1:%d" % port, "--sys-interval", "0"]
        if acl:
            cmd += ["--acl-file", acl_path]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, time.monotonic() + 30)
    return proc


def tests_of(path: str) -> List[str]:
    with open(path) as f:
        return re.findall(r"^\s+def (test\w+)\(self\)", f.read(), re.M)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paho_testing")
    ap.add_argument("--broker", choices=("ours", "mosquitto"), default="ours")
    ap.add_argument("--server-python", default=sys.executable)
    ap.add_argument("--acl", action="store_true")
    ap.add_argument("-k", default="", help="only tests whose name contains this")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    here = os.path.join(args.paho_testing, "interoperability")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        broker = start_broker(args.broker, args.server_python, port, args.acl, tmp)
        counts = {"OK": 0, "FAIL": 0, "TIMEOUT": 0}
        try:
            for script in ("client_test.py", "client_test5.py"):
                for test in tests_of(os.path.join(here, script)):
                    if args.k not in test:
                        continue
                    try:
                        done = subprocess.run(
                            [sys.executable, "-c", RUNNER, script, str(port), "Test." + test],
                            cwd=here, capture_output=True, text=True, timeout=args.timeout)
                        verdict = "OK" if re.search(r"^OK", done.stderr, re.M) else "FAIL"
                    except subprocess.TimeoutExpired:
                        verdict = "TIMEOUT"
                    counts[verdict] += 1
                    print("%-16s %-32s %s" % (script, test, verdict), flush=True)
        finally:
            broker.terminate()
            broker.wait(10)
    print("%s: %d OK, %d FAIL, %d TIMEOUT" % (args.broker, counts["OK"], counts["FAIL"],
                                               counts["TIMEOUT"]))


if __name__ == "__main__":
    main()
