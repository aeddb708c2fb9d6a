"""``cymongoose mqtt-broker``, ``wsgi`` and ``asgi``: run a server until Ctrl-C."""

import asyncio
import importlib
import logging
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._cli_util import UsageError, banner, check_url, listen_url
from .errors import LifespanError, ListenError
from .manager import Manager

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


def run_mqtt_broker(url: str, make: Any = None) -> None:
    """Run ``MqttBroker`` on ``url`` (or ``make(mgr, url)``'s broker) until SIGINT or SIGTERM.

    Raises ``UsageError`` for a bad URL or when Mongoose cannot listen.
    """
    from .broker import MqttBroker

    check_url(url, ("mqtt",))
    mgr = Manager()
    try:
        try:
            broker = (make or MqttBroker)(mgr, url)
        except ListenError as exc:
            raise UsageError(str(exc)) from None
        banner("MQTT broker", listen_url(broker.listener, "mqtt"))
        try:
            mgr.run()
        finally:
            broker.close()  # saves its persistence file
    finally:
        mgr.close()


def run_wsgi(app: Any, url: str, workers: int) -> None:
    """Serve a WSGI application on ``workers`` threads (0: inline on the
    event-loop thread) until SIGINT or SIGTERM.

    Raises ``UsageError`` for a bad URL or when Mongoose cannot listen.
    """
    from .wsgi import WSGIServer

    check_url(url, ("http",))
    server = WSGIServer(app, workers=workers)
    try:
        try:
            listener = server.listen(url)
        except ListenError as exc:
            raise UsageError(str(exc)) from None
        mode = "%d worker threads" % workers if workers else "inline"
        banner("WSGI server (%s)" % mode, listen_url(listener, "http"))
        server.run()
    finally:
        server.close()


def run_asgi(app: Any, url: str, workers: int) -> None:
    """Serve an ASGI application until SIGINT or SIGTERM.

    The application runs on one asyncio loop; ``workers`` is the size of
    that loop's default executor, which runs what the application hands to
    ``asyncio.to_thread`` or ``loop.run_in_executor(None, ...)``.  Raises
    ``UsageError`` for a bad URL or when Mongoose cannot listen; exits with
    status 3 when lifespan startup fails, as uvicorn does.
    """
    check_url(url, ("http",))
    try:
        asyncio.run(_serve_asgi(app, url, workers))
    except LifespanError as exc:
        log.error("%s", exc)
        raise SystemExit(3) from None


async def _serve_asgi(app: Any, url: str, workers: int) -> None:
    from .asgi import ASGIServer, run_until_signal

    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(workers, thread_name_prefix="cymongoose-asgi"))
    try:
        await run_until_signal(ASGIServer(app), url,
                               lambda listener: banner("ASGI server", listen_url(listener, "http")))
    except ListenError as exc:
        raise UsageError(str(exc)) from None
