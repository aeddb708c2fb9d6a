"""The build-time fixes of Mongoose (vendor/patches/, applied by vendor/mgpatch.py)."""

import os
import sys

import pytest

from support.paths import ROOT

VENDOR = os.path.join(ROOT, "vendor")
sys.path.insert(0, VENDOR)
import mgpatch  # noqa: E402

needs_sources = pytest.mark.skipif(
    not os.path.exists(os.path.join(VENDOR, "mongoose.c")),
    reason="the pinned Mongoose sources are not fetched")


def test_there_are_patches_with_descriptions():
    names = [os.path.basename(p) for p in mgpatch.patch_files()]
    assert names[:4] == ["0001-dns-aaaa-fallback-once.patch", "0002-tls-ecdsa-der-integers.patch",
                         "0003-half-closed-peer-gets-queued-output.patch",
                         "0004-bad-http-framing-reported-once.patch"]
    assert names == sorted(set(names)) and all(n[:4].isdigit() for n in names)
    with open(os.path.join(VENDOR, "README.md")) as f:
        readme = f.read()
    for path in mgpatch.patch_files():
        with open(path) as f:
            text = f.read()
        assert not text.startswith("---") and "\n--- a/mongoose.c\n+++ b/mongoose.c\n" in text
        assert os.path.basename(path) in readme  # each one explained there


def _added_lines(path):
    with open(path) as f:
        text = f.read()
    body = text[text.index("\n--- a/mongoose.c\n"):]
    return [line[1:] for line in body.splitlines(True)
            if line.startswith("+") and not line.startswith("+++")]


@needs_sources
def test_patches_apply_to_the_pinned_sources(tmp_path):
    out = mgpatch.patched_dir(VENDOR, str(tmp_path))
    with open(os.path.join(VENDOR, "mongoose.c"), encoding="latin-1") as f:
        original = f.read()
    with open(os.path.join(out, "mongoose.c"), encoding="latin-1") as f:
        patched = f.read()
    assert patched != original
    added = [line for p in mgpatch.patch_files() for line in _added_lines(p)]
    for line in added:
        assert line in patched
    assert patched.count("// cymongoose:") == sum("// cymongoose:" in line for line in added)
    assert "d->ipv6 == false" in patched and "&c->mgr->dns6, true)" not in patched
    assert "neg1" not in patched and "Failed ECDSA sign" in patched
    assert "c->is_draining && c->is_full" in patched
    assert patched.count("c->recv.len = 0;  // cymongoose: dead input") == 2
    mtime = os.stat(os.path.join(out, "mongoose.c")).st_mtime_ns
    mgpatch.patched_dir(VENDOR, str(tmp_path))  # unchanged: not rewritten
    assert os.stat(os.path.join(out, "mongoose.c")).st_mtime_ns == mtime


def test_hunks_are_placed_by_text_near_their_line():
    diff = ("about it\n--- a/mongoose.c\n+++ b/mongoose.c\n"
            "@@ -4,2 +4,2 @@\n x\n-old\n+new\n")
    lines = ["x\n", "old\n", "y\n", "x\n", "old\n", "z\n"]
    assert mgpatch.apply(lines, diff) == ["x\n", "old\n", "y\n", "x\n", "new\n", "z\n"]
    with pytest.raises(mgpatch.PatchError, match="does not match"):
        mgpatch.apply(["x\n", "other\n"], diff)
    with pytest.raises(mgpatch.PatchError, match="no hunks"):
        mgpatch.apply(lines, "just words\n")


def test_other_sources_skip_a_patch_that_does_not_apply(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "mongoose.c").write_text("int main(void) { return 0; }\n")
    with pytest.raises(mgpatch.PatchError, match="0001-dns-aaaa-fallback-once.patch"):
        mgpatch.patched_dir(str(src), str(tmp_path / "strict"))
    out = mgpatch.patched_dir(str(src), str(tmp_path / "lax"), strict=False)
    assert (tmp_path / "lax" / "mongoose.c").read_text() == "int main(void) { return 0; }\n"
    assert out == str(tmp_path / "lax")
    err = capsys.readouterr().err
    assert "0001-dns-aaaa-fallback-once.patch" in err and "0002-tls" in err
