"""Utility functions: JSON, URLs, HTTP helpers, hashing,
Base64, CRC-32, randomness, the clock and the log level.

Every function calls Mongoose.  Data-like arguments are converted alike (``str``
is UTF-8 encoded, anything else goes through ``bytes()``); ``str`` arguments
must be ``str``, and C sees them up to an embedded NUL.  Text results are
decoded as UTF-8 with ``surrogateescape``.  ``event_name`` lives in
:mod:`cymongoose.constants`.
"""

import functools
import json
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import _log  # noqa: F401  (installs the log sink at import)
from ._args import text, to_bytes, to_cstr, to_int
from ._ffi import ffi, lib

_LONG_BITS = 8 * ffi.sizeof("long")
_LONG_MIN, _LONG_MAX = -(2 ** (_LONG_BITS - 1)), 2 ** (_LONG_BITS - 1) - 1
_SIZE_MAX = 2 ** (8 * ffi.sizeof("size_t")) - 1
_MAX_CAPTURES = 20  # match() reports at most 20 captures
_WILDCARDS = frozenset(b"*#?")
_QMARK = ord("?")
_NUMBER_START = frozenset(b"-0123456789")  # how Mongoose tells a number token

_new = ffi.new
_unpack: Callable[[Any, int], bytes] = ffi.unpack  # only used on char data
_buffer = ffi.buffer


def _cstr(value: Any, name: str) -> bytes:
    """A ``str`` argument as C sees it: UTF-8, cut at the first NUL."""
    raw = to_cstr(value, name)
    nul = raw.find(b"\0")
    return raw if nul < 0 else raw[:nul]


# -- JSON ----------------------------------------------------------------------


def _json_locate(data: Any, path: str) -> Tuple[bytes, bytes, Optional[bytes]]:
    """The document, the path, and the raw token at the path (``None`` if absent)."""
    raw = to_bytes(data)
    p = to_cstr(path, "path")
    toklen = _new("int *")
    ofs = lib.cym_util_json_tok(raw, len(raw), p, toklen)
    return raw, p, (None if ofs < 0 else raw[ofs:ofs + toklen[0]])


def json_get(data: Any, path: str) -> Optional[str]:
    """Raw JSON text of the value at ``path`` (``$``, ``$.a.b``, ``$.a[0]``).

    Strings keep their quotes, objects and arrays come back as raw text,
    ``null`` as ``"null"``.  Returns ``None`` when the path is missing, the
    document is invalid before the value is reached, or ``path`` does not
    start with ``$``.  Raises ``TypeError`` for a non-``str`` path.
    """
    tok = _json_locate(data, path)[2]
    return None if tok is None else text(tok)


def json_get_num(data: Any, path: str, default: Any = None) -> Any:
    """The JSON number at ``path`` as a ``float``, else ``default``.

    A string such as ``"1"`` is not a number and gives ``default``.
    Mongoose finds the number and Python converts its text, correctly
    rounded.  Mongoose's own conversion is off
    in the last digits for about a quarter of doubles (``1.5e-3`` read as
    ``0.0015000000000000005``, ``5e-324`` as ``5e-308``); it is used only
    for the truncated forms Python does not read, such as ``1e`` or ``-``.
    """
    raw, p, tok = _json_locate(data, path)
    if not tok or tok[0] not in _NUMBER_START:
        return default
    try:
        return float(tok)
    except ValueError:
        v = _new("double *")
        lib.cym_util_json_num(raw, len(raw), p, v)
        return float(v[0])


def json_get_bool(data: Any, path: str, default: Any = None) -> Any:
    """``True``/``False`` for a JSON boolean at ``path``, else ``default``."""
    raw = to_bytes(data)
    p = to_cstr(path, "path")
    v = _new("int *")
    if lib.cym_util_json_bool(raw, len(raw), p, v):
        return bool(v[0])
    return default


