"""``cymongoose mqtt-broker``, ``wsgi`` and ``asgi``: run a server until Ctrl-C."""

import argparse
import asyncio
import importlib
import logging
import os
import re
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from ._cli_util import UsageError, banner, check_url, listen_url
from ._cli_workers import check_front
from ._cli_workers import run as run_processes
from .connection import Connection
from .errors import LifespanError, ListenError
from .manager import Manager
from .supervisor import STARTUP_FAILED, notify_ready

log = logging.getLogger("cymongoose.cli")

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_APP_SPEC = re.compile(r"(%s):(%s)\Z" % (_DOTTED, _DOTTED))


def load_app(spec: str, app_dir: str) -> Any:
    """Import ``MODULE:APP`` the way gunicorn and uvicorn do.

    ``app_dir`` (the current directory by default) goes first on
    ``sys.path``.  ``APP`` may be dotted (``module:obj.app``).  Raises
    ``UsageError`` when ``spec`` is malformed, ``app_dir`` is not a
    directory, the module cannot be found (``ImportError``), the attribute
    is missing or is not callable.  Other exceptions raised while importing
    the module are the application's own and propagate.
    """
    found = _APP_SPEC.match(spec)
    if found is None:
        raise UsageError("expected MODULE:APP (e.g. myproject.web:app), got %r" % spec)
    module_name, attr = found.group(1), found.group(2)
    directory = os.path.abspath(app_dir)
    if not os.path.isdir(directory):
        raise UsageError("--app-dir: not a directory: %s" % app_dir)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError("cannot import module %r: %s" % (module_name, exc)) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError("module %r has no attribute %r" % (module_name, attr)) from None
    if not callable(obj):
        raise UsageError("%s is not callable" % spec)
    return obj


def run_mqtt_broker(url: str, make: Any = None, tls: Any = None) -> None:
    """Run ``MqttBroker`` on ``url`` (or ``make(mgr, url)``'s broker) until
    SIGINT or SIGTERM (MQTTS with a ``TlsOpts`` as ``tls``).

    Raises ``UsageError`` for a bad URL or when Mongoose cannot listen.
    """
    from .broker import MqttBroker

    check_url(url, ("mqtts",) if tls else ("mqtt",))
    mgr = Manager()
    try:
        try:
            broker = make(mgr, url) if make is not None else MqttBroker(mgr, url, tls=tls)
        except ListenError as exc:
            raise UsageError(str(exc)) from None
        banner("MQTT broker", listen_url(broker.listener, "mqtts" if tls else "mqtt"))
        try:
            mgr.run()
        finally:
            broker.close()  # saves its persistence file
    finally:
        mgr.close()


def run_wsgi(app: Any, url: str, opts: argparse.Namespace) -> None:
    """Serve a WSGI application on ``opts.threads`` threads (none with
    ``opts.inline``: the application then runs on the event-loop thread)
    until SIGINT or SIGTERM, in this process or in ``opts.workers``
    processes (``_cli_workers.run``).

    Raises ``UsageError`` for a bad URL or when Mongoose cannot listen.
    """
    from .wsgi import WSGIServer

    tls = getattr(opts, "tls", None)
    scheme = "https" if tls else "http"
    check_url(url, (scheme,))
    check_front(opts)
    threads = 0 if getattr(opts, "inline", False) else opts.threads

    def serve_one(sock: Optional[socket.socket], announce: bool) -> None:
        server = WSGIServer(app, workers=threads, graceful_timeout=opts.graceful_timeout,
                            forwarded_allow_ips=opts.forwarded_allow_ips,
                            root_path=opts.root_path)
        try:
            try:
                listener = server.listen(url, tls, fd=sock.fileno() if sock is not None else None)
            except ListenError as exc:
                raise UsageError(str(exc)) from None
            if announce:
                mode = "%d worker threads" % threads if threads else "inline"
                banner("WSGI server (%s)" % mode, listen_url(listener, scheme))
            notify_ready()
            server.run()
        finally:
            server.close()

    run_processes(serve_one, url, opts.workers, opts.fd, opts.graceful_timeout, "WSGI server")


def run_asgi(app: Any, url: str, opts: argparse.Namespace) -> None:
    """Serve an ASGI application until SIGINT or SIGTERM, in this process
    or in ``opts.workers`` processes (``_cli_workers.run``).

    The application runs on one asyncio loop; ``opts.threads`` is the size
    of that loop's default executor, which runs what the application hands
    to ``asyncio.to_thread`` or ``loop.run_in_executor(None, ...)``.
    Raises ``UsageError`` for a bad URL or when Mongoose cannot listen;
    exits with status 3 when lifespan startup fails, as uvicorn does.
    HTTPS with a ``TlsOpts`` as ``opts.tls``.
    """
    check_url(url, ("https",) if getattr(opts, "tls", None) else ("http",))
    check_front(opts)

    kind = getattr(opts, "loop", "auto")
    new_loop = event_loop_factory(kind)

    def serve_one(sock: Optional[socket.socket], announce: bool) -> None:
        try:
            run_on_new_loop(new_loop, _serve_asgi(app, url, opts, sock, announce))
        except LifespanError as exc:
            log.error("%s", exc)
            raise SystemExit(STARTUP_FAILED) from None

    run_processes(serve_one, url, opts.workers, opts.fd, opts.graceful_timeout, "ASGI server")


def event_loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the ASGI server's loop: uvloop's for ``"uvloop"`` (and for
    ``"auto"`` when uvloop is installed), else asyncio's.  Raises
    ``UsageError`` for ``"uvloop"`` without uvloop installed."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            if kind == "uvloop":
                raise UsageError("--loop uvloop: uvloop is not installed "
                                 "(pip install uvloop)") from None
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def run_on_new_loop(new_loop: Callable[[], asyncio.AbstractEventLoop], main: Any) -> None:
    """``asyncio.run(main)`` on a loop from ``new_loop`` (asyncio.Runner's
    ``loop_factory`` is Python 3.11 and later)."""
    loop = new_loop()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main)
    finally:
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _serve_asgi(app: Any, url: str, opts: argparse.Namespace,
                      sock: Optional[socket.socket], announce: bool) -> None:
    from .asgi import ASGIServer, run_until_signal

    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(opts.threads,
                                                 thread_name_prefix="cymongoose-asgi"))

    def started(listener: Connection) -> None:
        if announce:
            scheme = "https" if getattr(opts, "tls", None) else "http"
            banner("ASGI server", listen_url(listener, scheme))
        notify_ready()

    server = ASGIServer(app, graceful_timeout=opts.graceful_timeout,
                        forwarded_allow_ips=opts.forwarded_allow_ips, root_path=opts.root_path)
    try:
        await run_until_signal(server, url, started, getattr(opts, "tls", None),
                               sock.fileno() if sock is not None else None)
    except ListenError as exc:
        raise UsageError(str(exc)) from None
