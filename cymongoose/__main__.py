"""Command line: ``python -m cymongoose SUBCOMMAND`` (also the ``cymongoose`` script).

Subcommands:
  serve [DIR]             static file server (listing, Range, MIME types)
  mqtt-broker             a small MQTT broker
  wsgi MODULE:APP         serve a WSGI application
  asgi MODULE:APP         serve an ASGI application

Ctrl-C stops each cleanly.  Bad arguments print a short usage error and
exit with status 2.
"""

import argparse
import importlib
import logging
import os
import sys
from typing import Any, Callable, List, Optional

from . import constants as C
from .connection import Connection
from .manager import Manager
from .messages import HttpMessage

access_log = logging.getLogger("cymongoose.access")
DEFAULT_URL = "http://127.0.0.1:8000"


def _print_banner(what: str, listener: Connection, scheme: str = "http") -> None:
    host, port, is_ipv6 = listener.local_addr or ("?", 0, False)
    shown = "[%s]" % host if is_ipv6 else host
    print("cymongoose %s on %s://%s:%d/" % (what, scheme, shown, port))
    print("  Press Ctrl+C to stop", flush=True)


def _load_app(spec: str) -> Any:
    """Import ``MODULE:ATTR`` (the current directory is importable, as with gunicorn)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError("expected MODULE:APP, got %r" % spec)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _tls_handler(args: argparse.Namespace) -> Optional[Callable[[Connection], None]]:
    """For https:// and wss:// listeners: a function that starts TLS on an accepted connection."""
    if not (args.cert and args.key):
        return None
    from .tls import TlsOpts

    opts = TlsOpts(cert=args.cert, key=args.key)
    return lambda conn: conn.tls_init(opts)


def cmd_serve(args: argparse.Namespace) -> int:
    root = os.path.abspath(args.directory)
    if not os.path.isdir(root):
        print("cymongoose serve: not a directory: %s" % root, file=sys.stderr)
        return 2
    start_tls = _tls_handler(args)
    ws_path = args.ws_echo

    def handler(conn: Connection, ev: int, data: Any) -> None:
        if ev == C.MG_EV_ACCEPT and start_tls is not None:
            start_tls(conn)
        elif ev == C.MG_EV_HTTP_MSG:
            msg: HttpMessage = data
            if ws_path and msg.uri == ws_path:
                conn.ws_upgrade(msg)
                return
            access_log.info('%s "%s %s%s %s"', (conn.remote_addr or ("-",))[0], msg.method,
                            msg.uri, "?" + msg.query if msg.query else "", msg.proto)
            conn.serve_dir(msg, root)
        elif ev == C.MG_EV_WS_MSG:
            conn.ws_send(data.data, data.flags & 0x0F)

    wanted = [C.MG_EV_HTTP_MSG, C.MG_EV_WS_MSG]
    if start_tls is not None:
        wanted.append(C.MG_EV_ACCEPT)
    from ._dispatch import handles

    mgr = Manager(handles(*wanted)(handler))
    listener = mgr.listen(args.listen)
    _print_banner("serving %s" % root, listener, "https" if start_tls else "http")
    mgr.run()
    return 0


def cmd_mqtt_broker(args: argparse.Namespace) -> int:
    from .broker import MqttBroker

    mgr = Manager()
    broker = MqttBroker(mgr, args.listen)
    print("cymongoose MQTT broker on mqtt://127.0.0.1:%d/" % broker.port)
    print("  Press Ctrl+C to stop", flush=True)
    mgr.run()
    return 0


def cmd_wsgi(args: argparse.Namespace) -> int:
    from . import wsgi

    wsgi.serve(_load_app(args.app), args.listen, workers=args.workers)
    return 0


def cmd_asgi(args: argparse.Namespace) -> int:
    from . import asgi

    asgi.serve(_load_app(args.app), args.listen)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cymongoose", description="Mongoose networking from the command line.")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="Python logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="serve a directory over HTTP(S)",
                           description="Static file server: directory listing, Range, MIME types.")
    serve.add_argument("directory", nargs="?", default=".", metavar="DIR")
    serve.add_argument("--listen", default=DEFAULT_URL, metavar="URL",
                       help="URL to listen on (default %s; https:// with --cert/--key; "
                            "IPv6 as http://[::1]:8000)" % DEFAULT_URL)
    serve.add_argument("--cert", help="PEM certificate (file path) for https://")
    serve.add_argument("--key", help="PEM private key (file path) for https://")
    serve.add_argument("--ws-echo", metavar="PATH", help="also answer WebSocket echo on PATH")
    serve.set_defaults(func=cmd_serve)

    broker = sub.add_parser("mqtt-broker", help="run a small MQTT broker",
                            description="A small MQTT broker: QoS 0/1, wildcards, retained messages.")
    broker.add_argument("--listen", default="mqtt://127.0.0.1:1883", metavar="URL")
    broker.set_defaults(func=cmd_mqtt_broker)

    for name, func, what in (("wsgi", cmd_wsgi, "WSGI"), ("asgi", cmd_asgi, "ASGI")):
        p = sub.add_parser(name, help="serve a %s application" % what,
                           description="Serve a %s application, like gunicorn or uvicorn would." % what)
        p.add_argument("app", metavar="MODULE:APP", help="e.g. myproject.web:app")
        p.add_argument("--listen", default=DEFAULT_URL, metavar="URL")
        p.add_argument("--workers", type=int, default=4, help="worker threads (default 4)")
        p.set_defaults(func=func)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    try:
        return int(args.func(args))
    except (RuntimeError, ValueError, ImportError, AttributeError) as exc:
        parser.exit(2, "%s: error: %s\n" % (parser.prog, exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
