"""The process options of ``serve``, ``wsgi`` and ``asgi``: ``--workers``,
``--fd``, systemd socket activation, proxy headers and the mount prefix."""

import argparse
import os
import socket
from typing import Any, Callable, List, Optional
from urllib.parse import urlsplit

from ._cli_util import UsageError, banner, positive, short_ip
from .forwarded import DEFAULT_ALLOW, Front
from .supervisor import Supervisor, bind, inherited_sockets

#: Serves on one adopted socket (or binds the URL itself when given None)
#: until SIGINT/SIGTERM; ``announce`` is True when it should print the banner.
ServeOne = Callable[[Optional[socket.socket], bool], None]


def add_process_options(p: argparse.ArgumentParser, mount: bool = True) -> None:
    """Add ``--workers``, ``--fd``, ``--graceful-timeout``,
    ``--forwarded-allow-ips`` and, with ``mount``, ``--root-path`` to ``p``."""
    p.add_argument("--workers", type=positive, default=None, metavar="N",
                   help="worker processes behind a master that binds once, replaces "
                        "dead workers, stops them on SIGTERM/SIGINT, replaces them one by "
                        "one on SIGHUP and adds/removes one on SIGTTIN/SIGTTOU (default: "
                        "serve in this process)")
    p.add_argument("--fd", type=_descriptor, default=None, metavar="FD",
                   help="serve on this inherited listening socket instead of binding "
                        "--listen (systemd socket activation, LISTEN_FDS, is used "
                        "without it)")
    p.add_argument("--graceful-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long a stopping worker may finish requests (default 30)")
    p.add_argument("--forwarded-allow-ips", metavar="IPS",
                   default=os.environ.get("FORWARDED_ALLOW_IPS", DEFAULT_ALLOW),
                   help="comma-separated addresses/networks whose Forwarded and "
                        "X-Forwarded-For/-Proto/-Host headers are believed (client "
                        "address, scheme, host; the access log); '*' for all, '' for "
                        "none (default $FORWARDED_ALLOW_IPS or %s)" % DEFAULT_ALLOW)
    if mount:
        p.add_argument("--root-path", default="", metavar="PATH",
                       help="prefix the application is mounted under behind a proxy "
                            "(SCRIPT_NAME / ASGI root_path), e.g. /api")


def check_front(args: argparse.Namespace) -> None:
    """``UsageError`` for a bad ``--forwarded-allow-ips`` or ``--root-path``."""
    try:
        Front(args.forwarded_allow_ips, getattr(args, "root_path", ""))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _descriptor(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a descriptor number: %r" % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def socket_url(sock: socket.socket, scheme: str) -> str:
    """``scheme://host:port`` of a listening socket."""
    addr = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return "%s://[%s]:%d" % (scheme, short_ip(addr[0]), addr[1])
    return "%s://%s:%d" % (scheme, addr[0], addr[1])


def run(serve_one: ServeOne, url: str, workers: Optional[int], fd: Optional[int],
        graceful_timeout: float, what: str) -> None:
    """Serve in this process, or under a ``Supervisor`` with ``workers``.

    Sockets come from ``--fd`` or systemd first; with ``workers`` and
    neither, the master binds ``url``.  Raises ``UsageError`` for a bad
    descriptor or an address that cannot be bound; ``SystemExit`` with the
    supervisor's status when it is not 0.
    """
    try:
        socks = inherited_sockets([fd] if fd is not None else [])
    except ValueError as exc:
        raise UsageError("--fd: %s" % exc) from None
    if len(socks) > 1:
        raise UsageError("%d inherited sockets: one is served" % len(socks))
    if workers is None:
        serve_one(socks[0] if socks else None, True)
        return
    if not socks:
        parts = urlsplit(url)
        try:
            socks = [bind(parts.hostname or "127.0.0.1", parts.port or 0)]
        except OSError as exc:
            raise UsageError("cannot listen on %s: %s" % (url, exc.strerror or exc)) from None
    scheme = urlsplit(url).scheme

    def started() -> None:
        banner("%s (%d workers, master pid %d)" % (what, workers, os.getpid()),
               socket_url(socks[0], scheme))

    def worker(given: List[socket.socket]) -> Any:
        serve_one(given[0], False)

    status = Supervisor(worker, socks, workers, graceful_timeout=graceful_timeout).run(started)
    for sock in socks:
        sock.close()
    if status:
        raise SystemExit(status)
