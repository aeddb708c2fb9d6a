"""The package as users get it: public names, metadata, and the sdist's vendored sources."""

import importlib.util
import os
import subprocess
import sys
import tarfile

import pytest

import cymongoose
from support.paths import ROOT


SPEC_CORE_NAMES = """
Connection HttpMessage Manager MqttMessage WsMessage
MG_EV_ACCEPT MG_EV_CLOSE MG_EV_CONNECT MG_EV_ERROR MG_EV_HTTP_HDRS MG_EV_HTTP_MSG
MG_EV_MQTT_CMD MG_EV_MQTT_MSG MG_EV_MQTT_OPEN MG_EV_OPEN MG_EV_POLL MG_EV_READ
MG_EV_RESOLVE MG_EV_SNTP_TIME MG_EV_TLS_HS MG_EV_USER MG_EV_WAKEUP MG_EV_WRITE
MG_EV_WS_CTL MG_EV_WS_MSG MG_EV_WS_OPEN
WEBSOCKET_OP_BINARY WEBSOCKET_OP_PING WEBSOCKET_OP_PONG WEBSOCKET_OP_TEXT
MQTT_PROP_TYPE_BINARY_DATA MQTT_PROP_TYPE_BYTE MQTT_PROP_TYPE_INT MQTT_PROP_TYPE_SHORT
MQTT_PROP_TYPE_STRING MQTT_PROP_TYPE_STRING_PAIR MQTT_PROP_TYPE_VARIABLE_INT
MG_LL_NONE MG_LL_ERROR MG_LL_INFO MG_LL_DEBUG MG_LL_VERBOSE event_name
""".split()


def test_core_names_are_exported() -> None:
    for name in SPEC_CORE_NAMES:
        assert name in cymongoose.__all__, name
        assert hasattr(cymongoose, name), name
    from cymongoose import _mongoose

    for name in SPEC_CORE_NAMES:
        assert hasattr(_mongoose, name), name


SPEC_CONSTANTS = {  # Mongoose 7.23's event numbers and the other exported constants
    "MG_EV_ERROR": 0, "MG_EV_OPEN": 1, "MG_EV_POLL": 2, "MG_EV_RESOLVE": 3,
    "MG_EV_CONNECT": 4, "MG_EV_ACCEPT": 5, "MG_EV_TLS_HS": 6, "MG_EV_READ": 7,
    "MG_EV_WRITE": 8, "MG_EV_CLOSE": 9, "MG_EV_HTTP_HDRS": 10, "MG_EV_HTTP_MSG": 11,
    "MG_EV_WS_OPEN": 12, "MG_EV_WS_MSG": 13, "MG_EV_WS_CTL": 14, "MG_EV_MQTT_CMD": 15,
    "MG_EV_MQTT_MSG": 16, "MG_EV_MQTT_OPEN": 17, "MG_EV_SNTP_TIME": 18, "MG_EV_WAKEUP": 19,
    "MG_EV_USER": 23,
    "WEBSOCKET_OP_TEXT": 1, "WEBSOCKET_OP_BINARY": 2, "WEBSOCKET_OP_PING": 9,
    "WEBSOCKET_OP_PONG": 10,
    "MG_LL_NONE": 0, "MG_LL_ERROR": 1, "MG_LL_INFO": 2, "MG_LL_DEBUG": 3, "MG_LL_VERBOSE": 4,
    "MQTT_PROP_TYPE_BYTE": 0, "MQTT_PROP_TYPE_STRING": 1, "MQTT_PROP_TYPE_STRING_PAIR": 2,
    "MQTT_PROP_TYPE_BINARY_DATA": 3, "MQTT_PROP_TYPE_VARIABLE_INT": 4, "MQTT_PROP_TYPE_INT": 5,
    "MQTT_PROP_TYPE_SHORT": 6,
}


def test_constant_values() -> None:
    got = {name: getattr(cymongoose, name) for name in SPEC_CONSTANTS}
    assert got == SPEC_CONSTANTS
    assert all(type(v) is int for v in got.values())
    for name in SPEC_CONSTANTS:
        if name.startswith("MG_EV_"):
            assert cymongoose.event_name(SPEC_CONSTANTS[name]) == name


def test_event_name() -> None:
    assert cymongoose.event_name(cymongoose.MG_EV_HTTP_MSG) == "MG_EV_HTTP_MSG"
    assert cymongoose.event_name(23) == "MG_EV_USER"
    assert cymongoose.event_name(25) == "MG_EV_USER+2"
    assert cymongoose.event_name(21) == "MG_EV_UNKNOWN(21)"
    assert cymongoose.event_name(-1) == "MG_EV_UNKNOWN(-1)"
    with pytest.raises(TypeError):
        cymongoose.event_name("1")  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        cymongoose.event_name(2**40)


IMPORT_EFFECTS = r"""
import time
import cymongoose as cm
from cymongoose._ffi import lib
level = cm.log_get()
skew = lib.mg_millis() + lib.mg_boot_timestamp_ms - time.time() * 1000
with cm.Manager() as mgr:  # at Mongoose's default level (DEBUG) these would log lines
    mgr.listen("http://127.0.0.1:0")
    mgr.connect("tcp://127.0.0.1:1")
    for _ in range(5):
        mgr.poll(10)
print(level, int(abs(skew) < 60000))
"""


def test_import_time_settings() -> None:
    """Spec 1.3, in a fresh interpreter: Mongoose silenced, wall clock seeded."""
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(cymongoose.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_parent, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", IMPORT_EFFECTS], capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "0 1\n"  # log level MG_LL_NONE; mg_now() is the wall clock
    assert done.stderr == ""


def test_version_is_a_string() -> None:
    assert isinstance(cymongoose.__version__, str)


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "pyproject.toml")),
                    reason="needs the source tree")
def test_sdist_carries_mongoose_and_needs_no_download(tmp_path) -> None:
    # Not importorskip: with the source tree on sys.path, its build/ folder
    # imports as a namespace package named "build".
    spec = importlib.util.find_spec("build")
    if spec is None or spec.origin in (None, "namespace"):
        pytest.skip("pypa build is not installed")
    subprocess.run([sys.executable, "-m", "build", "--sdist", "-o",
                    str(tmp_path), ROOT], check=True, capture_output=True, timeout=300)
    (archive,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "x")
    top = names[0].split("/")[0]
    for member in ("vendor/mongoose.c", "vendor/mongoose.h", "vendor/LICENSE",
                   "vendor/pin.json", "build_ffi.py", "cymongoose/_csrc/core.c", "LICENSE",
                   "vendor/mgpatch.py", "vendor/patches/0002-tls-ecdsa-der-integers.patch"):
        assert "%s/%s" % (top, member) in names, member
    # The pinned files are there with their pinned hashes: the build downloads nothing.
    check = ("import sys; sys.path.insert(0, 'vendor'); import fetch; "
             "sys.exit(0 if fetch.have_sources() else 1)")
    subprocess.run([sys.executable, "-c", check], cwd=str(tmp_path / "x" / top), check=True,
                   timeout=60)
    # The build's set-up (fetch, patches, cdef) runs from the sdist's files alone;
    # with no package index, any download attempt would fail it.
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS="")
    done = subprocess.run([sys.executable, "-c", "import build_ffi"], env=env,
                          cwd=str(tmp_path / "x" / top), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
