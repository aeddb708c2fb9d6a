"""Utility functions against the standard library on the same input."""

import base64
import hashlib
import hmac
import json
import math
import random
import re
import string
import time
import urllib.parse
import zlib

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cymongoose as cm

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

UTILITY_NAMES = (
    "json_get json_get_num json_get_bool json_get_long json_get_str url_encode url_host "
    "url_port url_user url_pass url_uri url_is_ssl http_var http_parse_multipart match md5 "
    "sha1 sha256 hmac_sha256 base64_encode base64_decode crc32 random_bytes random_str "
    "millis log_set log_get event_name"
).split()

# Data-like inputs: the same bytes given as str, bytes, bytearray and memoryview.
data_like = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200),
    st.binary(max_size=300).map(bytearray),
    st.binary(max_size=300).map(memoryview),
)


def as_bytes(data):
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def test_every_utility_is_exported():
    from cymongoose import _mongoose

    for name in UTILITY_NAMES + ["Rpc", "RpcReq"]:
        assert name in cm.__all__, name
        assert name in _mongoose.__all__, name
        assert callable(getattr(cm, name)), name


# -- JSON ----------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=30),
    st.floats(allow_nan=False, allow_infinity=False),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(string.ascii_letters, min_size=1,
                                                    max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@FAST
@given(value=json_values, ensure_ascii=st.booleans())
def test_json_get_returns_the_raw_token(value, ensure_ascii):
    doc = json.dumps({"k": value, "z": 1}, ensure_ascii=ensure_ascii)
    token = cm.json_get(doc, "$.k")
    assert token is not None
    assert json.loads(token) == value
    assert cm.json_get(doc.encode(), "$.z") == "1"


def test_json_get_examples():
    doc = '{"name": "Alice", "a": {"b": [10, {"c": null}]}, "t": true}'
    assert cm.json_get(doc, "$.name") == '"Alice"'
    assert cm.json_get(doc, "$.a.b[0]") == "10"
    assert cm.json_get(doc, "$.a.b[1].c") == "null"
    assert cm.json_get(doc, "$.a.b") == '[10, {"c": null}]'
    assert cm.json_get(doc, "$") == doc
    assert cm.json_get(doc, "$.missing") is None
    assert cm.json_get(doc, "$.a.b[5]") is None
    assert cm.json_get(doc, "name") is None  # path must start with "$"
    assert cm.json_get(bytearray(b"[1,2]"), "$[1]") == "2"


@pytest.mark.parametrize("doc", ['{"a": [1, 2', '{"a":', "", "{", '{"a" 1}', "nul", "\x00"])
def test_json_truncated_or_invalid_documents(doc):
    assert cm.json_get(doc, "$.a") is None
    assert cm.json_get_num(doc, "$.a") is None
    assert cm.json_get_bool(doc, "$.a", "d") == "d"
    assert cm.json_get_long(doc, "$.a", 7) == 7
    assert cm.json_get_str(doc, "$.a") is None


def test_json_value_before_the_truncation_is_still_found():
    # Mongoose parses up to the value it looks for; what follows is not checked.
    assert cm.json_get('{"a": 1, "b": ', "$.a") == "1"


@FAST
@given(data=st.binary(max_size=200), path=st.text(max_size=20))
def test_json_on_arbitrary_input_never_fails(data, path):
    for fn in (cm.json_get, cm.json_get_str, cm.json_get_num, cm.json_get_bool):
        fn(data, path)
    assert isinstance(cm.json_get_long(data, path), int)


@FAST
@given(x=st.floats(allow_nan=False, allow_infinity=False))
def test_json_get_num_matches_json_loads(x):
    doc = json.dumps({"v": x})
    assert cm.json_get_num(doc, "$.v") == json.loads(doc)["v"]


@FAST
@given(n=st.integers(-(2**53), 2**53))
def test_json_get_long_and_num_on_integers(n):
    doc = json.dumps([n])
    assert cm.json_get_long(doc, "$[0]") == n
    assert cm.json_get_num(doc, "$[0]") == float(n)


def test_json_numbers_examples():
    assert cm.json_get_num('{"a": "1"}', "$.a") is None
    assert cm.json_get_num('{"a": "1"}', "$.a", 5) == 5
    assert cm.json_get_num('{"a": 1.5e-3}', "$.a") == 0.0015
    assert cm.json_get_num('{"a": 5e-324}', "$.a") == 5e-324
    assert cm.json_get_long('{"a": 3.14}', "$.a") == 3
    assert cm.json_get_long('{"a": -1.9}', "$.a") == -1
    assert cm.json_get_long('{"a": 1e3}', "$.a") == 1000
    assert cm.json_get_long('{"a": "x"}', "$.a", -4) == -4
    assert cm.json_get_long('{"a": 9223372036854775807}', "$.a") == -9223372036854775808
    with pytest.raises(TypeError):
        cm.json_get_long("{}", "$.a", None)
    with pytest.raises(OverflowError):
        cm.json_get_long("{}", "$.a", 2**70)


def test_json_get_bool():
    doc = '{"t": true, "f": false, "one": 1, "n": null}'
    assert cm.json_get_bool(doc, "$.t") is True
    assert cm.json_get_bool(doc, "$.f") is False
    assert cm.json_get_bool(doc, "$.one") is None
    assert cm.json_get_bool(doc, "$.n", "d") == "d"


@FAST
@given(s=st.text(max_size=80), ensure_ascii=st.booleans())
def test_json_get_str_decodes_like_json_loads(s, ensure_ascii):
    doc = json.dumps({"s": s}, ensure_ascii=ensure_ascii)
    assert cm.json_get_str(doc, "$.s") == s


def test_json_get_str_examples():
    # Deliberate difference from 0.2.5: \u escapes give the character they name.
    assert cm.json_get_str(r'{"a": "\u00e9"}', "$.a") == "é"
    assert cm.json_get_str(r'{"a": "\u0048i"}', "$.a") == "Hi"
    assert cm.json_get_str(r'{"a": "\ud83d\ude00"}', "$.a") == "\U0001f600"
    assert cm.json_get_str(r'{"a": "x\"y\\z\n"}', "$.a") == 'x"y\\z\n'
    assert cm.json_get_str('{"a": ""}', "$.a") == ""
    assert cm.json_get_str('{"a": 5}', "$.a") is None
    assert cm.json_get_str('{"a": "x"}', "$.b") is None
    assert cm.json_get_str(r'{"a": "bad \q escape"}', "$.a") is None
    assert cm.json_get_str(b'{"a": "\xff"}', "$.a") == "\udcff"


@pytest.mark.parametrize("fn", [cm.json_get, cm.json_get_str, cm.json_get_num,
                                cm.json_get_bool, cm.json_get_long])
def test_json_path_must_be_str(fn):
    with pytest.raises(TypeError):
        fn("{}", b"$.a")
    with pytest.raises(TypeError):
        fn("{}", None)
    with pytest.raises(TypeError):
        fn(None, "$.a")


# -- URLs ----------------------------------------------------------------------


def lower_hex(quoted):
    return re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted)


