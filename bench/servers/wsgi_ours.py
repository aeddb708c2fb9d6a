"""Our WSGI server on one of the bench's WSGI apps.

    python wsgi_ours.py raw|flask THREADS PORT

THREADS is the size of the thread pool that runs the app; 0 runs it inline
on the poll thread.
"""

import sys

import wsgi_apps
from cymongoose.wsgi import WSGIServer

from _common import ready, usage


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[1] not in ("raw", "flask"):
        usage(__doc__)
    app = getattr(wsgi_apps, sys.argv[1])
    threads, port = int(sys.argv[2]), int(sys.argv[3])
    server = WSGIServer(app, workers=threads)
    server.listen("http://127.0.0.1:%d" % port)
    ready("%s threads=%d" % (sys.argv[1], threads))
    server.run()


if __name__ == "__main__":
    main()
