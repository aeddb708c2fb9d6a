"""The WSGI hello-world apps every WSGI server of the bench runs.

``raw`` answers ``ok`` (text/plain, Content-Length); ``flask`` is the same
answer from a one-route Flask app (Flask is imported only when asked for).
"""

from typing import Any, Callable, List, Tuple

BODY = b"ok"
HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "2")]


def raw(environ: Any, start_response: Callable[[str, List[Tuple[str, str]]], Any]) -> List[bytes]:
    start_response("200 OK", list(HEADERS))
    return [BODY]


def __getattr__(name: str) -> Any:
    if name == "flask":
        import flask

        app = flask.Flask("bench")

        @app.route("/")
        def index() -> Any:
            return flask.Response(b"ok", mimetype="text/plain")

        globals()["flask"] = app
        return app
    raise AttributeError(name)
