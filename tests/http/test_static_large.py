"""A 1 GiB file (sparse, with random marks) downloaded by curl in two parts,
the second with ``curl -C -`` (resume), is byte for byte the file on disk."""

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

import cymongoose as cm
from support.loop import serve

SIZE = 1 << 30
FIRST = 300 * (1 << 20) + 12345  # the "interrupted" first part ends mid-buffer


def sha1_of(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture
def big(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "www" / "big.bin"
    path.parent.mkdir()
    with open(path, "wb") as f:
        f.truncate(SIZE)  # sparse: no disk blocks, reads as zeros
        for at in (0, FIRST - 100, FIRST, SIZE // 2 + 7, SIZE - 4096):
            f.seek(at)
            f.write(os.urandom(4096 if at + 4096 <= SIZE else SIZE - at))
    yield path


def test_resume_a_1gib_download_with_curl(big: Path, tmp_path: Path) -> None:
    root = str(big.parent)

    def handler(conn: cm.Connection, ev: int, hm: cm.HttpMessage) -> None:
        if ev == cm.MG_EV_HTTP_MSG:
            conn.serve_dir(hm, root)

    loop, port = serve(handler)
    out = tmp_path / "download.bin"
    url = "http://127.0.0.1:%d/big.bin" % port
    try:
        subprocess.run(["curl", "-sS", "--max-time", "120", "-r", "0-%d" % (FIRST - 1),
                        "-o", str(out), url], check=True, timeout=150)
        assert out.stat().st_size == FIRST
        done = subprocess.run(["curl", "-sS", "--max-time", "120", "-C", "-", "-o", str(out),
                               "-w", "%{http_code} %{size_download}", url],
                              check=True, timeout=150, capture_output=True)
        assert done.stdout.decode() == "206 %d" % (SIZE - FIRST)
        assert out.stat().st_size == SIZE
        assert sha1_of(out) == sha1_of(big)
    finally:
        out.unlink()
        loop.stop()
        loop.mgr.close()