@FAST
@given(s=st.text(max_size=100))
def test_url_encode_matches_urllib(s):
    encoded = cm.url_encode(s)
    assert encoded == lower_hex(urllib.parse.quote(s, safe=""))
    assert urllib.parse.unquote(encoded) == s


@FAST
@given(b=st.binary(max_size=100))
def test_url_encode_bytes(b):
    assert cm.url_encode(b) == lower_hex(urllib.parse.quote_from_bytes(b, safe=""))


def test_url_encode_examples():
    assert cm.url_encode(" ") == "%20"
    assert cm.url_encode("/") == "%2f"
    assert cm.url_encode("é") == "%c3%a9"
    assert cm.url_encode("*") == "%2a"
    assert cm.url_encode("aZ09-._~") == "aZ09-._~"
    assert cm.url_encode("") == ""
    assert cm.url_encode("x" * 100_000) == "x" * 100_000


hosts = st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,10}){0,3}", fullmatch=True)
userinfo = st.text(string.ascii_letters + string.digits, min_size=1, max_size=10)
paths = st.from_regex(r"(/[a-zA-Z0-9._~-]{0,8}){0,4}", fullmatch=True)
queries = st.from_regex(r"[a-z0-9=&]{0,12}", fullmatch=True)


@FAST
@given(scheme=st.sampled_from(["http", "https", "ws", "wss", "mqtt", "mqtts", "tcp", "udp"]),
       user=st.one_of(st.none(), userinfo), password=st.one_of(st.none(), userinfo),
       host=hosts, port=st.one_of(st.none(), st.integers(1, 65535)),
       path=paths, query=st.one_of(st.none(), queries))
