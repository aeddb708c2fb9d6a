"""Turn per-round measurements into the text table and bench/README.md.

Every figure is the median over rounds.  Ratios compare medians of the same
run: ``xC`` to the pure-C server, ``xCy`` to the Cython package 0.2.5.
"""

import math
import os
import re
import statistics
from typing import Callable, Dict, List, Optional, Tuple

# Row order and labels of the servers.
SERVERS = [
    ("c", "C Mongoose"),
    ("cython", "Cython 0.2.5 (CPython)"),
    ("cpy-plain", "ours CPython, plain"),
    ("cpy-declared", "ours CPython, declared"),
    ("pypy-plain", "ours PyPy, plain"),
    ("pypy-declared", "ours PyPy, declared"),
]
LABEL = dict(SERVERS)
IDLE_ROWS = [
    ("c", "-", "C Mongoose"),
    ("cython", "none", "Cython 0.2.5, handler=None"),
    ("cython", "plain", "Cython 0.2.5, def h(c, ev, d): pass"),
    ("cpy", "none", "ours CPython, handler=None"),
    ("cpy", "plain", "ours CPython, def h(c, ev, d): pass"),
    ("cpy", "declared", "ours CPython, @handles(HTTP_MSG)"),
    ("pypy", "none", "ours PyPy, handler=None"),
    ("pypy", "plain", "ours PyPy, def h(c, ev, d): pass"),
    ("pypy", "declared", "ours PyPy, @handles(HTTP_MSG)"),
]

BEGIN = "<!-- results:begin (written by bench/run.py) -->"
END = "<!-- results:end -->"

#: The test where every server gets the same offered load (bench/run.py).
#: A faster server under wrk's closed loop answers smaller batches per
#: wake-up and wrk's one core caps them all near the C server's rate, so
#: req/s and CPU per request from wrk understate the gap between servers;
#: at one offered load, CPU per request compares what each spends.
SAME_LOAD = "http c=50, same load"

Runs = Dict[Tuple[str, str], List[dict]]
Idle = Dict[Tuple[str, str], List[float]]


def med(runs: List[dict], key: str) -> float:
    vals = [r[key] for r in runs if not math.isnan(r[key])]
    return statistics.median(vals) if vals else float("nan")


def _fmt(x: float, spec: str) -> str:
    return "-" if x is None or math.isnan(x) else format(x, spec)


def _ratio(a: float, b: Optional[float]) -> str:
    if b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return "%.2f" % (a / b)


def tests_of(runs: Runs) -> List[str]:
    seen: List[str] = []
    for test, _ in runs:
        if test not in seen:
            seen.append(test)
    return seen


def load_table(runs: Runs) -> str:
    """HTTP and WebSocket rows: rate, ratios, latency, CPU per request."""
    head = ("| test | server | req/s | xC | xCy | p50 ms | p99 ms | p99 xC | CPU us/req "
            "| us above C | spread |")
    lines = [head, "|" + "---|" * 11]
    for test in tests_of(runs):
        base = runs.get((test, "c"))
        cy = runs.get((test, "cython"))
        c_rate = med(base, "rate") if base else None
        c_p99 = med(base, "p99") if base else None
        c_cpu = med(base, "cpu_us") if base else None
        cy_rate = med(cy, "rate") if cy else None
        for key, label in SERVERS:
            rs = runs.get((test, key))
            if not rs:
                continue
            rate, cpu = med(rs, "rate"), med(rs, "cpu_us")
            # the same-load rows all answer the offered rate: their CPU varies
            field = "cpu_us" if test == SAME_LOAD else "rate"
            vals, mid = [r[field] for r in rs], med(rs, field)
            spread = (max(vals) - min(vals)) / 2 / mid * 100 if mid else float("nan")
            errs = sum(r["errors"] for r in rs)
            above = cpu - c_cpu if c_cpu is not None else float("nan")
            lines.append("| %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s | ±%s%% |" % (
                test, label, " (%d errors)" % errs if errs else "", _fmt(rate, ",.0f"),
                _ratio(rate, c_rate), _ratio(rate, cy_rate), _fmt(med(rs, "p50"), ".3f"),
                _fmt(med(rs, "p99"), ".3f"), _ratio(med(rs, "p99"), c_p99), _fmt(cpu, ".2f"),
                _fmt(above, "+.2f") if key != "c" else "-", _fmt(spread, ".0f")))
    return "\n".join(lines)


def idle_table(idle: Idle) -> str:
    """Per-event cost of 1,000 idle connections: ns per connection per poll."""
    lines = ["| server, handler | ns per idle connection per poll | xC |", "|---|---|---|"]
    c = idle.get(("c", "-"))
    c_ns = statistics.median(c) if c else None
    for impl, variant, label in IDLE_ROWS:
        vals = idle.get((impl, variant))
        if not vals:
            continue
        ns = statistics.median(vals)
        lines.append("| %s | %.1f | %s |" % (label, ns, _ratio(ns, c_ns)))
    return "\n".join(lines)


def _get(runs: Runs, test: str, key: str, field: str) -> float:
    rs = runs.get((test, key))
    return med(rs, field) if rs else float("nan")


Goal = Tuple[str, Callable[[Runs, Idle], float], str, float]


def _rel(test: str, key: str, field: str, base: str) -> Callable[[Runs, Idle], float]:
    return lambda runs, idle: _get(runs, test, key, field) / _get(runs, test, base, field)


def _above_c(key: str) -> Callable[[Runs, Idle], float]:
    return lambda runs, idle: (_get(runs, "http c=50", key, "cpu_us")
                               - _get(runs, "http c=50", "c", "cpu_us"))


