"""HttpMessage.headers(): wire order, duplicates kept, at most 30 entries."""

import pytest

import cymongoose as cm
from support.http_raw import parse_response, raw_request


@pytest.mark.parametrize("count", [30, 40])
def test_headers_stop_at_thirty(server_factory, count):
    seen = {}

    def handler(conn, ev, hm):
        if ev == cm.MG_EV_HTTP_MSG:
            seen["headers"] = hm.headers()
            seen["last"] = hm.header("H%d" % (count - 1))
            conn.reply(200, "ok")

    _, port = server_factory(handler)
    lines = [b"Connection: close"] + [b"H%d: v%d" % (i, i) for i in range(1, count)]
    req = b"GET / HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
    assert parse_response(raw_request(port, req))[2] == b"ok"
    expected = [("Connection", "close")] + [("H%d" % i, "v%d" % i) for i in range(1, count)]
    assert seen["headers"] == expected[:30]
    # Mongoose parses the first 30 and ignores the rest.
    assert seen["last"] == (None if count > 30 else "v29")
