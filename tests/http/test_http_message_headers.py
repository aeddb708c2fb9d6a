"""HttpMessage.headers(): wire order, duplicates kept, up to 100 header lines;
a request with more is answered 431 and never reaches the handler."""

import pytest

import cymongoose as cm
from support.http_raw import parse_response, raw_request

MAX_HEADERS = 100  # MG_MAX_HTTP_HEADERS in build_ffi.py


@pytest.mark.parametrize("count", [30, 40, MAX_HEADERS])
def test_every_header_up_to_the_cap_is_seen(server_factory, count):
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
    assert seen["headers"] == expected
    assert seen["last"] == "v%d" % (count - 1)


def test_one_header_line_over_the_cap_gets_431_unseen(server_factory):
    events = []

    def handler(conn, ev, data):
        if ev in (cm.MG_EV_HTTP_HDRS, cm.MG_EV_HTTP_MSG, cm.MG_EV_ERROR):
            events.append(ev)
        if ev == cm.MG_EV_HTTP_MSG:
            conn.reply(200, "ok")

    _, port = server_factory(handler)
    lines = [b"H%d: v" % i for i in range(MAX_HEADERS + 1)]
    req = b"GET / HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
    status, headers, _ = parse_response(raw_request(port, req))
    assert status == 431
    assert events == [cm.MG_EV_ERROR]