def test_url_parts_match_urlsplit(scheme, user, password, host, port, path, query):
    if not path:
        query = None  # Mongoose ends the host only at ":" or "/": "http://h?q" has host "h?q"
    netloc = host if port is None else "%s:%d" % (host, port)
    if user is not None:
        netloc = "%s%s@%s" % (user, "" if password is None else ":" + password, netloc)
    url = "%s://%s%s%s" % (scheme, netloc, path, "" if query is None else "?" + query)
    parts = urllib.parse.urlsplit(url)
    defaults = {"http": 80, "ws": 80, "https": 443, "wss": 443, "mqtt": 1883, "mqtts": 8883}
    assert cm.url_host(url) == parts.hostname
    assert cm.url_port(url) == (parts.port if port is not None else defaults.get(scheme, 0))
    assert cm.url_user(url) == (parts.username or "")
    assert cm.url_pass(url) == (parts.password or "")
    expected_uri = (path + ("" if query is None else "?" + query)) if path else "/"
    assert cm.url_uri(url) == expected_uri
    assert cm.url_is_ssl(url) == (scheme in ("https", "wss", "mqtts"))


def test_url_examples():
    assert cm.url_host("http://[::1]:99/") == "[::1]"
    assert cm.url_port("http://[::1]:99/") == 99
    assert cm.url_host("") == ""
    assert cm.url_port("tcp://h") == 0
    assert cm.url_port("example.com") == 0
    assert cm.url_port("") == 0
    assert cm.url_uri("http://h?q") == "/"
    assert cm.url_uri("http://h") == "/"
    assert cm.url_user("http://h/") == ""
    assert cm.url_pass("http://u@h/") == ""
    for scheme in ("https", "wss", "mqtts", "ssl", "tls"):
        assert cm.url_is_ssl(scheme + "://x")
    assert not cm.url_is_ssl("HTTPS://x")
    assert not cm.url_is_ssl("http://x")


@FAST
@given(url=st.text(max_size=60))
def test_url_functions_on_arbitrary_text(url):
    assert isinstance(cm.url_host(url), str)
    assert 0 <= cm.url_port(url) <= 65535
    assert isinstance(cm.url_user(url), str) and isinstance(cm.url_pass(url), str)
    assert cm.url_uri(url).startswith("/") or "\0" in url
    assert isinstance(cm.url_is_ssl(url), bool)


@pytest.mark.parametrize("fn", [cm.url_host, cm.url_port, cm.url_user, cm.url_pass,
                                cm.url_uri, cm.url_is_ssl])
def test_url_functions_need_str(fn):
    with pytest.raises(TypeError):
        fn(b"http://x/")
    with pytest.raises(TypeError):
        fn(None)


def test_url_stops_at_nul():
    assert cm.url_uri("http://h/a\x00/b") == "/a"
    assert cm.url_host("http://h\x00ost/") == "h"


# -- http_var, multipart -------------------------------------------------------

names = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=8)
raw_values = st.text(string.ascii_letters + string.digits + "%+-._~", max_size=12)


@FAST
@given(pairs=st.lists(st.tuples(names, raw_values), min_size=1, max_size=6))
def test_http_var_returns_raw_first_match(pairs):
    buf = "&".join("%s=%s" % kv for kv in pairs)
    first = {}
    for k, v in pairs:
        first.setdefault(k.lower(), v)
    for k, _ in pairs:
        value = cm.http_var(buf, k.swapcase())
        assert value == first[k.lower()]
        assert urllib.parse.unquote_plus(value) == urllib.parse.unquote_plus(first[k.lower()])
    assert cm.http_var(buf.encode(), "no-such-name") is None


def test_http_var_examples():
    assert cm.http_var("a=x%20y+z&b=2", "A") == "x%20y+z"
    assert cm.http_var("a&b=", "a") == ""
    assert cm.http_var("a&b=", "b") == ""
    assert cm.http_var("", "a") is None
    assert cm.http_var(b"a=1&a=2", "a") == "1"
    assert cm.http_var("a=" + "v" * 100_000, "a") == "v" * 100_000
    with pytest.raises(TypeError):
        cm.http_var("a=1", b"a")


def multipart_body(files, data):
    request = httpx.Request("POST", "http://example.test/upload", files=files, data=data)
    return request.read()


