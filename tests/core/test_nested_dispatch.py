"""Spec 3.11: events fired synchronously inside a handler (re-entrancy) get their
own view objects; invalidating an inner view leaves the outer one valid."""

import cymongoose as cm
from support.http_raw import get_close
from support.loop import InThread, poll_until
from support.ws import RawClient


def test_inner_views_are_separate_and_die_alone():
    seen = {}

    def handler(conn, ev, data):
        if ev == cm.MG_EV_HTTP_HDRS:
            seen.setdefault("hdrs", data)
        elif ev == cm.MG_EV_HTTP_MSG:
            seen["msg"] = data
            if data.header("Upgrade"):
                conn.ws_upgrade(data)  # WS_OPEN is dispatched inside this call
            else:
                conn.error("inner %d")  # so is MG_EV_ERROR
            seen["outer_after"] = (bool(data), data.uri, data.header("X-Probe"))
        elif ev == cm.MG_EV_WS_OPEN:
            seen["inner"] = data
            seen["inner_alive"] = (bool(data), data.uri)
        elif ev == cm.MG_EV_ERROR:
            seen["error"] = data

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    try:
        ws = InThread(lambda: RawClient(port))
        poll_until(mgr, lambda: ws.done and "outer_after" in seen)
        ws.result().close()
        outer, inner = seen["msg"], seen["inner"]
        assert inner is not outer and seen["hdrs"] is not outer  # a fresh view per event
        assert seen["inner_alive"] == (True, "/")
        assert seen["outer_after"] == (True, "/", None)  # the inner view died alone
        assert not outer and not inner and not seen["hdrs"]  # all dead after their handlers

        seen.clear()
        job = InThread(lambda: get_close(port, "/err", "X-Probe: p\r\n"))
        poll_until(mgr, lambda: job.done and "outer_after" in seen)
        assert seen["error"] == "inner %d"
        assert seen["outer_after"] == (True, "/err", "p")
        assert job.result() == b""  # error() closed the connection without an answer
    finally:
        mgr.close()