def json_get_long(data: Any, path: str, default: int = 0) -> int:
    """The JSON number at ``path`` as a C ``long``, else ``default``.

    The number goes through a C double and is truncated toward zero
    (``3.14`` gives 3, ``1e3`` gives 1000); values beyond the ``long`` range
    saturate or wrap the C way.  Raises ``TypeError`` when ``default`` is
    not an integer and ``OverflowError`` when it does not fit a ``long``.
    """
    raw = to_bytes(data)
    p = to_cstr(path, "path")
    dflt = to_int(default, "default", _LONG_MIN, _LONG_MAX)
    return int(lib.cym_util_json_long(raw, len(raw), p, dflt))


def json_get_str(data: Any, path: str) -> Optional[str]:
    """The JSON string at ``path``, unescaped; ``None`` if missing or not a string.

    Mongoose locates the value; its escapes are decoded as JSON defines
    them: ``\\uXXXX`` escapes give the character they name, so
    ``"\\u00e9"`` reads ``"é"`` and surrogate pairs combine.  An
    invalid escape gives ``None``.  Raw bytes that are not UTF-8 come back
    through ``surrogateescape``.
    """
    tok = _json_locate(data, path)[2]
    if tok is None or tok[:1] != b'"':
        return None
    try:
        value = json.loads(text(tok), strict=False)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


# -- URLs ----------------------------------------------------------------------


def url_encode(data: Any) -> str:
    """Percent-encode the UTF-8 bytes of ``data`` with lowercase hex digits.

    Only ASCII letters, digits and ``-._~`` stay as they are; ``""`` gives
    ``""``.  Raises ``ValueError`` if Mongoose reports a failure.
    """
    raw = to_bytes(data)
    if not raw:
        return ""
    size = 3 * len(raw) + 8
    buf = _new("char[]", size)
    n = lib.cym_util_url_encode(raw, len(raw), buf, size)
    if n == 0:
        raise ValueError("URL encoding failed (mg_url_encode returned 0)")
    return _unpack(buf, n).decode("ascii")


def _url_part(url: str, which: int) -> Tuple[bytes, int, int]:
    raw = _cstr(url, "url")
    n = _new("size_t *")
    ofs = lib.cym_util_url_part(raw, which, n)
    return raw, ofs, n[0]


def url_host(url: str) -> str:
    """The host of ``url``, without port or userinfo; IPv6 keeps its brackets."""
    raw, ofs, n = _url_part(url, 0)
    return text(raw[ofs:ofs + n])


def url_user(url: str) -> str:
    """The user name of ``url``'s userinfo, or ``""``."""
    raw, ofs, n = _url_part(url, 1)
    return text(raw[ofs:ofs + n])


def url_pass(url: str) -> str:
    """The password of ``url``'s userinfo, or ``""``."""
    raw, ofs, n = _url_part(url, 2)
    return text(raw[ofs:ofs + n])


def url_uri(url: str) -> str:
    """Path and query of ``url``, from the first ``/`` after the host; ``"/"`` if none."""
    raw, ofs, n = _url_part(url, 3)
    return "/" if ofs < 0 else text(raw[ofs:ofs + n])


def url_port(url: str) -> int:
    """The explicit port, else the scheme's default (http/ws 80, https/wss 443,
    mqtt 1883, mqtts 8883), else 0."""
    return int(lib.cym_util_url_port(_cstr(url, "url")))


def url_is_ssl(url: str) -> bool:
    """True for the TLS schemes Mongoose knows (``https``, ``wss``, ``mqtts``,
    ``ssl``, ``tls``, ``tcps``); case-sensitive."""
    return bool(lib.cym_util_url_is_ssl(_cstr(url, "url")))


# -- HTTP helpers -------------------------------------------------------------


def http_var(buf: Any, name: str) -> Optional[str]:
    """Value of variable ``name`` in a ``a=1&b=2`` buffer, not URL-decoded.

    Names match case-insensitively, the first match wins; a key without
    ``=`` or with an empty value gives ``""``; ``None`` when absent.
    """
    raw = to_bytes(buf)
    key = _cstr(name, "name")
    n = _new("size_t *")
    ofs = lib.cym_util_http_var(raw, len(raw), key, len(key), n)
    return None if ofs < 0 else text(raw[ofs:ofs + n[0]])


