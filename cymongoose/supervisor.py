"""A pre-fork process supervisor: one master binds, N worker processes serve.

The master opens the listening sockets once (or adopts inherited ones:
``--fd``, systemd socket activation) and forks ``workers`` children.  Each
child calls ``factory(sockets)``, which builds its own ``Manager`` (or WSGI/
ASGI server), adopts the sockets with ``Manager.listen_fd`` and serves
until SIGTERM; the kernel spreads new connections over the children that
accept on the shared sockets.  The master itself never runs Mongoose.

Signals to the master:

* **SIGTERM, SIGINT**: every worker gets SIGTERM and stops gracefully; one
  still alive after ``graceful_timeout`` seconds gets SIGKILL.  ``run()``
  then returns 0.  A worker that gets SIGTERM before ``factory`` has set up
  its own handlers exits at once, by the signal's default action.
* **SIGHUP**: the workers are replaced one at a time.  A new worker starts,
  and once it reports ready (``notify_ready()``, or ``ready_timeout``
  seconds) one old worker gets SIGTERM.  The listening sockets stay open in
  the master throughout, so no connection is refused.  New workers are
  forked from the master: they run the code the master loaded.
* **SIGTTIN / SIGTTOU**: one worker more / one fewer (never fewer than 1).
* A worker that dies is replaced.  Workers that die within a second of
  starting back off: the second such death in a row waits 0.2 s, then
  0.4 s, ... up to 10 s.  A worker that exits with status 3 (the
  application failed to start) before it was ready stops the master,
  which returns 3.

A worker whose master disappears (``kill -9``) stops itself within a
second, so no orphan keeps serving.
"""

import errno
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ["Supervisor", "notify_ready", "bind", "inherited_sockets"]

log = logging.getLogger("cymongoose.supervisor")

#: What a worker runs: ``factory(sockets)`` serves on the inherited listening
#: sockets until SIGTERM, then returns.
WorkerFactory = Callable[[List[socket.socket]], Any]

#: Exit status of a worker whose application failed to start.
STARTUP_FAILED = 3

_FAST_DEATH = 1.0  # seconds: a worker dying sooner counts towards the backoff
_BACKOFF_MAX = 10.0
_READY_FD_ENV = "CYMONGOOSE_READY_FD"

_MASTER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN,
                   signal.SIGTTOU, signal.SIGCHLD)


def notify_ready() -> None:
    """Tell the supervisor that this worker serves (a no-op outside one).

    A worker factory calls it once its listeners are adopted; the master
    waits for it before retiring an old worker on SIGHUP.  Only the first
    call counts (programs the worker starts do not inherit the channel).
    """
    fd = os.environ.pop(_READY_FD_ENV, None)
    if fd is None:
        return
    try:
        os.write(int(fd), struct.pack("=i", os.getpid()))
    except (OSError, ValueError):
        pass  # the master is gone; the orphan watch stops this worker