def parse_all(body):
    parts, offset = [], 0
    while True:
        offset, part = cm.http_parse_multipart(body, offset)
        if part is None:
            assert offset == 0
            return parts
        parts.append(part)


def test_multipart_from_httpx_text_and_binary_parts():
    blob = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n\x00"
    files = {
        "photo": ("photo.bin", blob, "application/octet-stream"),
        "notes": ("notes.txt", "line 1\r\nline 2\n".encode(), "text/plain"),
        "empty": ("empty.dat", b"", "application/octet-stream"),
    }
    data = {"title": "Grüße", "count": "3"}
    parts = parse_all(multipart_body(files, data))
    by_name = {p["name"]: p for p in parts}
    assert set(by_name) == {"photo", "notes", "empty", "title", "count"}
    assert by_name["photo"] == {"name": "photo", "filename": "photo.bin", "body": blob}
    assert by_name["notes"]["body"] == b"line 1\r\nline 2\n"
    assert by_name["notes"]["filename"] == "notes.txt"
    assert by_name["empty"]["body"] == b""
    assert by_name["title"] == {"name": "title", "filename": "", "body": "Grüße".encode()}
    assert by_name["count"]["body"] == b"3"


@FAST
@given(blobs=st.lists(st.binary(max_size=2000), min_size=1, max_size=4),
       fields=st.dictionaries(names, st.text(max_size=40), max_size=3))
def test_multipart_property(blobs, fields):
    files = [("f%d" % i, ("file%d.bin" % i, blob, "application/octet-stream"))
             for i, blob in enumerate(blobs)]
    parts = parse_all(multipart_body(files, fields))
    assert [p["body"] for p in parts if p["filename"]] == blobs
    assert {p["name"]: p["body"].decode() for p in parts if not p["filename"]} == fields


def test_multipart_bad_input():
    assert cm.http_parse_multipart(b"") == (0, None)
    assert cm.http_parse_multipart(b"not multipart at all") == (0, None)
    body = multipart_body({"f": ("a.txt", b"abc", "text/plain")}, None)
    assert cm.http_parse_multipart(body, len(body) + 10) == (0, None)
    assert cm.http_parse_multipart(body, 2**64 - 1) == (0, None)
    with pytest.raises(OverflowError):
        cm.http_parse_multipart(body, -1)
    with pytest.raises(OverflowError):
        cm.http_parse_multipart(body, 2**64)
    with pytest.raises(TypeError):
        cm.http_parse_multipart(None)
    assert cm.http_parse_multipart(body[: len(body) // 2]) == (0, None)


@FAST
@given(body=st.binary(max_size=400), offset=st.integers(0, 500))
def test_multipart_on_arbitrary_bytes(body, offset):
    nxt, part = cm.http_parse_multipart(body, offset)
    assert (nxt == 0) == (part is None)
    if part is not None:
        assert offset < nxt <= len(body)


# -- match ---------------------------------------------------------------------


def test_match_examples():
    assert cm.match("/api/users/42", "/api/*/??") == (True, ["users", "4", "2"])
    assert cm.match("a/b", "a*") == (False, [])
    assert cm.match("a/b", "a#") == (True, ["/b"])
    assert cm.match("", "") == (True, [])
    assert cm.match("x", "") == (False, [])
    assert cm.match("ABC", "abc") == (False, [])
    assert cm.match("a|b", "a|b") == (True, [])
    assert cm.match("a", "a|b") == (False, [])


def test_match_gives_each_wildcard_its_own_capture():
    # Deliberate: Mongoose's own capture array merges "*" with a wildcard right after it.
    assert cm.match("ab", "**") == (True, ["", "ab"])
    assert cm.match("ab", "*?") == (True, ["a", "b"])
    assert cm.match("ab", "?*") == (True, ["a", "b"])
    assert cm.match("x", "*x*") == (True, ["", ""])


def test_match_keeps_mongoose_answers():
    assert cm.match("a/b/x", "*/x") == (True, ["a/b"])  # "*" took a "/" after a partial match
    assert cm.match("/", "#*") == (False, [])


def test_match_patterns_that_overflow_mongoose_captures():
    # Each retry past the "*" advanced Mongoose's capture pointer: a crash before.
    s = "b" * 5000 + "x"
    ok, caps = cm.match(s, "*" + "?" * 40 + "x")
    assert ok and len(caps) == 20 and caps[0] == "b" * (5000 - 40) and caps[1:] == ["b"] * 19
    assert cm.match("b" * 50 + "x", "*??x") == (True, ["b" * 48, "b", "b"])
    assert cm.match("a" * 3000, "*a*a*a?b") == (False, [])


def test_match_reports_at_most_20_captures():
    ok, caps = cm.match("x" * 30, "?" * 30)
    assert ok and caps == ["x"] * 20
    ok, caps = cm.match("a/" * 40, "*/" * 40)
    assert ok and caps == ["a"] * 20


@FAST
@given(s=st.text("ab/\n", max_size=12),
       pattern=st.lists(st.sampled_from(list("ab/?*#")), max_size=8).map("".join))
def test_match_captures_rebuild_the_string(s, pattern):
    ok, caps = cm.match(s, pattern)
    if not ok:
        assert caps == []
        return
    wild = [c for c in pattern if c in "?*#"]
    assert len(caps) == min(len(wild), 20)
    it = iter(caps)
    rebuilt = "".join(next(it) if c in "?*#" else c for c in pattern)
    assert rebuilt == s
    for c, cap in zip(wild, caps):
        assert c != "?" or len(cap) == 1


@FAST
@given(s=st.text(max_size=30), pattern=st.text(max_size=12))
def test_match_on_arbitrary_text(s, pattern):
    ok, caps = cm.match(s, pattern)
    assert isinstance(ok, bool) and all(isinstance(c, str) for c in caps)


def test_match_needs_str():
    with pytest.raises(TypeError):
        cm.match(b"a", "a")
    with pytest.raises(TypeError):
        cm.match("a", None)


# -- hashes, Base64, CRC ---------------------------------------------------------


@FAST
@given(data=data_like)
def test_hashes_match_hashlib(data):
    raw = as_bytes(data)
    assert cm.md5(data) == hashlib.md5(raw).digest()
    assert cm.sha1(data) == hashlib.sha1(raw).digest()
    assert cm.sha256(data) == hashlib.sha256(raw).digest()


@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 128, 200])
def test_hmac_key_sizes_around_the_block_size(size):
    # Mongoose's own HMAC also hashes a 64-byte key; RFC 2104 uses it as is.
    key = bytes(range(256))[:size]
    for data in (b"", b"abc", b"x" * 1000):
        assert cm.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