def http_parse_multipart(body: Any, offset: int = 0) -> Tuple[int, Optional[Dict[str, Any]]]:
    """The multipart/form-data part that starts at ``offset`` of ``body``.

    The boundary is read from the body itself.  Returns ``(next_offset,
    {"name": str, "filename": str, "body": bytes})`` (``filename`` is ``""``
    for plain fields), or ``(0, None)`` when there is no further part.
    Raises ``OverflowError`` for a negative ``offset``.
    """
    raw = to_bytes(body)
    ofs = to_int(offset, "offset", 0, _SIZE_MAX)
    offs = _new("size_t[6]")
    nxt = lib.cym_util_multipart(raw, len(raw), ofs, offs)
    if nxt == 0:
        return 0, None
    part = {
        "name": text(raw[offs[0]:offs[0] + offs[1]]),
        "filename": text(raw[offs[2]:offs[2] + offs[3]]),
        "body": raw[offs[4]:offs[4] + offs[5]],
    }
    return int(nxt), part


@functools.lru_cache(maxsize=256)
def _capture_regex(pattern: bytes) -> Any:
    """A regex whose groups are the first 20 wildcards of a Mongoose glob.

    Mongoose extends a ``*`` or ``#`` one byte at a time, shortest first, and
    never revisits a wildcard once the text after it matched: lazy groups
    searched left to right make the same choices.  It is only run once
    Mongoose has said the string matches, so the search follows Mongoose's
    own path (``/`` rules included) and finishes in the same time.
    """
    parts = []
    groups = 0
    for ch in pattern:
        if ch in _WILDCARDS:
            groups += 1
            body = b"." if ch == _QMARK else b".*?"
            parts.append(b"(" + body + b")" if groups <= _MAX_CAPTURES else b"(?:" + body + b")")
        else:
            parts.append(re.escape(bytes((ch,))))
    return re.compile(b"".join(parts), re.DOTALL)


def match(s: str, pattern: str) -> Tuple[bool, List[str]]:
    """Glob-match all of ``s``: ``?`` one byte, ``*`` a run without ``/``, ``#`` any run.

    Returns ``(True, captures)`` with one capture per wildcard, in order (at
    most 20), or ``(False, [])``.  Other characters match case-sensitively.
    Whether ``s`` matches is Mongoose's answer (``mg_match``), quirks
    included: a ``*`` can take in a ``/`` after a partial match, so
    ``match("a/b/x", "*/x")`` is ``(True, ["a/b"])``.  Deliberately, the
    captures are not read from Mongoose's capture array, which overflows
    for patterns such as ``"*??x"`` (memory corruption); each wildcard has
    its own capture, where Mongoose merges a ``*`` with the wildcard right
    after it.
    """
    sb = _cstr(s, "s")
    pb = _cstr(pattern, "pattern")
    if not lib.cym_util_match(sb, len(sb), pb, len(pb)):
        return False, []
    m = _capture_regex(pb).fullmatch(sb)
    if m is None:  # cannot happen for a string Mongoose matched; never invent captures
        return True, []
    return True, [text(g) for g in m.groups()]


# -- hashing, Base64, CRC ------------------------------------------------------


def _digest(fn: Any, size: int, data: Any) -> bytes:
    raw = to_bytes(data)
    out = _new("unsigned char[]", size)
    fn(raw, len(raw), out)
    return _buffer(out, size)[:]


def md5(data: Any) -> bytes:
    """MD5 digest of ``data`` (16 bytes)."""
    return _digest(lib.cym_util_md5, 16, data)


def sha1(data: Any) -> bytes:
    """SHA-1 digest of ``data`` (20 bytes)."""
    return _digest(lib.cym_util_sha1, 20, data)


def sha256(data: Any) -> bytes:
    """SHA-256 digest of ``data`` (32 bytes)."""
    return _digest(lib.cym_util_sha256, 32, data)


