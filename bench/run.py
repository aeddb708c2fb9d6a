#!/usr/bin/env python3
"""Benchmark cymongoose against pure-C Mongoose and the Cython package 0.2.5.

    python3 bench/run.py            # full run (about 10 minutes on 2 cores)
    python3 bench/run.py --quick    # a short run for development
    make bench                      # the full run, from a clean clone

Builds what it needs (see _setup.py), then measures in interleaved rounds,
every server pinned to core 0 and every load generator to core 1:

- HTTP hello (``ok``) with ``wrk -t1 -cN --latency`` for N in 1, 50, 200;
- the same at one offered load for every server (``_report.SAME_LOAD``:
  bench/http_rate.c, open loop, 50 connections, at half the slowest
  server's wrk rate at c=50), for CPU per request at equal batching;
- WebSocket echo with bench/ws_load.c (C, 50 connections, one message in
  flight per connection);
- the cost of 1,000 idle connections: time per ``poll(0)`` / 1,000.

Servers: the C server, the Cython package 0.2.5 (CPython, its own venv) and
ours on CPython and PyPy, each with a handler receiving every event
(``plain``) and one declaring ``@cymongoose.handles(...)`` (``declared``).
Prints one table (medians of rounds, ratios to C and to the Cython package,
CPU time per request) and writes it into bench/README.md.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _load  # noqa: E402
import _report  # noqa: E402
import _setup  # noqa: E402
import servers_compare  # noqa: E402
from _load import BenchError, Server  # noqa: E402
from _setup import BENCH, BIN, ROOT  # noqa: E402

SERVERS_DIR = os.path.join(BENCH, "servers")
OUT = os.path.join(BENCH, "out")


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    p.add_argument("--duration", type=float, help="seconds per load run (default 5, quick 2)")
    p.add_argument("--warmup", type=float,
                   help="seconds of warm-up load per server (default 2, also in quick mode)")
    p.add_argument("--loads", default="1,50,200", help="wrk connection counts (default 1,50,200)")
    p.add_argument("--ws-conns", type=int, default=50, help="WebSocket connections (default 50)")
    p.add_argument("--idle-conns", type=int, default=1000, help="idle connections (default 1000)")
    p.add_argument("--idle-polls", type=int,
                   help="polls per timed batch of an idle run (default 2000, quick 500)")
    p.add_argument("--quick", action="store_true",
                   help="1 round of 2 s, short warm-up; README untouched unless --readme")
    p.add_argument("--readme", action="store_true", help="write bench/README.md in --quick mode")
    p.add_argument("--no-readme", action="store_true", help="never write bench/README.md")
    p.add_argument("--cpython", help="CPython to build and run ours (default: bench/.venv-cpython)")
    p.add_argument("--pypy", help="PyPy to build and run ours (default: bench/.venv-pypy)")
    p.add_argument("--no-pypy", action="store_true", help="skip PyPy")
    p.add_argument("--no-cython", action="store_true", help="skip the Cython package")
    p.add_argument("--only", default="http,ws,idle,servers",
                   help="sections to run (default http,ws,idle,servers)")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--tree", default=ROOT,
                   help="checkout whose cymongoose is measured (default: this one)")
    args = p.parse_args(argv)
    defaults = (1, 2, 2, 500) if args.quick else (3, 5, 2, 2000)
    for name, value in zip(("rounds", "duration", "warmup", "idle_polls"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.loads = [int(x) for x in args.loads.split(",") if x]
    args.only = set(args.only.split(","))
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rel(path: str) -> str:
    """A path as the README shows it: relative to the repository when inside it."""
    if os.path.isabs(path) and path.startswith(ROOT + os.sep):
        return os.path.relpath(path, ROOT)
    return path


class Impl:
    """An interpreter plus where its cymongoose comes from."""

    def __init__(self, key: str, python: str, tree: Optional[str]) -> None:
        self.key = key
        self.python = python
        self.tree = tree
        self.ours = tree is not None
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if tree is not None:
            env["PYTHONPATH"] = tree  # its in-place build
        self.env = env

    def check(self, server: Server) -> None:
        """Refuse to measure the wrong package (both are called cymongoose)."""
        where = str(server.info.get("file", ""))
        is_ours = self.tree is not None and where == os.path.join(self.tree, "cymongoose")
        if is_ours != self.ours:
            raise BenchError("%s imported cymongoose from %s" % (server.label, where))


def _key_impl(key: str) -> str:
    return key.split("-")[0]


def server_specs(kind: str, impls: Dict[str, Impl], ws_ok: Dict[str, bool]
                 ) -> List[Tuple[str, List[str], Optional[Impl]]]:
    """(row key, argv without the port, interpreter) for each server of a section."""
    script = os.path.join(SERVERS_DIR, "hello.py" if kind == "http" else "ws_echo.py")
    specs: List[Tuple[str, List[str], Optional[Impl]]] = [
        ("c", [os.path.join(BIN, "c_server"), kind], None)]
    for key, _ in _report.SERVERS[1:]:
        impl = impls.get(_key_impl(key))
        if impl is None or (kind == "ws" and not ws_ok.get(impl.key, False)):
            continue
        variant = "plain" if key == "cython" else key.split("-")[1]
        specs.append((key, [impl.python, script, variant], impl))
    return specs


def shown(command: str, port: int, impl: Optional[Impl]) -> str:
    """A server command as the README lists it: repo-relative, PORT, PYTHONPATH."""
    words = [rel(w) for w in command.split()]
    line = " ".join(words).replace(" %d" % port, " PORT")
    if impl is not None and impl.tree is not None:
        line = "PYTHONPATH=%s %s" % (rel(impl.tree) if impl.tree != ROOT else ".", line)
    return line


def start(key: str, argv: List[str], impl: Optional[Impl], port: int, pin: bool,
          log_path: str) -> Server:
    env = impl.env if impl else dict(os.environ)
    return Server(_report.LABEL.get(key, key), argv + [str(port)], env, SERVERS_DIR,
                  log_path, pin)


def run_section(kind: str, specs: List[Tuple[str, List[str], Optional[Impl]]],
                args: argparse.Namespace, runs: _report.Runs, commands: Dict[str, str],
                log_path: str) -> None:
    """Start every server of the section, warm them up, then interleave rounds."""
    pin = not args.no_pin
    ws_load = os.path.join(BIN, "ws_load")
    http_rate = os.path.join(BIN, "http_rate")
    servers: Dict[str, Tuple[Server, int]] = {}
    try:
        for key, argv, impl in specs:
            port = _load.free_port()
            servers[key] = (start(key, argv, impl, port, pin, log_path), port)
        for key, argv, impl in specs:
            server, port = servers[key]
            server.wait_ready()
            if impl is not None:
                impl.check(server)
            commands["%s %s" % (kind, key)] = shown(server.command, port, impl)

        def once(key: str, conns: int, seconds: float) -> dict:
            server, port = servers[key]
            if kind == "http":
                return _load.run_wrk(server, port, conns, seconds, pin)
            return _load.run_ws(server, ws_load, port, conns, seconds, pin)

        loads = args.loads if kind == "http" else [args.ws_conns]
        keys = [k for k, _, _ in specs]
        for key in keys:
            once(key, max(loads), args.warmup)  # JIT warm-up, buffers, caches
        for r in range(args.rounds):
            order = keys[r % len(keys):] + keys[:r % len(keys)]
            for conns in loads:
                test = "%s c=%d" % (kind, conns)
                for key in order:
                    res = once(key, conns, args.duration)
                    runs.setdefault((test, key), []).append(res)
                    log_round(r, args.rounds, test, key, res)
        if kind == "http" and 50 in loads:
            rate = same_load_rate(runs, keys)
            for r in range(args.rounds):
                for key in keys[r % len(keys):] + keys[:r % len(keys)]:
                    server, port = servers[key]
                    res = _load.run_rate(server, http_rate, port, 50, rate, args.duration, pin)
                    runs.setdefault((_report.SAME_LOAD, key), []).append(res)
                    log_round(r, args.rounds, _report.SAME_LOAD, key, res)
    finally:
        for server, _ in servers.values():
            server.stop()


def log_round(r: int, rounds: int, test: str, key: str, res: dict) -> None:
    log("[round %d/%d] %-9s %-26s %10.0f /s  p99 %7.3f ms  %5.2f us cpu"
        % (r + 1, rounds, test, _report.LABEL[key], res["rate"], res["p99"], res["cpu_us"]))


def same_load_rate(runs: _report.Runs, keys: List[str]) -> float:
    """The offered req/s of the same-load test: half the slowest server's
    median wrk rate at c=50, in thousands.  At half, every server has room
    and the figures compare what each spends per request, not how it
    copes near its limit (see servers_compare.EQUAL_SHARE)."""
    slowest = min(_report.med(runs[("http c=50", k)], "rate") for k in keys)
    return max(1000.0, round(slowest * servers_compare.EQUAL_SHARE, -3))


def run_idle(impls: Dict[str, Impl], args: argparse.Namespace, idle: _report.Idle,
             commands: Dict[str, str], log_path: str) -> None:
    pin = not args.no_pin
    script = os.path.join(SERVERS_DIR, "idle.py")
    n, polls = args.idle_conns, args.idle_polls
    for r in range(args.rounds):
        for impl_key, variant, label in _report.IDLE_ROWS:
            if impl_key == "c":
                argv, impl = [os.path.join(BIN, "c_server"), "idle"], None
            else:
                impl = impls.get(impl_key)
                if impl is None:
                    continue
                argv = [impl.python, script, variant]
            port = _load.free_port()
            full = argv + [str(port), str(n), str(polls)]
            commands["idle %s %s" % (impl_key, variant)] = shown(
                " ".join(_load.pinned(_load.SERVER_CORE, full, pin)), port, impl)
            env = impl.env if impl else dict(os.environ)
            ns = _load.run_idle(label, full, port, env, SERVERS_DIR, log_path, n, pin)
            idle.setdefault((impl_key, variant), []).append(ns)
            log("[round %d/%d] idle %-40s %8.1f ns per connection per poll"
                % (r + 1, args.rounds, label, ns))


def machine() -> List[str]:
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return ["nproc %d" % os.cpu_count(), cpu, "Linux " + platform.release()]


def tool_version(cmd: List[str]) -> str:
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True).stdout
    except OSError:
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def prepare(args: argparse.Namespace) -> Tuple[Dict[str, List[str]], Dict[str, Impl]]:
    """Build the C programs and our package; find or make the interpreters."""
    c_cmds = _setup.build_c(_setup.mongoose_dir())
    cpy_base = sys.executable if platform.python_implementation() == "CPython" else "python3"
    tree = os.path.abspath(args.tree)
    impls: Dict[str, Impl] = {}
    impls["cpy"] = Impl("cpy", _setup.our_interpreter(args.cpython, ".venv-cpython", cpy_base),
                        tree)
    if not args.no_pypy:
        if args.pypy or shutil.which("pypy3"):
            impls["pypy"] = Impl("pypy", _setup.our_interpreter(args.pypy, ".venv-pypy",
                                                                "pypy3"), tree)
        else:
            log("no pypy3: PyPy rows skipped (make system-deps installs it)")
    for impl in impls.values():
        _setup.build_ours(impl.python, tree)
    if not args.no_cython:
        cy = _setup.cython_interpreter(cpy_base)
        if cy:
            impls["cython"] = Impl("cython", cy, None)
    return c_cmds, impls


def header_lines(args: argparse.Namespace, impls: Dict[str, Impl], stamp: datetime.datetime,
                 load_before: float) -> List[str]:
    """Date, mode, machine, load, interpreter and tool versions of this run."""
    versions = ["ours on %s (`%s`)" % (_setup.version(i.python), rel(i.python))
                for i in impls.values() if i.ours]
    tree = os.path.abspath(args.tree)
    if tree != ROOT:
        versions.append("ours built from `%s` (--tree)" % tree)
    if "cython" in impls:
        versions.append("cymongoose 0.2.5 (Cython, PyPI wheel) on %s (`%s`)"
                        % (_setup.version(impls["cython"].python),
                           rel(impls["cython"].python)))
    return [
        "Run of %s UTC, %s mode: %d round(s), %g s per load run, %g s warm-up per server."
        % (stamp.strftime("%Y-%m-%d %H:%M"), "quick" if args.quick else "full",
           args.rounds, args.duration, args.warmup),
        "",
        "- Machine: %s; load average %.2f before, %.2f after (other work shares these cores)."
        % (", ".join(machine()), load_before, os.getloadavg()[0]),
        "- Interpreters: " + "; ".join(versions) + ".",
        "- Tools: %s; %s." % (tool_version(["wrk", "-v"]).split(" Copyright")[0],
                              tool_version(["gcc", "--version"])),
        "- Servers pinned to core 0, load generators to core 1%s."
        % (" (not pinned: --no-pin)" if args.no_pin else ""),
        "- xC: ratio to the C server; xCy: ratio to the Cython package; spread: half the "
        "range of req/s over rounds (of CPU per request in the same-load rows), relative "
        "to the median.",
    ]


def command_lines(argv: List[str], args: argparse.Namespace, c_cmds: Dict[str, List[str]],
                  impls: Dict[str, Impl], servers: Dict[str, str]) -> List[str]:
    """Every command this run executed, as one could type them again."""
    pin = not args.no_pin
    lines = ["# this run", " ".join(["python3 bench/run.py"] + argv), "# builds"]
    lines += [" ".join(rel(x) for x in c) for c in c_cmds.values()]
    lines += ["%s setup.py -q build_ext --inplace" % rel(i.python)
              for i in impls.values() if i.ours]
    if "cython" in impls:
        lines.append("%s -m pip install --only-binary=:all: %s"
                     % (rel(impls["cython"].python), _setup.CYTHON_PACKAGE))
    lines += ["# servers (from the repository root)"] + list(servers.values())
    loads = "{%s}" % ",".join(str(n) for n in args.loads) if len(args.loads) > 1 \
        else str(args.loads[0])
    wrk = " ".join(_load.wrk_command(0, 0, args.duration, pin))
    ws = " ".join(rel(x) for x in _load.ws_command(os.path.join(BIN, "ws_load"), 0,
                                                     args.ws_conns, args.duration, pin))
    rate = " ".join(rel(x) for x in _load.pinned(
        _load.LOAD_CORE, [os.path.join(BIN, "http_rate"), "http://127.0.0.1:PORT/", "50", "RATE",
                          "%g" % args.duration], pin))
    lines += ["# load", wrk.replace("-c0", "-c" + loads).replace(":0/", ":PORT/"),
              rate + "  # RATE: the req/s of the same-load rows", ws.replace(":0/", ":PORT/")]
    return lines


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    for tool in ("wrk", "gcc") + (() if args.no_pin else ("taskset",)):
        if shutil.which(tool) is None:
            sys.exit("bench/run.py needs %s (make system-deps installs wrk)" % tool)
    if (os.cpu_count() or 1) < 2 and not args.no_pin:
        sys.exit("pinning needs 2 cores; use --no-pin")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # we open the idle sockets
    os.makedirs(OUT, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc)
    name = stamp.strftime("%Y%m%d-%H%M%S")
    log_path = os.path.join(OUT, "servers-%s.log" % name)
    load_before = os.getloadavg()[0]

    c_cmds, impls = prepare(args)
    ws_ok = {k: _setup.has_ws(i.python, i.tree) for k, i in impls.items()}
    for k, ok in ws_ok.items():
        if not ok:
            log("%s has no ws_upgrade/ws_send yet: its WebSocket rows are skipped" % k)
    runs: _report.Runs = {}
    idle: _report.Idle = {}
    servers: Dict[str, str] = {}
    if "http" in args.only:
        run_section("http", server_specs("http", impls, ws_ok), args, runs, servers, log_path)
    if "ws" in args.only:
        run_section("ws", server_specs("ws", impls, ws_ok), args, runs, servers, log_path)
    if "idle" in args.only:
        run_idle(impls, args, idle, servers, log_path)

    compared: List[str] = []
    if "servers" in args.only and "cpy" in impls:
        servers_compare.fill(args)
        pypy = impls["pypy"].python if "pypy" in impls else None
        compared, _ = servers_compare.run(args, impls["cpy"].python, pypy, log_path)
    section = _report.render(header_lines(args, impls, stamp, load_before), runs, idle,
                             command_lines(argv, args, c_cmds, impls, servers))
    if compared:
        section += "\n### Servers people deploy (bench/servers_compare.py)\n\n" \
            + "\n".join(compared) + "\n"
    print(section)
    with open(os.path.join(OUT, "run-%s.json" % name), "w") as f:
        json.dump({"runs": {"%s|%s" % k: v for k, v in runs.items()},
                   "idle": {"%s|%s" % k: v for k, v in idle.items()},
                   "argv": argv}, f, indent=1)
    if not args.no_readme and (not args.quick or args.readme):
        _report.write_readme(os.path.join(BENCH, "README.md"), section)
        log("results written to bench/README.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BenchError, _setup.SetupError) as exc:
        sys.exit("bench/run.py: %s" % exc)
