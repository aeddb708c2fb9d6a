"""``cymongoose serve``: a static file server with an access log.

``Connection.serve_dir`` does the serving (directory listing, ``index.html``,
ranges, conditional requests, MIME types; see docs/static-files.md).  Hidden
files are not served unless ``--dotfiles``.  Each request is logged
once on the ``cymongoose.access`` logger, at INFO level, as
``CLIENT - - "METHOD PATH PROTO" STATUS BYTES``: the status and byte count
are read from the response head Mongoose has just queued.  ``BYTES`` is the
body length (``-`` when there is none, 0 for ``HEAD``).
"""

import functools
import logging
import os
import re
import socket
import time
from typing import Any, Dict, List, Optional

from . import constants as C
from ._cli_util import UsageError, banner, check_url, listen_url, short_ip
from ._cli_workers import check_front
from ._cli_workers import run as run_processes
from ._graceful import in_flight
from ._signals import serve_until_signal
from .forwarded import Front, front_of
from .supervisor import notify_ready
from ._dispatch import handles
from .connection import Connection
from .manager import Manager
from .messages import HttpMessage

access_log = logging.getLogger("cymongoose.access")

_STATUS = re.compile(rb"^HTTP/\d\.\d (\d{3})")
_LENGTH = re.compile(rb"\r\nContent-Length: *(\d+)", re.IGNORECASE)
_HEAD_MAX = 16384  # response heads longer than this are logged with status "-"
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


def _quote(text: str) -> str:
    """``text`` made safe inside a log line's double quotes."""
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return _UNSAFE.sub(lambda m: "\\x%02x" % ord(m.group()), text)


class StaticServer:
    """The event handler of ``serve``: files from ``root``, WebSocket echo on ``ws_path``.

    Args:
        root: directory served.
        ws_path: URI answered as a WebSocket echo endpoint, or ``None``.
        tls: ``TlsOpts`` started on each accepted connection, or ``None``.
        cache_control, follow_symlinks, dotfiles: as for ``Connection.serve_dir``.
    """

    def __init__(self, root: str, ws_path: Optional[str], tls: Any,
                 front: Optional[Front] = None, cache_control: Optional[str] = None,
                 follow_symlinks: bool = True, dotfiles: bool = False) -> None:
        self.root = root
        self.ws_path = ws_path
        self.tls = tls
        self.front = front
        self.cache_control = cache_control
        self.follow_symlinks = follow_symlinks
        self.dotfiles = dotfiles
        #: Set when the server stops: each response says ``Connection: close``
        #: and its connection closes once it is sent.
        self.draining = False

    def __call__(self, conn: Connection, ev: int, data: Any) -> None:
        if ev == C.MG_EV_HTTP_MSG:
            self._request(conn, data)
        elif ev == C.MG_EV_WS_MSG:
            conn.ws_send(data.data, data.flags & 0x0F)
        elif ev == C.MG_EV_ACCEPT and self.tls is not None:
            conn.tls_init(self.tls)

    def _request(self, conn: Connection, msg: HttpMessage) -> None:
        before = conn.send_len
        method = msg.method
        close = "Connection: close\r\n" if self.draining else ""
        if self.ws_path is not None and msg.uri == self.ws_path and not self.draining:
            # Without a WebSocket handshake Mongoose answers an error itself.
            conn.ws_upgrade(msg)
        elif method not in ("GET", "HEAD"):
            headers = {"Allow": "GET, HEAD"}
            if close:
                headers["Connection"] = "close"
            conn.reply(405, b"Method Not Allowed\n", headers)
        else:
            conn.serve_dir(msg, self.root, extra_headers=close,
                           cache_control=self.cache_control,
                           follow_symlinks=self.follow_symlinks, dotfiles=self.dotfiles)
        if close:
            conn.drain()
        if access_log.isEnabledFor(logging.INFO):
            self._log(conn, msg, before)

    def _log(self, conn: Connection, msg: HttpMessage, before: int) -> None:
        head = conn.send_data(before + _HEAD_MAX)[before:]
        status = _STATUS.match(head)
        end = head.find(b"\r\n\r\n")
        length = _LENGTH.search(head, 0, end) if end > 0 else None
        nbytes = "-"
        if msg.method == "HEAD":
            nbytes = "0"
        elif length is not None:
            nbytes = length.group(1).decode()
        remote = conn.remote_addr
        client = short_ip(remote[0]) if remote else "-"
        if self.front is not None and remote:
            found = self.front.origin(remote[0], msg.header("Forwarded"),
                                      msg.header("X-Forwarded-For"),
                                      msg.header("X-Forwarded-Proto"),
                                      msg.header("X-Forwarded-Host"))
            if found is not None:
                client = found.ip
        path = msg.uri + ("?" + msg.query if msg.query else "")
        access_log.info('%s - - "%s %s %s" %s %s', _quote(client),
                        _quote(msg.method), _quote(path), _quote(msg.proto),
                        status.group(1).decode() if status else "-", nbytes)