def hmac_sha256(key: Any, data: Any) -> bytes:
    """HMAC-SHA256 of ``data`` under ``key`` (32 bytes)."""
    k = to_bytes(key)
    raw = to_bytes(data)
    out = _new("unsigned char[32]")
    lib.cym_util_hmac_sha256(k, len(k), raw, len(raw), out)
    return _buffer(out, 32)[:]


def base64_encode(data: Any) -> str:
    """Standard Base64 with ``=`` padding; ``""`` for empty input."""
    raw = to_bytes(data)
    size = (len(raw) + 2) // 3 * 4 + 1
    out = _new("char[]", size)
    n = lib.cym_util_b64_encode(raw, len(raw), out, size)
    return _unpack(out, n).decode("ascii")


def base64_decode(data: str) -> bytes:
    """Decode standard Base64; invalid input gives ``b""``, never an exception.

    Invalid means a character outside the alphabet (whitespace included) or
    a group of fewer than four characters (``"aGk"``); padded groups may be
    concatenated (``"aGk=aGk="`` gives ``b"hihi"``).  Like Mongoose, a
    trailing incomplete group after whole groups is ignored.  Raises
    ``TypeError`` unless ``data`` is a ``str``, and ``UnicodeEncodeError``
    for non-ASCII text.
    """
    if not isinstance(data, str):
        raise TypeError("Argument 'data' has incorrect type (expected str, got %s)"
                        % type(data).__name__)
    raw = data.encode("ascii")
    size = len(raw) // 4 * 3 + 1
    out = _new("char[]", size)
    n = lib.cym_util_b64_decode(raw, len(raw), out, size)
    return _unpack(out, n)


def crc32(data: Any, initial: int = 0) -> int:
    """CRC-32 as ``zlib.crc32``, chainable through ``initial`` (a uint32)."""
    raw = to_bytes(data)
    crc = to_int(initial, "initial", 0, 2**32 - 1)
    return int(lib.cym_util_crc32(crc, raw, len(raw)))


# -- randomness, clock, log level -----------------------------------------------


def random_bytes(length: int) -> bytes:
    """``length`` bytes from the OS's secure RNG.

    Raises ``OverflowError`` for a negative length and ``OSError`` if the
    RNG fails.
    """
    n = to_int(length, "length", 0, _SIZE_MAX)
    if n == 0:
        return b""
    buf = _new("char[]", n)
    if not lib.cym_util_random(buf, n):
        raise OSError("mg_random failed")
    return _unpack(buf, n)


def random_str(length: int) -> str:
    """``length`` random characters from ``[0-9a-zA-Z]``.

    Raises ``OverflowError`` for a negative length.
    """
    n = to_int(length, "length", 0, _SIZE_MAX - 1)
    if n == 0:
        return ""
    buf = _new("char[]", n + 1)  # Mongoose NUL-terminates within the length
    lib.cym_util_random_str(buf, n + 1)
    return _unpack(buf, n).decode("ascii")


def millis() -> int:
    """Monotonic milliseconds since boot (not since the epoch)."""
    return int(lib.mg_millis())


def log_set(level: int) -> None:
    """Set Mongoose's global log level (``MG_LL_NONE`` .. ``MG_LL_VERBOSE``).

    Stored without a range check.  The lines go to the Python
    logger ``"cymongoose"`` (see :mod:`cymongoose._log`), not to stdout.
    Raises ``OverflowError`` outside the C ``int`` range.
    """
    lib.mg_log_level = to_int(level, "level")


def log_get() -> int:
    """Mongoose's global log level; 0 right after import."""
    return int(lib.mg_log_level)


__all__ = [
    "base64_decode", "base64_encode", "crc32", "hmac_sha256", "http_parse_multipart",
    "http_var", "json_get", "json_get_bool", "json_get_long", "json_get_num",
    "json_get_str", "log_get", "log_set", "match", "md5", "millis", "random_bytes",
    "random_str", "sha1", "sha256", "url_encode", "url_host", "url_is_ssl", "url_pass",
    "url_port", "url_uri", "url_user",
]
