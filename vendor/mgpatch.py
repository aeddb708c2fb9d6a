"""Apply vendor/patches/*.patch to a copy of mongoose.c at build time.

The pinned mongoose.c stays as Cesanta published it (its sha256 is checked);
the build compiles a patched copy written to build/mongoose/.  Each patch is
a unified diff of mongoose.c with a description before its first "---" line.
A hunk is placed by its text (context and removed lines), searching from the
line its header names, so the patches also apply to a mongoose.c whose lines
moved.  A hunk whose text is missing fails the build with the patch's name,
except with MONGOOSE_SRC (sources of another Mongoose, which may already
contain the fix), where that patch is skipped with a warning.
"""

import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PATCH_DIR = os.path.join(HERE, "patches")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@")


class PatchError(Exception):
    pass


def _hunks(text):
    """[(old line number, old lines, new lines)] of one unified diff."""
    hunks = []
    lines = text.splitlines(True)
    i = 0
    while i < len(lines) and not lines[i].startswith("--- "):
        i += 1
    for line in lines[i:]:
        m = _HUNK.match(line)
        if m:
            hunks.append((int(m.group(1)), [], []))
        elif hunks and line[:1] in (" ", "-", "+"):
            _, old, new = hunks[-1]
            if line[0] != "+":
                old.append(line[1:])
            if line[0] != "-":
                new.append(line[1:])
        elif hunks and line.startswith("\\"):
            continue  # "\ No newline at end of file"
        elif hunks and line.strip():
            raise PatchError("unexpected line in a hunk: %r" % line)
    if not hunks:
        raise PatchError("no hunks")
    return hunks


def _find(lines, block, near):
    """Index of ``block`` in ``lines`` nearest to ``near``, or -1."""
    best = -1
    n = len(block)
    for i in range(len(lines) - n + 1):
        if lines[i] == block[0] and lines[i:i + n] == block:
            if best < 0 or abs(i - near) < abs(best - near):
                best = i
    return best


def apply(lines, text):
    """``lines`` (of mongoose.c) with the unified diff ``text`` applied."""
    out = list(lines)
    shift = 0
    for start, old, new in _hunks(text):
        at = _find(out, old, start - 1 + shift)
        if at < 0:
            raise PatchError("hunk at line %d does not match" % start)
        out[at:at + len(old)] = new
        shift += len(new) - len(old)
    return out


def patched_dir(src_dir, out_dir, strict=True):
    """Write ``src_dir``/mongoose.c with every patch applied to ``out_dir``; return it.

    The copy is rewritten only when its text changes, so an unchanged build
    does not recompile.  ``strict`` (the pinned sources) makes a patch that
    does not apply an error; otherwise it is skipped with a warning.
    """
    with open(os.path.join(src_dir, "mongoose.c"), encoding="latin-1", newline="") as f:
        lines = f.read().splitlines(True)
    for path in patch_files():
        with open(path, encoding="latin-1") as f:
            text = f.read()
        try:
            lines = apply(lines, text)
        except PatchError as exc:
            msg = "%s: %s" % (os.path.basename(path), exc)
            if strict:
                raise PatchError(msg + " (see vendor/README.md)")
            sys.stderr.write("warning: not applied to MONGOOSE_SRC: %s\n" % msg)
    result = "".join(lines)  # latin-1: every byte of the C file round-trips
    os.makedirs(out_dir, exist_ok=True)
    target = os.path.join(out_dir, "mongoose.c")
    try:
        with open(target, encoding="latin-1", newline="") as f:
            unchanged = f.read() == result
    except OSError:
        unchanged = False
    if not unchanged:
        with open(target, "w", encoding="latin-1", newline="") as f:
            f.write(result)
    return out_dir


def patch_files():
    """The patch files, in the order they apply."""
    return sorted(glob.glob(os.path.join(PATCH_DIR, "*.patch")))