def file_options(args: Any) -> Dict[str, Any]:
    """The ``run`` keywords of the file-serving command line options."""
    return {"cache_control": args.cache_control,
            "follow_symlinks": not args.no_follow_symlinks, "dotfiles": args.dotfiles}


def run(directory: str, url: str, tls: Any, ws_echo: Optional[str], opts: Any,
        cache_control: Optional[str] = None, follow_symlinks: bool = True,
        dotfiles: bool = False) -> None:
    """Serve ``directory`` on ``url`` until SIGINT or SIGTERM, in this
    process or in ``opts.workers`` processes (``_cli_workers.run``); ``tls``
    is a ``TlsOpts`` for ``https://`` (see ``_cli_tls.tls_options``) or
    ``None``; the file options are as for ``Connection.serve_dir``.

    Raises ``UsageError`` for a bad URL, a missing directory, or when
    Mongoose cannot listen on ``url``.
    """
    check_url(url, ("http", "https"))
    root = os.path.abspath(directory)
    if not os.path.isdir(root):
        raise UsageError("not a directory: %s" % directory)
    https = tls is not None
    if ws_echo is not None and not ws_echo.startswith("/"):
        raise UsageError("--ws-echo PATH must start with '/'")
    check_front(opts)
    front = front_of(opts.forwarded_allow_ips, "")
    events = [C.MG_EV_HTTP_MSG, C.MG_EV_WS_MSG] + ([C.MG_EV_ACCEPT] if tls else [])

    def serve_one(sock: Optional[socket.socket], announce: bool) -> None:
        server = StaticServer(root, ws_echo, tls, front, cache_control, follow_symlinks,
                              dotfiles)
        mgr = Manager(handles(*events)(server))
        try:
            try:
                listener = mgr.listen(url) if sock is None else \
                    mgr.listen_fd(sock.fileno(), http=True, scheme="https" if https else "http")
            except RuntimeError as exc:
                raise UsageError(str(exc)) from None
            if announce:
                banner("serving %s" % root, listen_url(listener, "https" if https else "http"))
            notify_ready()
            serve_until_signal(functools.partial(mgr.poll, 100),
                               finish=lambda stop: _drain(mgr, server, stop.received,
                                                          opts.graceful_timeout))
        finally:
            mgr.close()

    run_processes(serve_one, url, opts.workers, opts.fd, opts.graceful_timeout,
                  "serving %s" % root)


#: How long an idle keep-alive connection may still send one request after
#: the stop (answered with ``Connection: close``), so that a client whose
#: next request is already on its way sees no reset.
_LINGER = 1.0


def _drain(mgr: Manager, server: StaticServer, received: List[int], grace: float) -> None:
    """Stop accepting, then answer what arrives with ``Connection: close``
    until every connection has closed (bounded by ``grace`` seconds, or a
    second signal)."""
    server.draining = True
    for conn in mgr.connections:
        if conn.is_listening:
            conn.close()
    start = time.monotonic()
    while mgr.connections and len(received) < 2 and time.monotonic() - start < grace:
        if time.monotonic() - start > _LINGER:
            for conn in mgr.connections:
                if not in_flight(conn):
                    conn.close()
        mgr.poll(20)
