"""cffi builder for cymongoose._mg_cffi (out-of-line, API mode).

The cdef is read from cymongoose/_cdef/*.h (in name order).  The extension
is one C unit: the vendored mongoose.c followed by our shim files
cymongoose/_csrc/*.c, which may therefore call Mongoose's static helpers.
mongoose.c is compiled from a copy in build/mongoose/ with the fixes in
vendor/patches/ applied (vendor/README.md, "Patches").

Environment:
  MONGOOSE_SRC=DIR     build from DIR/mongoose.{c,h} instead of vendor/
  CYM_TLS=builtin      Mongoose's built-in TLS stack instead of the system's
                       OpenSSL (the default, which needs libssl-dev)
  CYM_SANITIZE=1       add -fsanitize=address,undefined (see `make test-asan`)
  CYM_DEBUG=1          -O0 -g instead of -O3
"""

import glob
import os
import subprocess
import sys
import sysconfig

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "vendor"))
import fetch  # noqa: E402  (vendor/fetch.py)
import mgpatch  # noqa: E402  (vendor/mgpatch.py)

CDEF_DIR = os.path.join(HERE, "cymongoose", "_cdef")
CSRC_DIR = os.path.join(HERE, "cymongoose", "_csrc")


def _read(path):
    with open(path) as f:
        return f.read()


def _source():
    parts = [
        "#pragma GCC diagnostic push",
        '#pragma GCC diagnostic ignored "-Wall"',
        '#pragma GCC diagnostic ignored "-Wextra"',
        '#pragma GCC diagnostic ignored "-Wunused-function"',
        '#include "mongoose.c"',
        "#pragma GCC diagnostic pop",
        '#include "codes.h"',
    ]
    for path in sorted(glob.glob(os.path.join(CSRC_DIR, "*.c"))):
        parts.append('#include "%s"' % os.path.basename(path))
    return "\n".join(parts) + "\n"


def _flags():
    if os.environ.get("CYM_DEBUG"):
        args = ["-O0", "-g"]
    else:
        # Mongoose's functions are exported from the module, so with -fPIC
        # GCC must assume another library could replace them: every call
        # between them went through the PLT and none was inlined (mg_call,
        # mg_tls_pending once per connection per poll).  Nothing replaces
        # them, so let GCC call and inline them directly.
        args = ["-O3", "-fno-semantic-interposition"]
    link = []
    if os.environ.get("CYM_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        args += san + ["-g"]
        link += san
    return args, link


def _tls_backend():
    """``(define_macros, libraries)`` for the TLS backend CYM_TLS names."""
    choice = os.environ.get("CYM_TLS", "openssl").strip().lower() or "openssl"
    if choice == "builtin":
        return [("MG_TLS", "MG_TLS_BUILTIN")], []
    if choice != "openssl":
        sys.exit("CYM_TLS=%r: use CYM_TLS=openssl (the default) or CYM_TLS=builtin" % choice)
    _require_openssl_headers()
    return [("MG_TLS", "MG_TLS_OPENSSL")], ["ssl", "crypto"]


def _require_openssl_headers():
    """Stop with a clear message when <openssl/ssl.h> cannot be compiled against."""
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()
    try:
        found = subprocess.run(cc + ["-E", "-x", "c", "-", "-o", os.devnull],
                               input=b"#include <openssl/ssl.h>\n",
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        found = False
    if not found:
        sys.exit("cymongoose: the OpenSSL headers (<openssl/ssl.h>) were not found. "
                 "Install them (Debian/Ubuntu: apt-get install libssl-dev), "
                 "or build with Mongoose's built-in TLS stack: CYM_TLS=builtin")


def _backend_stamp(macros):
    """A file that changes only when the TLS backend does, for ``depends``:
    switching CYM_TLS in a tree that was built before must rebuild."""
    path = os.path.join(HERE, "build", "tls-backend.txt")
    text = repr(macros)
    if not os.path.exists(path) or _read(path) != text:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return path


mongoose_dir = fetch.source_dir()
tls_macros, tls_libraries = _tls_backend()
# Found before mongoose_dir, which still provides mongoose.h.
patched_dir = mgpatch.patched_dir(mongoose_dir, os.path.join(HERE, "build", "mongoose"),
                                  strict=not os.environ.get("MONGOOSE_SRC"))
compile_args, link_args = _flags()

ffibuilder = FFI()
ffibuilder.cdef(
    "\n".join(_read(p) for p in sorted(glob.glob(os.path.join(CDEF_DIR, "*.h"))))
)
ffibuilder.set_source(
    "cymongoose._mg_cffi",
    _source(),
    include_dirs=[patched_dir, mongoose_dir, CSRC_DIR],
    define_macros=tls_macros + [
        ("MG_ENABLE_IPV6", "1"),
        # Header lines a request may have (Apache's LimitRequestFields);
        # more get 431.  Mongoose's default, 30, refuses what browsers
        # behind a few proxies send.  _cdef/00_mongoose.h repeats it.
        ("MG_MAX_HTTP_HEADERS", "100"),
        ("_GNU_SOURCE", "1"),
        # Vendor patch 0082: mg_mgr_poll calls the shim between its reads
        # and its write burst (the batch of WebSocket messages, core.c).
        ("CYM_BEFORE_WRITES", "cym_batch_deliver"),
        # Vendor patch 0083: the shim says whether that burst may be skipped.
        ("CYM_BURST_NEEDED", "cym_burst_needed"),
        # Vendor patch 0086: in its place, the shim may hand that batch to
        # Python after mg_mgr_poll returns, and run the burst itself.
        ("CYM_HAND_OFF", "cym_hand_off"),
        # Vendor patch 0085: mg_iotest tells the shim when it waits in
        # epoll_wait (park.c).
        ("CYM_AROUND_WAIT", "cym_park_wait"),
        # Vendor patch 0087: MG_EV_POLL only where a handler acts on it.
        ("CYM_POLL_SKIPS", "cym_poll_skips"),
        ("CYM_POLL_WANTED", "cym_poll_wanted"),
    ],
    extra_compile_args=["-std=gnu99"] + compile_args,
    # permessage-deflate (_csrc/deflate.c) needs zlib.
    libraries=tls_libraries + ["z"],
    extra_link_args=link_args,
    # The C unit only #includes these, so tell setuptools to rebuild when they change.
    depends=sorted(glob.glob(os.path.join(CSRC_DIR, "*.c")))
    + [os.path.join(mongoose_dir, "mongoose.c"), os.path.join(mongoose_dir, "mongoose.h")]
    + [os.path.join(patched_dir, "mongoose.c"), _backend_stamp(tls_macros)]
    + mgpatch.patch_files(),
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=os.path.join(HERE, "build", "cffi"), verbose=True)
