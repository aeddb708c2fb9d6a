"""``cymongoose serve``: a static file server with an access log.

``Connection.serve_dir`` does the serving (directory listing, ``index.html``,
ranges, conditional requests, MIME types; see docs/static-files.md).  Hidden
files are not served unless ``--dotfiles``.  Each request is logged
once on the ``cymongoose.access`` logger, at INFO level, as
``CLIENT - - "METHOD PATH PROTO" STATUS BYTES``: the status and byte count
are read from the response head Mongoose has just queued.  ``BYTES`` is the
body length (``-`` when there is none, 0 for ``HEAD``).
"""

import logging
import os
import re
from typing import Any, Dict, Optional

from . import constants as C
from ._cli_util import UsageError, banner, check_url, listen_url, short_ip
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
                 cache_control: Optional[str] = None, follow_symlinks: bool = True,
                 dotfiles: bool = False) -> None:
        self.root = root
        self.ws_path = ws_path
        self.tls = tls
        self.cache_control = cache_control
        self.follow_symlinks = follow_symlinks
        self.dotfiles = dotfiles

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
        if self.ws_path is not None and msg.uri == self.ws_path:
            # Without a WebSocket handshake Mongoose answers an error itself.
            conn.ws_upgrade(msg)
        elif method not in ("GET", "HEAD"):
            conn.reply(405, b"Method Not Allowed\n", {"Allow": "GET, HEAD"})
        else:
            conn.serve_dir(msg, self.root, cache_control=self.cache_control,
                           follow_symlinks=self.follow_symlinks, dotfiles=self.dotfiles)
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
        path = msg.uri + ("?" + msg.query if msg.query else "")
        access_log.info('%s - - "%s %s %s" %s %s', short_ip(remote[0]) if remote else "-",
                        _quote(msg.method), _quote(path), _quote(msg.proto),
                        status.group(1).decode() if status else "-", nbytes)


def _read_pem(path: str, option: str) -> bytes:
    """The content of a PEM file named on the command line."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError("%s: cannot read %s: %s" % (option, path, exc.strerror)) from None
    if b"-----BEGIN" not in data:
        raise UsageError("%s: not a PEM file: %s" % (option, path))
    return data


def file_options(args: Any) -> Dict[str, Any]:
    """The ``run`` keywords of the file-serving command line options."""
    return {"cache_control": args.cache_control,
            "follow_symlinks": not args.no_follow_symlinks, "dotfiles": args.dotfiles}


def run(directory: str, url: str, cert: Optional[str], key: Optional[str],
        ws_echo: Optional[str], cache_control: Optional[str] = None,
        follow_symlinks: bool = True, dotfiles: bool = False) -> None:
    """Serve ``directory`` on ``url`` until SIGINT or SIGTERM.

    Raises ``UsageError`` for a bad URL, a missing directory, a ``--cert``
    without ``--key`` (or the reverse), TLS options with an ``http://`` URL
    (or none with ``https://``), unreadable key files, or when Mongoose
    cannot listen on ``url``.
    """
    check_url(url, ("http", "https"))
    root = os.path.abspath(directory)
    if not os.path.isdir(root):
        raise UsageError("not a directory: %s" % directory)
    if (cert is None) != (key is None):
        raise UsageError("--cert and --key go together")
    https = url.startswith("https://")
    if https and cert is None:
        raise UsageError("an https:// URL needs --cert and --key")
    if cert is not None and not https:
        raise UsageError("--cert/--key need an https:// URL")
    if ws_echo is not None and not ws_echo.startswith("/"):
        raise UsageError("--ws-echo PATH must start with '/'")
    tls = None
    if cert is not None and key is not None:
        from .tls import TlsOpts

        tls = TlsOpts(cert=_read_pem(cert, "--cert"), key=_read_pem(key, "--key"))
        try:
            tls._prepared()  # the checks tls_init makes, before any client comes
        except ValueError as exc:
            raise UsageError("--cert/--key: %s" % exc) from None
    events = [C.MG_EV_HTTP_MSG, C.MG_EV_WS_MSG] + ([C.MG_EV_ACCEPT] if tls else [])
    mgr = Manager(handles(*events)(StaticServer(root, ws_echo, tls, cache_control,
                                                           follow_symlinks, dotfiles)))
    try:
        try:
            listener = mgr.listen(url)
        except RuntimeError as exc:
            raise UsageError(str(exc)) from None
        banner("serving %s" % root, listen_url(listener, "https" if https else "http"))
        mgr.run()
    finally:
        mgr.close()
