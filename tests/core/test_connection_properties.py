"""The read-only properties of Connection on live connections (the closed values are
in test_core_lifecycle.py): flags, buffer lengths and sizes, addresses, repr."""

import socket

import cymongoose as cm
from support.loop import poll_until

N = 200_000  # more than one write of the send buffer


def snapshot(conn: cm.Connection) -> dict:
    return {
        "is_listening": conn.is_listening, "is_client": conn.is_client,
        "is_tls": conn.is_tls, "is_udp": conn.is_udp, "is_websocket": conn.is_websocket,
        "is_readable": conn.is_readable, "is_writable": conn.is_writable,
        "is_closing": conn.is_closing, "is_full": conn.is_full,
        "is_draining": conn.is_draining, "recv_len": conn.recv_len,
        "send_len": conn.send_len, "recv_size": conn.recv_size,
        "send_size": conn.send_size, "local_addr": conn.local_addr,
        "remote_addr": conn.remote_addr, "repr": repr(conn),
    }


FLAGS_OFF = dict.fromkeys(("is_listening", "is_client", "is_tls", "is_udp", "is_websocket",
                           "is_closing", "is_full", "is_draining"), False)


def test_live_properties_of_listener_accepted_and_outbound_connections():
    seen = {}

    def server(conn, ev, data):
        if ev == cm.MG_EV_READ and "read" not in seen:
            seen["read"] = snapshot(conn)
            seen["recv_data"] = conn.recv_data()
            conn.send(b"x" * N)
            seen["after_send"] = snapshot(conn)
            seen["send_data"] = conn.send_data(3)
        elif ev == cm.MG_EV_WRITE and "write" not in seen:
            seen["write"] = snapshot(conn)

    def client(conn, ev, data):
        if ev == cm.MG_EV_CONNECT:
            seen["connect"] = snapshot(conn)
            conn.send(b"ping")

    mgr = cm.Manager()
    lsn = mgr.listen("tcp://127.0.0.1:0", server)
    port = lsn.local_addr[1]
    try:
        assert snapshot(lsn) == dict(
            FLAGS_OFF, is_listening=True, is_readable=False, is_writable=False,
            recv_len=0, send_len=0, recv_size=0, send_size=0,
            local_addr=("127.0.0.1", port, False), remote_addr=("0.0.0.0", 0, False),
            repr="<Connection id=%d readable=False writable=False>" % lsn.id)

        # An accepted connection, fed by a raw socket.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"hello")
            poll_until(mgr, lambda: "write" in seen)
            peer = sock.getsockname()
            got = b""
            sock.settimeout(10)
            while len(got) < N:
                got += sock.recv(65536)
        read = seen["read"]
        cid = int(read["repr"].split()[1][3:])
        assert read == dict(
            FLAGS_OFF, is_readable=True, is_writable=False,
            recv_len=5, recv_size=read["recv_size"], send_len=0, send_size=0,
            local_addr=("127.0.0.1", port, False), remote_addr=("127.0.0.1", peer[1], False),
            repr="<Connection id=%d readable=True writable=False>" % cid)
        assert read["recv_size"] >= 5
        assert seen["recv_data"] == b"hello"
        after = seen["after_send"]
        assert after["send_len"] == N and after["send_size"] >= N
        assert seen["send_data"] == b"xxx"
        write = seen["write"]
        assert write["is_writable"] is True and write["is_client"] is False
        assert write["send_len"] < N  # the socket took some of it
        assert got == b"x" * N

        # An outbound connection to our own listener.
        out = mgr.connect("tcp://127.0.0.1:%d" % port, client)
        poll_until(mgr, lambda: "connect" in seen)
        connect = seen["connect"]
        assert connect["is_client"] is True and connect["is_listening"] is False
        assert connect["is_writable"] is True  # the connect completed: socket writable
        assert connect["remote_addr"] == ("127.0.0.1", port, False)
        assert connect["local_addr"][0] == "127.0.0.1" and connect["local_addr"][1] > 0
        assert connect["is_closing"] is False and connect["send_len"] == 0
        assert out.is_client and out.send_len in (0, 4)
    finally:
        mgr.close()


def test_event_data_follows_spec_2_1():
    """What ``data`` is for each core event: None, a str for ERROR, views for HTTP."""
    kinds = {}

    def handler(conn, ev, data):
        kinds.setdefault(ev, set()).add(type(data).__name__)  # both ends
        if conn.is_client:
            return
        if ev == cm.MG_EV_HTTP_MSG and conn.userdata is None:
            conn.userdata = "answered"
            conn.reply(200, "ok")
        elif ev == cm.MG_EV_WRITE and conn.userdata == "answered":
            conn.userdata = "failing"
            conn.error("bye")

    mgr = cm.Manager(handler)
    port = mgr.listen("http://127.0.0.1:0").local_addr[1]
    try:
        out = mgr.connect("http://127.0.0.1:%d" % port)
        poll_until(mgr, lambda: cm.MG_EV_CONNECT in kinds)
        out.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        poll_until(mgr, lambda: cm.MG_EV_ERROR in kinds and len(mgr.connections) == 1)
    finally:
        mgr.close()
    for ev in (cm.MG_EV_OPEN, cm.MG_EV_POLL, cm.MG_EV_RESOLVE, cm.MG_EV_CONNECT,
               cm.MG_EV_ACCEPT, cm.MG_EV_READ, cm.MG_EV_WRITE, cm.MG_EV_CLOSE):
        assert kinds.get(ev) == {"NoneType"}, (cm.event_name(ev), kinds.get(ev))
    assert kinds[cm.MG_EV_ERROR] == {"str"}
    assert kinds[cm.MG_EV_HTTP_HDRS] == kinds[cm.MG_EV_HTTP_MSG] == {"HttpMessage"}