def bind(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (``SO_REUSEADDR`` set).

    IPv6 hosts (``::1``, ``[::1]``) bind IPv6 only.  Raises ``OSError``
    when the address cannot be bound.
    """
    host = host.strip("[]")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def inherited_sockets(fds: Sequence[int] = (), environ: Optional[Dict[str, str]] = None
                      ) -> List[socket.socket]:
    """Listening sockets passed to this process.

    ``fds`` are descriptors named on the command line (``--fd``).  Without
    them, systemd socket activation is read from ``environ`` (``os.environ``
    by default): ``LISTEN_FDS`` descriptors from 3 when ``LISTEN_PID`` is
    this process; both variables are then removed so children do not
    adopt them again.  Raises ``ValueError`` for a descriptor that is not
    an open listening stream socket.
    """
    env = os.environ if environ is None else environ
    chosen = list(fds)
    if not chosen and env.get("LISTEN_PID") == str(os.getpid()):
        try:
            count = int(env.get("LISTEN_FDS", "0"))
        except ValueError:
            raise ValueError("LISTEN_FDS is not a number: %r" % env.get("LISTEN_FDS")) from None
        chosen = list(range(3, 3 + count))
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(name, None)
    socks = []
    for fd in chosen:
        try:
            # PyPy's socket(fileno=) makes the descriptor blocking, and the
            # flag is shared with every process holding it: put it back.
            blocking = os.get_blocking(fd)
            sock = socket.socket(fileno=fd)
            os.set_blocking(fd, blocking)
        except OSError as exc:
            raise ValueError("descriptor %d is not a listening stream socket: %s"
                             % (fd, exc.strerror)) from None
        try:
            listening = sock.type == socket.SOCK_STREAM and \
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        except OSError:
            listening = False
        if not listening:
            sock.detach()
            raise ValueError("descriptor %d is not a listening stream socket" % fd)
        socks.append(sock)
    return socks


class _Worker:
    __slots__ = ("pid", "started", "ready", "replaces", "retiring")

    def __init__(self, pid: int, replaces: Optional[int]) -> None:
        self.pid = pid
        self.started = time.monotonic()
        self.ready = False
        self.replaces = replaces  # the old worker this one takes over from (SIGHUP)
        self.retiring = False


class Supervisor:
    """Run ``workers`` processes of ``factory(sockets)`` and keep them running.

    Args:
        factory: called in each worker with the listening sockets; serves
            until SIGTERM and returns (an exception exits the worker with
            status 1; ``SystemExit`` with its own status).
        sockets: listening sockets, made with :func:`bind` or taken from
            :func:`inherited_sockets`; they stay open in the master.
        workers: how many worker processes to run (at least 1).
        graceful_timeout: seconds a stopping worker gets before SIGKILL.
        ready_timeout: seconds a new worker that never calls
            :func:`notify_ready` is waited for on SIGHUP.

    Raises ``ValueError`` for ``workers`` below 1 or no sockets.  The
    master's signal handlers are installed by ``run()`` on the main
    thread and restored when it returns.
    """

    def __init__(self, factory: WorkerFactory, sockets: Sequence[socket.socket],
                 workers: int = 1, graceful_timeout: float = 30.0,
                 ready_timeout: float = 10.0) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if not sockets:
            raise ValueError("a supervisor needs at least one listening socket")
        self.factory = factory
        self.sockets = list(sockets)
        self.target = workers
        self.graceful_timeout = graceful_timeout
        self.ready_timeout = ready_timeout
        self._workers: Dict[int, _Worker] = {}
        self._to_replace: List[int] = []
        self._rolling = False
        self._fast_deaths = 0
        self._next_spawn = 0.0
        self._stopping = False
        self._status = 0
        self._wake_r = self._wake_w = self._ready_r = self._ready_w = -1

    @property
    def pids(self) -> List[int]:
        """Process ids of the workers alive now (the retiring ones included)."""
        return list(self._workers)

    def run(self, started: Optional[Callable[[], Any]] = None) -> int:
        """Start the workers and supervise them until SIGTERM or SIGINT.

        ``started()`` is called once the master's signal handlers are in
        place and the first workers forked (print a banner there: a signal
        sent after it is handled).  Returns the exit status for the master:
        0 after a graceful stop, 3 when a worker's application failed to
        start.
        """
        self._wake_r, self._wake_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        for fd in (self._wake_r, self._wake_w, self._ready_r):
            os.set_blocking(fd, False)
        saved = {sig: signal.signal(sig, _note_signal) for sig in _MASTER_SIGNALS}
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        try:
            self._fill()
            if started is not None:
                started()
            self._loop()
            self._stop_all()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in saved.items():
                signal.signal(sig, handler)
            for fd in (self._wake_r, self._wake_w, self._ready_r, self._ready_w):
                os.close(fd)
        return self._status

    # -- the master loop --------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping:
            self._reap()
            if self._stopping:
                break
            self._replace_next()
            self._fill()
            timeout = 1.0
            if len(self._live()) < self.target:
                timeout = max(0.0, min(timeout, self._next_spawn - time.monotonic()))
            readable, _, _ = select.select([self._wake_r, self._ready_r], [], [], timeout)
            if self._ready_r in readable:
                self._read_ready()
            if self._wake_r in readable:
                for signum in _drain(self._wake_r):
                    self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            log.info("stopping %d worker(s) (signal %d)", len(self._workers), signum)
            self._stopping = True
        elif signum == signal.SIGHUP:
            self._to_replace = [w.pid for w in self._live()]
            self._rolling = True
            log.info("replacing %d worker(s)", len(self._to_replace))
        elif signum == signal.SIGTTIN:
            self.target += 1
            log.info("workers: %d", self.target)
        elif signum == signal.SIGTTOU and self.target > 1:
            self.target -= 1
            log.info("workers: %d", self.target)
            live = self._live()
            if len(live) > self.target:
                self._retire(live[-1])

    def _live(self) -> List[_Worker]:
        return [w for w in self._workers.values() if not w.retiring]

    def _fill(self) -> None:
        while len(self._live()) < self.target and time.monotonic() >= self._next_spawn:
            self._spawn(None)

    def _replace_next(self) -> None:
        """SIGHUP: start the next replacement once the previous one is ready."""
        if any(w.replaces is not None and not w.ready for w in self._workers.values()):
            now = time.monotonic()
            for w in list(self._workers.values()):
                if w.replaces is not None and not w.ready and now - w.started > self.ready_timeout:
                    self._mark_ready(w)
            return
        while self._to_replace:
            old = self._workers.get(self._to_replace.pop(0))
            if old is not None and not old.retiring:
                self._spawn(old.pid)
                return
        if self._rolling:
            self._rolling = False
            log.info("all workers replaced")

    def _read_ready(self) -> None:
        data = _drain_bytes(self._ready_r)
        for (pid,) in struct.iter_unpack("=i", data[:len(data) - len(data) % 4]):
            w = self._workers.get(pid)
            if w is not None:
                self._mark_ready(w)

    def _mark_ready(self, w: _Worker) -> None:
        if w.ready:
            return
        w.ready = True
        old = self._workers.get(w.replaces) if w.replaces is not None else None
        if old is not None:
            self._retire(old)

    def _retire(self, w: _Worker) -> None:
        w.retiring = True
        _kill(w.pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self._workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self._workers.pop(pid, None)
            if w is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if w.retiring or self._stopping:
                continue
            log.warning("worker %d exited with status %d", pid, code)
            if code == STARTUP_FAILED and not w.ready:
                log.error("worker %d: the application failed to start; stopping", pid)
                self._status = STARTUP_FAILED
                self._stopping = True
                return
            if time.monotonic() - w.started < _FAST_DEATH:
                self._fast_deaths += 1
            else:
                self._fast_deaths = 0
            delay = 0.0 if self._fast_deaths <= 1 else \
                min(0.1 * 2 ** (self._fast_deaths - 1), _BACKOFF_MAX)
            self._next_spawn = time.monotonic() + delay

    def _spawn(self, replaces: Optional[int]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # Until the child has dropped the master's handlers, a signal for it
        # must wait: the master's would swallow it there (and write to the
        # master's wakeup pipe, stopping the master instead).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, _MASTER_SIGNALS)
        master = os.getpid()
        try:
            pid = os.fork()
            if pid == 0:
                self._child(mask, master)  # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._workers[pid] = _Worker(pid, replaces)
        log.debug("worker %d started", pid)

    def _stop_all(self) -> None:
        for w in self._workers.values():
            _kill(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.graceful_timeout
        while self._workers and time.monotonic() < deadline:
            self._reap()
            if self._workers:
                readable, _, _ = select.select([self._wake_r], [], [],
                                               max(0.0, min(0.5, deadline - time.monotonic())))
                if readable:
                    _drain(self._wake_r)
        for w in self._workers.values():
            log.warning("worker %d did not stop in time: killed", w.pid)
            _kill(w.pid, signal.SIGKILL)
        for pid in list(self._workers):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self._workers.clear()

    # -- in the worker ------------------------------------------------------------

    def _child(self, mask: Any, master: int) -> None:
        status = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in _MASTER_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            # A SIGTERM that came meanwhile ends this worker now, by default.
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(self._wake_r)
            os.close(self._wake_w)
            os.close(self._ready_r)
            os.environ[_READY_FD_ENV] = str(self._ready_w)
            _watch_parent(master)  # not getppid(): the master may be gone already
            self.factory(self.sockets)
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except KeyboardInterrupt:
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(status)


def _note_signal(signum: int, frame: Any) -> None:
    """The master's handler: the signal number reaches the loop through the
    wakeup descriptor."""


def _drain_bytes(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                break
            raise
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _drain(fd: int) -> List[int]:
    return list(_drain_bytes(fd))


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _watch_parent(master: int) -> None:
    """Stop this worker (SIGTERM) once its master is gone."""
    def watch() -> None:
        while os.getppid() == master:
            time.sleep(0.5)  # polling: Python has no portable parent-death signal
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="cymongoose-orphan-watch", daemon=True).start()