@FAST
@given(key=data_like, data=data_like)
def test_hmac_matches_stdlib(key, data):
    expected = hmac.new(as_bytes(key), as_bytes(data), hashlib.sha256).digest()
    assert cm.hmac_sha256(key, data) == expected


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), size=st.integers(100_000, 1 << 20))
def test_long_random_input_matches_stdlib(seed, size):
    # hypothesis draws the size; the bytes come from a seeded PRNG, as
    # hypothesis itself will not generate inputs this long
    raw = random.Random(seed).randbytes(size)
    assert cm.md5(raw) == hashlib.md5(raw).digest()
    assert cm.sha1(raw) == hashlib.sha1(raw).digest()
    assert cm.sha256(raw) == hashlib.sha256(raw).digest()
    assert cm.hmac_sha256(raw[:size // 7], raw) == \
        hmac.new(raw[:size // 7], raw, hashlib.sha256).digest()
    assert cm.crc32(raw) == zlib.crc32(raw)
    encoded = cm.base64_encode(raw)
    assert encoded == base64.b64encode(raw).decode()
    assert cm.base64_decode(encoded) == raw
    assert cm.url_encode(raw[:65536]) == lower_hex(urllib.parse.quote_from_bytes(raw[:65536], safe=""))


def test_hashes_on_long_and_empty_input():
    big = bytes(range(256)) * 8192  # 2 MiB
    assert cm.md5(big) == hashlib.md5(big).digest()
    assert cm.sha1(big) == hashlib.sha1(big).digest()
    assert cm.sha256(big) == hashlib.sha256(big).digest()
    assert cm.hmac_sha256(big, big) == hmac.new(big, big, hashlib.sha256).digest()
    assert cm.md5(b"") == hashlib.md5(b"").digest()
    assert len(cm.sha1(5)) == 20  # data-like arguments go through bytes(): an int n is n zero bytes
    assert cm.sha1(5) == hashlib.sha1(bytes(5)).digest()
    with pytest.raises(TypeError):
        cm.sha256(None)
    with pytest.raises(UnicodeEncodeError):
        cm.md5("\udcff")


@FAST
@given(data=data_like)
def test_base64_round_trip_matches_stdlib(data):
    raw = as_bytes(data)
    encoded = cm.base64_encode(data)
    assert encoded == base64.b64encode(raw).decode()
    assert cm.base64_decode(encoded) == raw


def test_base64_examples():
    assert cm.base64_encode(b"") == ""
    assert cm.base64_decode("") == b""
    assert cm.base64_decode("aGk=") == b"hi"
    assert cm.base64_decode("aGk") == b""
    assert cm.base64_decode("aGk=aGk=") == b"hihi"
    assert cm.base64_decode("aG k=") == b""
    assert cm.base64_decode("aGk=\n") == b"hi"  # the incomplete trailing group is ignored
    assert cm.base64_decode("!!!!") == b""
    big = bytes(range(256)) * 4096
    assert cm.base64_decode(cm.base64_encode(big)) == big
    with pytest.raises(TypeError):
        cm.base64_decode(b"aGk=")
    with pytest.raises(TypeError):
        cm.base64_decode(None)
    with pytest.raises(UnicodeEncodeError):
        cm.base64_decode("aGk=é")


B64_ALPHABET = string.ascii_letters + string.digits + "+/="
base64ish = st.one_of(
    st.text(st.characters(max_codepoint=127), max_size=40),
    st.text(B64_ALPHABET, max_size=40),
    st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
)


@FAST
@given(s=base64ish)
def test_base64_decode_never_fails_on_ascii_text(s):
    out = cm.base64_decode(s)
    assert isinstance(out, bytes)
    if re.fullmatch(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?", s):
        assert out == base64.b64decode(s)
    if any(c not in string.ascii_letters + string.digits + "+/=" for c in s[:4]):
        assert out == b""


@FAST
@given(data=data_like, initial=st.integers(0, 2**32 - 1))
def test_crc32_matches_zlib(data, initial):
    raw = as_bytes(data)
    assert cm.crc32(data) == zlib.crc32(raw)
    assert cm.crc32(data, initial) == zlib.crc32(raw, initial)


def test_crc32_chains_and_checks_range():
    assert cm.crc32(b"lo", cm.crc32(b"hel")) == cm.crc32(b"hello") == zlib.crc32(b"hello")
    big = b"\xa5" * (3 << 20)
    assert cm.crc32(big) == zlib.crc32(big)
    with pytest.raises(OverflowError):
        cm.crc32(b"x", -1)
    with pytest.raises(OverflowError):
        cm.crc32(b"x", 2**32)


# -- randomness, clock, log level ----------------------------------------------------


def test_random_bytes():
    assert cm.random_bytes(0) == b""
    values = {cm.random_bytes(16) for _ in range(50)}
    assert len(values) == 50 and all(len(v) == 16 for v in values)
    assert len(cm.random_bytes(100_000)) == 100_000
    with pytest.raises(OverflowError):
        cm.random_bytes(-1)
    with pytest.raises(TypeError):
        cm.random_bytes(None)


def test_random_str():
    assert cm.random_str(0) == ""
    alphabet = set(string.ascii_letters + string.digits)
    for n in (1, 2, 17, 1000):
        s = cm.random_str(n)
        assert len(s) == n and set(s) <= alphabet
    assert len(set(cm.random_str(5000))) > 50
    with pytest.raises(OverflowError):
        cm.random_str(-1)


@pytest.mark.skipif(not hasattr(time, "CLOCK_MONOTONIC_RAW"), reason="Linux clock")
def test_millis_counts_from_boot():
    before = time.clock_gettime(time.CLOCK_MONOTONIC_RAW) * 1000
    now = cm.millis()
    after = time.clock_gettime(time.CLOCK_MONOTONIC_RAW) * 1000
    assert math.floor(before) - 1 <= now <= math.ceil(after) + 1
    assert cm.millis() >= now


def test_log_level_is_stored_unchecked():
    old = cm.log_get()
    try:
        for level in (7, -5, cm.MG_LL_VERBOSE, cm.MG_LL_NONE):
            cm.log_set(level)
            assert cm.log_get() == level
        with pytest.raises(OverflowError):
            cm.log_set(2**40)
        with pytest.raises(TypeError):
            cm.log_set("3")
    finally:
        cm.log_set(old)