def _idle_rel(impl: str, variant: str = "declared", base: str = "c") -> Callable[[Runs, Idle], float]:
    """An idle connection's cost per poll, ours (``impl``, ``variant``) over
    the C server's, or over the Cython package's with the same handler."""
    base_key = ("c", "-") if base == "c" else (base, variant)

    def f(runs: Runs, idle: Idle) -> float:
        mine, other = idle.get((impl, variant)), idle.get(base_key)
        if not mine or not other:
            return float("nan")
        return statistics.median(mine) / statistics.median(other)
    return f


# The core's goals table of shared/PERFORMANCE.md ("The core, Manager
# handlers"), as checks on this run.
GOALS: List[Goal] = [
    ("CPython declared, HTTP c=50 req/s, x Cython", _rel("http c=50", "cpy-declared", "rate", "cython"), ">=", 1.2),
    ("PyPy declared, HTTP c=50 req/s, x Cython", _rel("http c=50", "pypy-declared", "rate", "cython"), ">=", 1.4),
    ("CPython plain, HTTP c=50 req/s, x Cython", _rel("http c=50", "cpy-plain", "rate", "cython"), ">=", 0.9),
    ("PyPy plain, HTTP c=50 req/s, x Cython", _rel("http c=50", "pypy-plain", "rate", "cython"), ">=", 1.2),
    ("CPython declared, CPU us/req at the same load, Cython / ours",
     _rel(SAME_LOAD, "cython", "cpu_us", "cpy-declared"), ">=", 1.2),
    ("PyPy declared, CPU us/req at the same load, Cython / ours",
     _rel(SAME_LOAD, "cython", "cpu_us", "pypy-declared"), ">=", 1.4),
    ("CPython declared, CPU us/req above C (c=50)", _above_c("cpy-declared"), "<=", 1.5),
    ("PyPy declared, CPU us/req above C (c=50)", _above_c("pypy-declared"), "<=", 0.5),
    ("CPython declared, WS echo, x C", _rel("ws c=50", "cpy-declared", "rate", "c"), ">=", 0.90),
    ("PyPy declared, WS echo, x C", _rel("ws c=50", "pypy-declared", "rate", "c"), ">=", 1.0),
    ("CPython, idle conn not wanting POLL, x C", _idle_rel("cpy"), "<=", 1.5),
    ("PyPy, idle conn not wanting POLL, x C", _idle_rel("pypy"), "<=", 1.5),
    ("CPython, idle conn, plain handler, x Cython", _idle_rel("cpy", "plain", "cython"), "<=", 1.0),
    ("PyPy, idle conn, plain handler, x Cython", _idle_rel("pypy", "plain", "cython"), "<=", 0.5),
    ("CPython declared, p99 at c=50, x C", _rel("http c=50", "cpy-declared", "p99", "c"), "<=", 1.2),
    ("PyPy declared, p99 at c=50, x C", _rel("http c=50", "pypy-declared", "p99", "c"), "<=", 1.2),
]


# The C server's figure for the goals that it can be measured by too (req/s
# at c=50 over the Cython package's): one wrk thread saturates its core near
# the C server's rate, so a target above C's own ratio cannot be shown by
# this load generator, whatever our code does.
_CEILING: Dict[str, Callable[[Runs, Idle], float]] = {
    name: _rel("http c=50", "c", "rate", "cython")
    for name in ("CPython declared, HTTP c=50 req/s, x Cython",
                 "PyPy declared, HTTP c=50 req/s, x Cython",
                 "CPython plain, HTTP c=50 req/s, x Cython",
                 "PyPy plain, HTTP c=50 req/s, x Cython")}


def _value(fn: Callable[[Runs, Idle], float], runs: Runs, idle: Idle) -> float:
    try:
        return fn(runs, idle)
    except ZeroDivisionError:
        return float("nan")


def goals_table(runs: Runs, idle: Idle) -> str:
    lines = ["| goal (shared/PERFORMANCE.md) | target | this run | C Mongoose | met |",
             "|---|---|---|---|---|"]
    for name, fn, op, target in GOALS:
        value = _value(fn, runs, idle)
        ceiling = _value(_CEILING[name], runs, idle) if name in _CEILING else float("nan")
        if math.isnan(value):
            verdict = "not measured"
        else:
            ok = value >= target if op == ">=" else value <= target
            verdict = "yes" if ok else "**no**"
            if not ok and op == ">=" and ceiling < target:
                verdict += " (C Mongoose is below the target too)"
        lines.append("| %s | %s %.2f | %s | %s | %s |"
                     % (name, op, target, _fmt(value, ".2f"),
                        "-" if math.isnan(ceiling) else "%.2f" % ceiling, verdict))
    return "\n".join(lines)


def render(header: List[str], runs: Runs, idle: Idle, commands: List[str]) -> str:
    """The whole results section: context, the three tables, the commands."""
    parts = ["\n".join(header), "", "### Load (median of rounds)", "", load_table(runs)]
    if idle:
        parts += ["", "### Idle connections: cost of one poll per connection", "",
                  idle_table(idle)]
    parts += ["", "### Goals", "", goals_table(runs, idle), "",
              "### Commands", "", "```"] + commands + ["```"]
    return "\n".join(parts) + "\n"


def write_readme(path: str, section: str) -> None:
    """Replace the results section of bench/README.md (or append one)."""
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    block = BEGIN + "\n" + section + END
    if BEGIN in text and END in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda m: block, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    with open(path, "w") as f:
        f.write(text)
