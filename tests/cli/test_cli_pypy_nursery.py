"""The command-line servers set PyPy's nursery (``cymongoose/_cli_pypy.py``)."""

import os
from pathlib import Path

import httpx
import pytest

from cymongoose._cli_pypy import NURSERY, nursery_size
from support.cli import Server

PROBE = '''
import os
from cymongoose._cli_pypy import nursery_size

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%d %d %s" % (os.getpid(), nursery_size(),
                            os.environ.get("PYPY_GC_NURSERY", "-"))).encode()]
'''


def probe(tmp_path: Path) -> "tuple[int, int, str, int]":
    """Start ``wsgi`` on the probe app: its pid, nursery, variable, and the child's pid."""
    (tmp_path / "nursery_probe.py").write_text(PROBE)
    server = Server("wsgi", "nursery_probe:app", "--listen", "http://127.0.0.1:0",
                    cwd=str(tmp_path))
    try:
        pid, size, var = httpx.get(server.url + "/", timeout=10).text.split()
    finally:
        server.stop_cleanly()
    return int(pid), int(size), var, server.p.pid


def test_unset_nursery_is_set_in_the_same_process(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYPY_GC_NURSERY", raising=False)
    default = nursery_size()  # this interpreter's own choice, the variable unset
    pid, size, var, child = probe(tmp_path)
    assert pid == child  # started again with exec, not as a child
    if default not in (0, NURSERY):  # PyPy chose another size, larger or smaller
        assert (size, var) == (NURSERY, str(NURSERY))
    else:  # CPython (size 0), or a PyPy that chose NURSERY itself
        assert (size, var) == (default, "-")


def test_a_nursery_set_by_the_user_is_kept(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYPY_GC_NURSERY", "32MB")
    pid, size, var, child = probe(tmp_path)
    assert pid == child and var == "32MB"
    assert size == (32 * 1024 * 1024 if nursery_size() else 0)


def test_restart_argv_only_for_the_command_line(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import cymongoose
    from cymongoose._cli_pypy import restart_argv

    main_py = os.path.join(os.path.dirname(cymongoose.__file__), "__main__.py")
    monkeypatch.setattr(sys, "argv", [main_py, "asgi", "app:app"])
    assert restart_argv() == [sys.executable, "-m", "cymongoose", "asgi", "app:app"]
    script = tmp_path / "cymongoose"
    script.write_text("")
    monkeypatch.setattr(sys, "argv", [str(script), "serve"])
    assert restart_argv() == [sys.executable, os.path.realpath(str(script)), "serve"]
    for unknown in (["-c", "serve"], [""], [str(tmp_path / "other.py")]):
        monkeypatch.setattr(sys, "argv", unknown)
        assert restart_argv() is None
