"""The fetch step of the vendored Mongoose (vendor/fetch.py): the pin, the hash
checks, exactly three files extracted, and a clear stop on any mismatch.

The carrier archives here are small tar.gz files made by the tests with the
same layout as the real one; the real download is covered by the build itself.
"""

import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

import pytest

from support.paths import ROOT

VENDOR = os.path.join(ROOT, "vendor")
sys.path.insert(0, VENDOR)
import fetch  # noqa: E402

PREFIX = "carrier-1.0/thirdparty/mongoose/"
FILES = {"mongoose.c": b"int mongoose;\n", "mongoose.h": b"/* header */\n",
         "LICENSE": b"GPL-2.0\n"}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_carrier(path, members):
    """A tar.gz holding ``members`` (name -> bytes) under PREFIX."""
    with tarfile.open(str(path), "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(PREFIX + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def pin_for(files):
    return {"carrier": {"path": PREFIX}, "files": {n: sha(d) for n, d in files.items()}}


def test_pin_is_mongoose_7_23_from_the_cymongoose_0_2_5_sdist():
    with open(os.path.join(VENDOR, "pin.json")) as f:
        pin = json.load(f)
    assert pin["mongoose_version"] == "7.23"
    assert (pin["carrier"]["name"], pin["carrier"]["version"]) == ("cymongoose", "0.2.5")
    assert pin["carrier"]["sha256"] == \
        "8c0ec19752d493702c566735a28918f1b81a756197f78e4931c566dbad849a8f"
    assert pin["files"]["mongoose.c"] == \
        "651d514ee52761c26af774d74e91346bf150c915120d967ec4332a69ea1600f5"
    assert pin["files"]["mongoose.h"] == \
        "0ee23157099964b7ca1c7bf3e02b1b8250cbd7838a6938fed63726e720f70b0b"
    assert sorted(pin["files"]) == sorted(fetch.FILES)


def test_extract_takes_exactly_the_three_files(tmp_path):
    archive = tmp_path / "c.tar.gz"
    make_carrier(archive, dict(FILES, **{"other.py": b"import os\n", "README": b"x"}))
    dest = tmp_path / "dest"
    dest.mkdir()
    fetch._extract(str(archive), pin_for(FILES), str(dest))
    assert sorted(os.listdir(str(dest))) == sorted(FILES)
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data


@pytest.mark.parametrize("bad", sorted(FILES))
def test_extract_stops_on_a_file_hash_mismatch(tmp_path, bad):
    archive = tmp_path / "c.tar.gz"
    make_carrier(archive, dict(FILES, **{bad: FILES[bad] + b"tampered"}))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(fetch.FetchError) as info:
        fetch._extract(str(archive), pin_for(FILES), str(dest))
    message = str(info.value)
    assert message.startswith("%s: sha256 mismatch" % bad)
    assert sha(FILES[bad]) in message and sha(FILES[bad] + b"tampered") in message
    assert "refusing to build" in message
    assert bad not in os.listdir(str(dest))  # neither the file nor its .part is left
    assert not [n for n in os.listdir(str(dest)) if n.endswith(".part")]


def test_extract_stops_when_a_file_is_missing_from_the_carrier(tmp_path):
    archive = tmp_path / "c.tar.gz"
    make_carrier(archive, {k: v for k, v in FILES.items() if k != "LICENSE"})
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(fetch.FetchError, match="the carrier has no %sLICENSE" % PREFIX):
        fetch._extract(str(archive), pin_for(FILES), str(dest))


def test_carrier_archive_hash_is_checked(tmp_path):
    archive = tmp_path / "cymongoose-0.2.5.tar.gz"
    make_carrier(archive, FILES)
    with pytest.raises(fetch.FetchError, match="cymongoose-0.2.5.tar.gz: sha256 mismatch"):
        fetch._verify(str(archive), fetch._load_pin()["carrier"]["sha256"],
                      "cymongoose-0.2.5.tar.gz")
    fetch._verify(str(archive), sha(archive.read_bytes()), "cymongoose-0.2.5.tar.gz")


needs_sources = pytest.mark.skipif(not fetch.have_sources(),
                                   reason="the pinned Mongoose sources are not fetched")


@needs_sources
def test_pinned_files_present_means_no_download(tmp_path):
    for name in fetch.FILES:
        shutil.copy(os.path.join(VENDOR, name), str(tmp_path / name))
    assert fetch.have_sources(str(tmp_path))
    assert fetch.fetch(str(tmp_path)) == str(tmp_path)  # returns before pip is run


@needs_sources
def test_a_changed_local_file_stops_the_fetch_instead_of_being_replaced(tmp_path):
    for name in fetch.FILES:
        shutil.copy(os.path.join(VENDOR, name), str(tmp_path / name))
    (tmp_path / "mongoose.c").write_bytes(b"/* edited */\n")
    with pytest.raises(fetch.FetchError) as info:
        fetch.fetch(str(tmp_path))
    assert "mongoose.c: sha256 mismatch" in str(info.value)
    assert "MONGOOSE_SRC" in str(info.value)
    assert (tmp_path / "mongoose.c").read_bytes() == b"/* edited */\n"  # left alone


def test_mongoose_src_must_hold_both_sources(tmp_path, monkeypatch):
    (tmp_path / "mongoose.c").write_bytes(b"int x;\n")
    monkeypatch.setenv("MONGOOSE_SRC", str(tmp_path))
    with pytest.raises(fetch.FetchError, match="has no mongoose.h"):
        fetch.source_dir()
    (tmp_path / "mongoose.h").write_bytes(b"\n")
    assert fetch.source_dir() == str(tmp_path)


def test_nested_pip_runs_outside_the_isolated_build_environment():
    """pip's build isolation hides site-packages (pip included) with PYTHONPATH."""
    environ = {"PYTHONPATH": "/tmp/pip-build-env/site", "PYTHONNOUSERSITE": "1",
               "PIP_BUILD_TRACKER": "/tmp/pip-build-tracker", "PATH": "/usr/bin",
               "PIP_INDEX_URL": "https://mirror.example/simple", "HOME": "/root"}
    assert fetch.nested_pip_env(environ) == {
        "PATH": "/usr/bin", "PIP_INDEX_URL": "https://mirror.example/simple", "HOME": "/root"}
