"""Command line: ``python -m cymongoose COMMAND`` (also the ``cymongoose`` script).

Commands:
  serve [DIR]             static file server (listing, ranges, caching, MIME types),
                          HTTPS with --cert/--key, optional WebSocket echo
  mqtt-broker             a small MQTT broker
  wsgi MODULE:APP         serve a WSGI application (like gunicorn)
  asgi MODULE:APP         serve an ASGI application (like uvicorn)

Each takes --cert FILE --key FILE [--ca FILE] to listen with TLS (https://,
or mqtts:// for the broker); --ca requires client certificates.

Each prints ``cymongoose ... on URL/`` with the real port once it listens
(so ``--listen http://127.0.0.1:0`` picks a free one).  Ctrl-C (SIGINT) or
SIGTERM stops it cleanly with exit status 0.  Bad arguments (including a
URL that cannot be listened on) print a short usage error on stderr and
exit with status 2; ``asgi`` exits with 3 when the application's lifespan
startup fails.  Logging (the access log of ``serve`` included) goes to
stderr from a thread of its own, so a stderr nobody reads never stops the
server (lines that do not fit its queue are dropped and counted).  On
PyPy, a command started without ``PYPY_GC_NURSERY`` whose nursery came out
other than 16 MB starts itself again with 16 MB (``_cli_pypy.py``).
"""

import argparse
import logging
import sys
from typing import List, Optional

from . import _log_writer
from ._cli_tls import add_tls_options, tls_options
from ._cli_util import UsageError, positive

HTTP_URL = "http://127.0.0.1:8000"
MQTT_URL = "mqtt://127.0.0.1:1883"


def _serve_file_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--no-follow-symlinks", action="store_true",
                       help="answer 404 for a symlink that leads out of DIR")
    serve.add_argument("--dotfiles", action="store_true",
                       help="serve hidden files and directories (names starting with '.')")
    serve.add_argument("--cache-control", metavar="VALUE",
                       help="Cache-Control header of every file (e.g. 'max-age=3600')")


def _serve(args: argparse.Namespace) -> None:
    from . import _cli_serve

    _cli_serve.run(args.directory, args.listen, tls_options(args.listen, args, "https"),
                   args.ws_echo, args, **_cli_serve.file_options(args))


def _mqtt_broker(args: argparse.Namespace) -> None:
    from . import _cli_servers

    from . import _cli_mqtt

    tls = tls_options(args.listen, args, "mqtts")
    _cli_servers.run_mqtt_broker(args.listen, _cli_mqtt.broker_factory(args, tls), tls)


def _wsgi(args: argparse.Namespace) -> None:
    from . import _cli_servers

    args.tls = tls_options(args.listen, args, "https")  # before importing the application
    _cli_servers.run_wsgi(_cli_servers.load_app(args.app, args.app_dir), args.listen, args)


def _asgi(args: argparse.Namespace) -> None:
    from . import _cli_servers

    args.tls = tls_options(args.listen, args, "https")  # before importing the application
    _cli_servers.run_asgi(_cli_servers.load_app(args.app, args.app_dir), args.listen, args)


def _process_options(p: argparse.ArgumentParser, mount: bool = True) -> None:
    from ._cli_workers import add_process_options

    add_process_options(p, mount)


