"""A TCP relay between a client and a server that can reset its
connections: a network drop as both ends see it (RST), mid-stream."""

import selectors
import socket
import threading
from typing import Dict, List

from support.sockets import reset


class Relay:
    """Listens on 127.0.0.1 (``port``) and relays each connection to
    ``target_port``; ``reset_all()`` resets every relayed connection on both
    sides.  One thread with a selector; ``stop()`` ends it."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ)
        self.peer: Dict[socket.socket, socket.socket] = {}
        self.lock = threading.Lock()
        self.resets = 0
        self._reset_now = False
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            for key, _ in self.sel.select(0.05):
                sock = key.fileobj
                if sock is self.listener:
                    self._accept()
                else:
                    self._pump(sock)  # type: ignore[arg-type]
            with self.lock:
                if self._reset_now:
                    self._reset_now = False
                    self.resets += 1
                    for sock in list(self.peer):
                        self._drop(sock, rst=True)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        for s in (client, server):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sel.register(s, selectors.EVENT_READ)
        self.peer[client], self.peer[server] = server, client

    def _pump(self, sock: socket.socket) -> None:
        other = self.peer.get(sock)
        if other is None:
            return
        try:
            data = sock.recv(65536)
            if data:
                other.settimeout(5)  # small test traffic: a bounded blocking write
                other.sendall(data)
                other.setblocking(False)
                return
        except OSError:
            pass
        self._drop(sock, rst=False)

    def _drop(self, sock: socket.socket, rst: bool) -> None:
        other = self.peer.pop(sock, None)
        pair: List[socket.socket] = [sock] + ([other] if other is not None else [])
        if other is not None:
            self.peer.pop(other, None)
        for s in pair:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            if rst:
                try:
                    reset(s)
                except OSError:
                    s.close()
            else:
                s.close()

    def reset_all(self) -> None:
        """Reset every connection now (on the relay's thread, at its next turn)."""
        with self.lock:
            self._reset_now = True

    def stop(self) -> None:
        self._stop = True
        self.thread.join(5)
        for sock in list(self.peer):
            self._drop(sock, rst=False)
        self.sel.close()
        self.listener.close()
