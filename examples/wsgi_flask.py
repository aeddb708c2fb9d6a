"""WSGI: a Flask application served by cymongoose.

    pip install flask
    python examples/wsgi_flask.py --listen http://127.0.0.1:8000
    curl http://127.0.0.1:8000/api/items -d '{"name": "pen"}' -H 'Content-Type: application/json'

Mongoose runs the network on the main thread; Flask views run on a pool of
worker threads, so the shared state below is guarded by a lock.
"""

import argparse
import threading
from typing import Any, Dict, Iterator, List

from flask import Flask, Response, jsonify, request

from cymongoose.wsgi import serve

app = Flask(__name__)
items: List[Dict[str, Any]] = []
lock = threading.Lock()


@app.get("/")
def index() -> str:
    return "Hello from Flask on cymongoose\n"


@app.get("/api/items")
def list_items() -> Any:
    with lock:
        return jsonify(items)


@app.post("/api/items")
def add_item() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return jsonify(error="expected {\"name\": ...}"), 400
    with lock:
        item = {"id": len(items) + 1, "name": body["name"]}
        items.append(item)
    return jsonify(item), 201


@app.get("/stream")
def stream() -> Response:
    # A generator body is sent piece by piece (chunked), not buffered.  It
    # runs after the view returns, so read the request here, not inside it.
    n = request.args.get("n", 3, type=int)

    def lines() -> Iterator[str]:
        for i in range(n):
            yield "line %d\n" % i
    return Response(lines(), mimetype="text/plain")


def main() -> None:
    parser = argparse.ArgumentParser(description="WSGI (Flask) example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    serve(app, args.listen, workers=args.workers)  # prints the address; Ctrl-C stops


if __name__ == "__main__":
    main()