def _limits_for_a_server(backlog: Optional[int]) -> None:
    """Raise the soft descriptor limit to the hard one, as most servers do
    (a reconnect storm needs a descriptor per client), and apply --backlog."""
    from . import manager

    if backlog is not None:
        manager.DEFAULT_BACKLOG = backlog
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            logging.getLogger("cymongoose.cli").warning(
                "could not raise the descriptor limit from %d: %s", soft, exc)
            return
    logging.getLogger("cymongoose.cli").debug(
        "descriptor limit: %s", "unlimited" if hard == resource.RLIM_INFINITY else hard)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m cymongoose``."""
    parser = argparse.ArgumentParser(
        prog="cymongoose", description="Mongoose networking from the command line. "
        "Ctrl-C stops each command (exit status 0); bad arguments exit with status 2.")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="Python logging level, on stderr (default INFO; WARNING "
                             "hides the access log); goes before COMMAND")
    parser.add_argument("--no-access-log", action="store_true",
                        help="no access log lines (logger cymongoose.access), whatever "
                             "--log-level says; goes before COMMAND")
    parser.add_argument("--backlog", type=positive, default=None, metavar="N",
                        help="listen backlog of every listener (default 1024); goes "
                             "before COMMAND")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser(
        "serve", help="serve a directory over HTTP(S)",
        description="Static file server: directory listing, index.html, Range requests, "
                    "ETag, MIME types; one access-log line per request (logger "
                    "cymongoose.access).")
    serve.add_argument("directory", nargs="?", default=".", metavar="DIR",
                       help="directory to serve (default: the current one)")
    serve.add_argument("--listen", default=HTTP_URL, metavar="URL",
                       help="URL to listen on (default %s; port 0 picks a free port; "
                            "https://... with --cert and --key; IPv6 as "
                            "http://[::1]:8000)" % HTTP_URL)
    add_tls_options(serve, "https")
    serve.add_argument("--ws-echo", metavar="PATH",
                       help="answer WebSocket connections on PATH (e.g. /ws) with an echo")
    _process_options(serve, mount=False)
    _serve_file_arguments(serve)
    serve.set_defaults(func=_serve, parser=serve)

    broker = sub.add_parser(
        "mqtt-broker", help="run a small MQTT broker",
        description="An MQTT 3.1.1 broker that also accepts MQTT 5 clients "
                    "(cymongoose.MqttBroker): QoS 0, 1 and 2, + and # wildcards, retained "
                    "messages, wills, kept sessions, passwords, ACLs, limits, $SYS "
                    "statistics and a bridge.")
    broker.add_argument("--listen", default=MQTT_URL, metavar="URL",
                        help="URL to listen on (default %s; port 0 picks a free port)"
                             % MQTT_URL)
    from ._cli_mqtt import add_broker_options

    add_broker_options(broker)
    add_tls_options(broker, "mqtts")
    broker.set_defaults(func=_mqtt_broker, parser=broker)

    for name, func, what, like, workers_help in (
            ("wsgi", _wsgi, "a WSGI", "gunicorn",
             "threads running the application (default 4)"),
            ("asgi", _asgi, "an ASGI", "uvicorn",
             "threads of the event loop's default executor, which runs what the "
             "application passes to asyncio.to_thread or run_in_executor(None, ...) "
             "(default 4); the application itself runs on one asyncio loop")):
        p = sub.add_parser(name, help="serve %s application" % what,
                           description="Serve %s application, as %s would." % (what, like))
        p.add_argument("app", metavar="MODULE:APP",
                       help="the application: attribute APP of module MODULE "
                            "(e.g. myproject.web:app)")
        p.add_argument("--listen", default=HTTP_URL, metavar="URL",
                       help="http:// URL to listen on (default %s; port 0 picks a free "
                            "port)" % HTTP_URL)
        p.add_argument("--threads", type=positive, default=4, metavar="N", help=workers_help)
        _process_options(p)
        p.add_argument("--app-dir", default=".", metavar="DIR",
                       help="directory put first on sys.path to import MODULE "
                            "(default: the current one)")
        add_tls_options(p, "https")
        if name == "wsgi":
            _wsgi_options(p)
        else:
            p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                           help="event loop: uvloop when installed (auto, the default), "
                                "or the one named")
        p.set_defaults(func=func, parser=p)
    return parser


def _wsgi_options(p: argparse.ArgumentParser) -> None:
    """Options of the ``wsgi`` command alone."""
    p.add_argument("--inline", action="store_true",
                   help="run the application on the event-loop thread, without a thread "
                        "pool (like bjoern or meinheld): fastest, but only for applications "
                        "that never block")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit status.

    argparse exits with status 2 on bad arguments (``SystemExit``); so does
    a ``UsageError`` found later (a missing directory, an unimportable
    module, a URL that cannot be listened on).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the real command line: it can be started again
        from ._cli_pypy import set_nursery

        set_nursery()
    _log_writer.configure(args.log_level)
    if args.no_access_log:
        # Servers check the level once per request and then skip the line.
        logging.getLogger("cymongoose.access").setLevel(logging.WARNING)
    _limits_for_a_server(args.backlog)
    try:
        args.func(args)
    except UsageError as exc:
        args.parser.error(str(exc))
    except KeyboardInterrupt:
        # Ctrl-C before the server's own signal handling is in place.
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
