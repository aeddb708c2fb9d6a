"""Fetch the pinned Mongoose sources into this folder.

Mongoose 7.23 travels inside the PyPI sdist of cymongoose 0.2.5, unmodified,
under ``thirdparty/mongoose/``.  This script downloads that sdist with pip,
checks every hash in ``pin.json`` and extracts exactly three files
(``mongoose.c``, ``mongoose.h``, ``LICENSE``).  Nothing else in that archive is
read.  Run it directly, or let ``build_ffi.py`` run it when the files are
missing.

Environment:
  MONGOOSE_SRC=DIR   use DIR/mongoose.{c,h} instead (no download, no pin check)
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PIN = os.path.join(HERE, "pin.json")
FILES = ("mongoose.c", "mongoose.h", "LICENSE")
# Set by pip for the build backend; see _download_carrier.
_BUILD_ENV = ("PIP_BUILD_TRACKER", "PIP_REQ_TRACKER", "PYTHONPATH", "PYTHONNOUSERSITE")


class FetchError(RuntimeError):
    pass


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def _load_pin():
    with open(PIN) as f:
        return json.load(f)


def _verify(path, expected, what):
    got = _sha256(path)
    if got != expected:
        raise FetchError(
            "%s: sha256 mismatch\n  expected %s\n  got      %s\n"
            "The download is not the pinned Mongoose; refusing to build with it."
            % (what, expected, got)
        )


def have_sources(dest=HERE):
    """True when every pinned file is present in ``dest`` with its pinned hash."""
    pin = _load_pin()
    for name in FILES:
        path = os.path.join(dest, name)
        if not os.path.exists(path) or _sha256(path) != pin["files"][name]:
            return False
    return True


def _check_present(dest, pin):
    """Stop when a file already in ``dest`` is not the pinned one.

    Replacing it silently would throw away local edits; a changed Mongoose
    belongs in MONGOOSE_SRC instead.
    """
    for name in FILES:
        path = os.path.join(dest, name)
        if os.path.exists(path):
            try:
                _verify(path, pin["files"][name], path)
            except FetchError as exc:
                raise FetchError(
                    "%s\nDelete it to fetch the pinned copy, or build other sources "
                    "with MONGOOSE_SRC=DIR." % exc)


def _pip_commands():
    """Ways to run pip: this interpreter's, else the first one on PATH (inside
    pip's isolated build environment this interpreter may have no pip)."""
    yield [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        path = shutil.which(name)
        if path:
            yield [path]


def nested_pip_env(environ):
    """The environment for the pip that downloads the carrier.

    Inside pip's isolated build (`pip install .` from a fresh checkout),
    pip's own per-build state must not reach this nested pip: its build
    tracker, and the PYTHONPATH/PYTHONNOUSERSITE that hide the
    interpreter's site-packages, pip included ("No module named pip").
    The user's PIP_* settings (an index, a proxy) still apply.
    """
    return {k: v for k, v in environ.items() if k not in _BUILD_ENV}


def _download_carrier(pin, workdir):
    carrier = pin["carrier"]
    # --no-binary names the carrier alone: ":all:" would also refuse wheels for
    # the sdist's build requirements, and pip would compile Cython from source
    # just to read the archive's metadata (minutes instead of seconds).
    args = [
        "download", "--no-deps", "--no-binary", carrier["name"], "--disable-pip-version-check",
        "-d", workdir, "%s==%s" % (carrier["name"], carrier["version"]),
    ]
    env = nested_pip_env(os.environ)
    errors = []
    for pip in _pip_commands():
        done = subprocess.run(pip + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        if done.returncode == 0:
            break
        errors.append("%s: %s" % (" ".join(pip), done.stdout.decode(errors="replace").strip()))
    else:
        raise FetchError(
            "could not download the Mongoose carrier (%s==%s):\n%s"
            % (carrier["name"], carrier["version"], "\n".join(errors))
        )
    archive = os.path.join(workdir, carrier["file"])
    if not os.path.exists(archive):
        raise FetchError("pip did not produce %s" % carrier["file"])
    _verify(archive, carrier["sha256"], carrier["file"])
    return archive


def _extract(archive, pin, dest):
    prefix = pin["carrier"]["path"]
    with tarfile.open(archive, "r:gz") as tar:
        for name in FILES:
            try:
                member = tar.getmember(prefix + name)
            except KeyError:
                raise FetchError("the carrier has no %s%s" % (prefix, name)) from None
            if not member.isfile():
                raise FetchError("%s is not a regular file in the carrier" % member.name)
            data = tar.extractfile(member).read()
            tmp = os.path.join(dest, name + ".part")
            with open(tmp, "wb") as f:
                f.write(data)
            try:
                _verify(tmp, pin["files"][name], name)
            except FetchError:
                os.remove(tmp)
                raise
            os.replace(tmp, os.path.join(dest, name))


def fetch(dest=HERE):
    """Make sure ``dest`` holds the pinned Mongoose files; download if needed."""
    if have_sources(dest):
        return dest
    pin = _load_pin()
    _check_present(dest, pin)
    with tempfile.TemporaryDirectory() as workdir:
        archive = _download_carrier(pin, workdir)
        _extract(archive, pin, dest)
    return dest


def source_dir():
    """The directory to build Mongoose from: MONGOOSE_SRC, or the pinned copy."""
    local = os.environ.get("MONGOOSE_SRC")
    if local:
        for name in ("mongoose.c", "mongoose.h"):
            if not os.path.exists(os.path.join(local, name)):
                raise FetchError("MONGOOSE_SRC=%s has no %s" % (local, name))
        return os.path.abspath(local)
    return fetch()


if __name__ == "__main__":
    try:
        print(source_dir())
    except FetchError as exc:
        sys.exit("vendor/fetch.py: %s" % exc)
