"""Everything the benchmark builds or installs before it measures.

- ``bench/bin/c_server``, ``ws_load``, ``ws_rate`` and ``http_rate``: C programs on the vendored
  Mongoose, compiled with the defines of ``build_ffi.py``.
- Our package built in place (``setup.py build_ext --inplace``) with each
  interpreter; servers then import it through ``PYTHONPATH``.
- Virtual environments under ``bench/`` when no interpreter is given:
  ``.venv-cpython`` and ``.venv-pypy`` (build tools only) and ``.venv-cython``,
  which holds the Cython package 0.2.5 from PyPI.  That package has our
  import name, so it never goes into any environment of ours.
"""

import os
import subprocess
import sys
from typing import List, Optional

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BIN = os.path.join(BENCH, "bin")
VENDOR = os.path.join(ROOT, "vendor")

# build_ffi.py's defines with CYM_TLS=builtin (the plain-HTTP ceiling uses no TLS,
# so it needs no libssl).
MG_DEFINES = ["-DMG_TLS=MG_TLS_BUILTIN", "-DMG_ENABLE_IPV6=1", "-D_GNU_SOURCE"]
CFLAGS = ["-O3", "-std=gnu99"]
CYTHON_PACKAGE = "cymongoose==0.2.5"
# The WebSocket load generators' own build: see ws_load.c.
WS_CLIENT = ["-DMG_ENABLE_CUSTOM_RANDOM=1", "-DMG_ENABLE_EPOLL=0", "-DMG_ENABLE_POLL=1"]


class SetupError(RuntimeError):
    """A build or install step failed; the message says which."""


def log(msg: str) -> None:
    print("[setup] " + msg, file=sys.stderr, flush=True)


def run(cmd: List[str], cwd: str = ROOT, env: Optional[dict] = None) -> None:
    """Run a setup command quietly; on failure show its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    if proc.returncode != 0:
        raise SetupError("%s failed (exit %d):\n%s"
                         % (" ".join(cmd), proc.returncode, proc.stdout[-4000:]))


def mongoose_dir() -> str:
    """The Mongoose sources the package builds from (fetched when missing)."""
    local = os.environ.get("MONGOOSE_SRC")
    if local:
        return os.path.abspath(local)
    run([sys.executable, os.path.join(VENDOR, "fetch.py")])
    return VENDOR


def c_commands(src_dir: str) -> dict:
    """The compiler command for each C program, by binary name."""
    mg = os.path.join(src_dir, "mongoose.c")
    base = ["gcc"] + CFLAGS + MG_DEFINES + ["-I", src_dir]
    return {
        "c_server": base + [os.path.join(BENCH, "c_server.c"), mg,
                            "-o", os.path.join(BIN, "c_server")],
        # Custom mg_random and poll(): see ws_load.c (client-only changes).
        "ws_load": base + WS_CLIENT + [os.path.join(BENCH, "ws_load.c"), mg,
                                       "-o", os.path.join(BIN, "ws_load")],
        "ws_rate": base + WS_CLIENT + [os.path.join(BENCH, "ws_rate.c"), mg,
                                       "-o", os.path.join(BIN, "ws_rate")],
        "http_rate": base + [os.path.join(BENCH, "http_rate.c"), mg,
                             "-o", os.path.join(BIN, "http_rate")],
    }


def build_c(src_dir: str) -> dict:
    """Compile the C programs when missing or older than their sources."""
    os.makedirs(BIN, exist_ok=True)
    cmds = c_commands(src_dir)
    for name, cmd in cmds.items():
        out = os.path.join(BIN, name)
        sources = [os.path.join(BENCH, name + ".c"), os.path.join(src_dir, "mongoose.c"),
                   os.path.join(src_dir, "mongoose.h"), os.path.join(BENCH, "latency_hist.h"),
                   os.path.join(BENCH, "load_gen.h"), os.path.join(BENCH, "open_loop.h")]
        if os.path.exists(out) and all(os.path.getmtime(out) > os.path.getmtime(s)
                                       for s in sources):
            continue
        log("compiling bench/bin/%s" % name)
        run(cmd)
    return cmds


def _venv_python(path: str) -> str:
    return os.path.join(path, "bin", "python")


def _can_import(python: str, modules: str) -> bool:
    code = "import %s" % modules
    if "setuptools" in modules:  # pyproject's SPDX license string needs setuptools 77
        code += "; import sys; sys.exit(int(setuptools.__version__.split('.')[0]) < 77)"
    return subprocess.run([python, "-c", code], cwd="/", stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def ensure_venv(name: str, base: str, packages: List[str], check: str) -> str:
    """``bench/<name>`` created from ``base`` with ``packages``; its python."""
    path = os.path.join(BENCH, name)
    python = _venv_python(path)
    if not os.path.exists(python):
        log("creating bench/%s from %s" % (name, base))
        run([base, "-m", "venv", path])
    if not _can_import(python, check):
        log("installing %s into bench/%s" % (" ".join(packages), name))
        run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check"] + packages)
    return python


def our_interpreter(given: Optional[str], name: str, base: str) -> str:
    """The interpreter that builds and runs our package.

    ``given`` (``--cpython``/``--pypy``) is used as it is; otherwise a venv
    with cffi and setuptools is made under ``bench/``.
    """
    if given:
        return given
    if "pypy" in base:  # cffi is built into PyPy
        return ensure_venv(name, base, ["setuptools>=77"], "setuptools")
    return ensure_venv(name, base, ["cffi", "setuptools>=77"], "cffi, setuptools")


def build_ours(python: str, tree: str = ROOT) -> None:
    """Build the extension in place in ``tree`` for ``python``; both .so files coexist."""
    log("building cymongoose in place in %s with %s" % (tree, python))
    run([python, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree)


def cython_interpreter(base: str) -> Optional[str]:
    """bench/.venv-cython with the Cython package 0.2.5, or None if unavailable."""
    try:
        return ensure_venv(".venv-cython", base,
                           ["--only-binary=:all:", CYTHON_PACKAGE], "cymongoose")
    except SetupError as exc:
        log("the Cython package is unavailable, its rows are skipped: %s"
            % str(exc).splitlines()[0])
        return None


def version(python: str) -> str:
    """One line naming the interpreter, e.g. 'CPython 3.11.7' or 'PyPy 7.3.11 (3.9.16)'."""
    code = ("import platform, sys\n"
            "impl = platform.python_implementation()\n"
            "v = platform.python_version()\n"
            "if impl == 'PyPy':\n"
            "    p = sys.pypy_version_info\n"
            "    print('PyPy %d.%d.%d (Python %s)' % (p.major, p.minor, p.micro, v))\n"
            "else:\n"
            "    print(impl + ' ' + v)\n")
    out = subprocess.run([python, "-c", code], cwd="/", stdout=subprocess.PIPE,
                         universal_newlines=True)
    return out.stdout.strip() or "?"


def has_ws(python: str, pythonpath: Optional[str]) -> bool:
    """Whether a package build has the WebSocket server API (ws_upgrade, ws_send)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = "import cymongoose as m; m.Connection.ws_upgrade; m.Connection.ws_send"
    return subprocess.run([python, "-c", code], cwd="/", env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0
