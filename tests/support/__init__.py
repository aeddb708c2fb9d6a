"""What the tests share: servers on threads and in subprocesses, raw peers, recorders.

- ``loop``: a Manager polled on a thread (LoopThread), ``wait_until``, ``poll_until``.
- ``sockets``: free ports, raw connections, bounded reads.
- ``http_raw``: raw HTTP requests and response parsing.
- ``events``: the event recorder the handler-based tests share.
- ``hostile``, ``ws``, ``mqtt``, ``tls``, ``net``: peers and servers per protocol.
- ``servers``: WSGI/ASGI servers on threads; ``subprocs``: servers and examples in a child
  Python; ``loop_server``: the script ``Manager.run()`` tests start in a child.
"""
