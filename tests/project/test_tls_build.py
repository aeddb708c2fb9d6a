"""build_ffi.py's TLS backend choice (CYM_TLS) and its missing-headers message."""

import os
import subprocess
import sys

import pytest

from support.paths import ROOT


needs_sources = pytest.mark.skipif(
    not os.path.exists(os.path.join(ROOT, "vendor", "mongoose.c")),
    reason="the pinned Mongoose sources are not fetched")


def _import_builder(**env: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-c", "import build_ffi"], cwd=ROOT,
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=120)


@needs_sources
def test_missing_openssl_headers_stop_the_build_with_a_message() -> None:
    """A compiler that finds no <openssl/ssl.h> (here: no include path at all)."""
    res = _import_builder(CC="gcc -nostdinc", CYM_TLS="openssl")
    assert res.returncode != 0
    assert "libssl-dev" in res.stderr and "CYM_TLS=builtin" in res.stderr
    assert "Traceback" not in res.stderr


@needs_sources
def test_unknown_backend_is_refused() -> None:
    res = _import_builder(CYM_TLS="gnutls")
    assert res.returncode != 0 and "CYM_TLS=builtin" in res.stderr
