"""``Manager``: owns the Mongoose event manager and every connection."""

import functools
import os
import threading
from typing import (Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Set, Tuple,
                    Type)

from . import _dispatch, ws as _ws
from ._args import _INT_MAX, _INT_MIN, to_cstr, to_int
from ._dispatch import LSN_SHIFT, mask_of, print_exception
from ._ffi import ffi, lib
from ._graceful import finish_in_flight
from ._signals import serve_until_signal
from .connection import Connection, Handler
from .errors import MANAGER_FREED as _FREED, ListenError, MongooseError, ThreadError, check
from .limits import Limits, attach as attach_limits, check as check_limits
from .net import NetManagerMixin
from .mqtt import MqttManagerMixin
from .timers import TimerManagerMixin
from .wakeup import WakeupManagerMixin

_REENTRANT = ("poll() is not reentrant and must not be called concurrently. "
              "Use AsyncManager for multi-threaded access.")
_CLOSE_WHILE_POLLING = ("Cannot close Manager while poll() is active. "
                        "Stop all polling threads before calling close().")

_OTHER_THREAD = ("Manager is being polled by another thread; call Connection and Manager "
                 "methods from the polling thread (only wakeup() and Timer.cancel() are "
                 "thread-safe)")

_HTTP_SCHEMES = ("http://", "https://", "ws://", "wss://")
_get_ident = threading.get_ident
# Globals are cheaper to reach than lib's attributes, once per poll.
_mgr_poll = lib.cym_mgr_poll
_mgr_poll_end = lib.cym_mgr_poll_end
_deliver_batch = _dispatch.deliver_batch

# Managers stay alive until close(): C may still call back into one whose
# last user reference is gone.
_LIVE: Set["Manager"] = set()


def _wants_http(url: str, http: Optional[bool]) -> bool:
    if http is None:
        # A non-str url is refused with a clear TypeError by _open().
        return isinstance(url, str) and url[:8].lower().startswith(_HTTP_SCHEMES)
    return bool(http)


#: The listen backlog of ``Manager.listen`` without ``backlog=``.
DEFAULT_BACKLOG = 1024


def _adopt_listening(fd: int) -> int:
    """A duplicate of ``fd``, checked to be a listening TCP socket.

    The check is made in C (``cym_listening_family``): a Python socket
    object would make the descriptor blocking on PyPy, for every process
    that shares it.
    """
    family = lib.cym_listening_family(fd)
    if family == -1:
        raise ValueError("descriptor %d is not a socket: %s" % (fd, os.strerror(ffi.errno)))
    if family == -2:
        raise ValueError("descriptor %d is not a listening TCP socket" % fd)
    if family == -3:
        raise ValueError("descriptor %d is not an IPv4 or IPv6 socket" % fd)
    try:
        return os.dup(fd)
    except OSError as exc:
        raise ValueError("descriptor %d is not a socket: %s" % (fd, exc.strerror)) from None


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class Manager(NetManagerMixin, MqttManagerMixin, TimerManagerMixin, WakeupManagerMixin):
    """The event loop: listeners, connections, timers and wakeups.

    ``handler(conn, ev, data)`` is the default event handler, used by every
    connection without a handler of its own.  ``error_handler(exc)``
    receives exceptions raised by handlers; without it their tracebacks are
    printed.  A ``KeyboardInterrupt`` or ``SystemExit`` raised in a handler
    is not swallowed: the connection bookkeeping completes, then ``poll()``
    re-raises it.

    Threads: ``wakeup``, ``call_soon_threadsafe`` and ``Timer.cancel`` are
    safe from any thread.  A ``Connection`` method that sends or changes
    state (``send``, ``reply``, ``ws_send``, ``mqtt_pub``, ``close``, ...)
    called from another thread than the polling one is carried to the poll
    thread and runs there, in call order (docs/threading-and-asyncio.md
    lists which methods wait for an answer).  The other ``Manager``
    methods (``listen``, ``connect``, ``timer_add``, ...) and
    ``recv_data``/``send_data`` raise ``cymongoose.ThreadError`` when
    called from another thread while one is inside ``poll()``.
    """

    #: The WSGI thread pool's ``cym_park`` (``_csrc/park.c``), or None: held
    #: here so that it lives as long as this Manager, which detaches it
    #: when freed.
    _park: Any = None

    def __init__(self, handler: Optional[Handler] = None, enable_wakeup: bool = False,
                 error_handler: Optional[Callable[[BaseException], Any]] = None) -> None:
        self._handler = handler
        self._error_handler = error_handler
        self._mask = mask_of(handler)
        self._conns: Dict[int, Connection] = {}
        self._lsn: Dict[int, Handler] = {}  # listener id -> handler its children inherit
        self._inside = 0  # >0 while C may be iterating connections (poll, dispatch)
        self._poller = 0  # ident of the thread inside poll(), 0 between polls
        self._loop_thread = 0  # ident of the thread that last entered poll()
        self._freed = False
        # Held (emptied) by poll() and close(): list.pop and append are atomic
        # on both interpreters, and cheaper than a Lock's acquire(False),
        # which parses its arguments on every call of the hottest loop.
        self._poll_token: List[bool] = [True]
        self._pending: Optional[BaseException] = None
        # The bracket around every call into C that may dispatch events.
        self._calling_c = _CallingC(self)
        cm = lib.cym_mgr_new()
        if cm == ffi.NULL:
            raise MemoryError("cannot allocate a Mongoose manager")
        self._cm: Any = cm
        self._mgr: Any = ffi.addressof(cm, "mgr")
        self._slot = _dispatch.take_slot(self)
        cm.slot = self._slot
        cm.live = 1  # from now on C dispatches to the Manager in this slot
        _LIVE.add(self)
        # Always: calls from other threads travel on it (_carry.py).
        self._wakeup_init(public=bool(enable_wakeup))

    # -- dispatcher hooks (called by _dispatch._cym_dispatch) ----------------

    def _adopt(self, cid: int, ev: int, arg: int) -> Connection:
        """Create the Connection for a connection Python sees for the first time."""
        c = self._cm.cur
        handler = None
        if ev == _dispatch._OPEN:
            lsn = arg >> LSN_SHIFT  # set when accepted from a listener with a handler
            if lsn:
                handler = self._lsn.get(lsn)
        conn = Connection._new(self, c, cid, handler)
        self._conns[cid] = conn
        return conn

    def _forget(self, conn: Connection) -> None:
        """MG_EV_CLOSE was dispatched: Mongoose frees the struct next."""
        conn._detach()  # first: a detached Connection can no longer touch freed memory
        self._conns.pop(conn._id, None)
        self._lsn.pop(conn._id, None)

    def _retarget(self, conn: Connection) -> None:
        """Tell C which events ``conn`` wants, and what its children inherit."""
        own = conn._handler
        state = mask_of(own) if own is not None else self._mask
        if lib.cym_flags(conn._c) & lib.CYM_F_LISTENING:
            if own is not None:
                self._lsn[conn._id] = own
                state |= conn._id << LSN_SHIFT
            else:
                self._lsn.pop(conn._id, None)
        lib.cym_set_state(conn._c, state)

    def _report(self, exc: Exception) -> None:
        handler = self._error_handler
        if handler is None:
            print_exception(exc)
            return
        try:
            handler(exc)
        except Exception as second:
            print_exception(second)
        except BaseException as fatal:
            self._defer(fatal)

    def _defer(self, exc: BaseException) -> None:
        """Keep a KeyboardInterrupt/SystemExit for when control is back from C."""
        if self._pending is None:
            self._pending = exc

    def _raise_pending(self) -> None:
        if self._inside:  # still inside a handler: the outermost call raises it
            return
        exc = self._pending
        if exc is None and _dispatch.escaped:
            exc = _dispatch.escaped.pop(0)
        if exc is not None:
            self._pending = None
            self._sweep()
            raise exc

    def _sweep(self) -> None:
        """Drop Connections detached by a CLOSE whose bookkeeping an interrupt cut short."""
        for cid in [cid for cid, conn in self._conns.items() if conn._c is None]:
            self._conns.pop(cid, None)
            self._lsn.pop(cid, None)

    def _check_thread(self) -> None:
        """Raise ``ThreadError`` when another thread is inside ``poll()`` right now."""
        poller = self._poller
        if poller and poller != _get_ident():
            raise ThreadError(_OTHER_THREAD)

    def _busy(self, message: str) -> MongooseError:
        """The error for a poll/close refused: ``ThreadError`` when another thread polls."""
        poller = self._poller
        if poller and poller != _get_ident():
            return ThreadError(message)
        return MongooseError(message)

    def _check_open(self) -> None:
        if self._freed:
            raise MongooseError(_FREED)

    # -- the loop ------------------------------------------------------------

    def poll(self, timeout_ms: int = 0) -> None:
        """Run one event-loop iteration, waiting up to ``timeout_ms`` for I/O.

        Handlers and timer callbacks run inside this call.  Raises
        ``RuntimeError`` when closed or when a poll is already running (from
        another thread or from a handler, including a handler that
        ``listen``, ``connect`` or ``Connection.close`` is running).
        """
        # _inside also covers handlers run by listen(), close() or error()
        # outside a poll: Mongoose is mid-call there too.
        if self._inside:
            raise self._busy(_FREED if self._freed else _REENTRANT)
        token = self._poll_token
        try:
            token.pop()
        except IndexError:  # another thread holds it
            raise self._busy(_FREED if self._freed else _REENTRANT) from None
        try:
            if self._freed:
                raise MongooseError(_FREED)
            # Checked inline for the common case: poll() runs once per loop
            # iteration, and a call less here pays for the C bracket below.
            if type(timeout_ms) is int and _INT_MIN <= timeout_ms <= _INT_MAX:
                ms = timeout_ms
            else:
                ms = to_int(timeout_ms, "timeout_ms")
            if self._timers is not None:  # None until the first timer_add
                ms = self._timer_wait(ms)
            self._poller = self._loop_thread = _get_ident()
            # _CallingC's bracket, inline: poll() is every loop's hottest
            # call, and on CPython the bracket's two method calls cost more
            # than the rest of it (bench/README.md, "Fourteenth pass").  It
            # starts outside C (checked above), so the depth it restores is 0.
            self._inside = 1
            try:
                cm = self._cm
                size = _mgr_poll(cm, ms)
                if size:
                    # The poll handed its batch to us (_csrc/core.c,
                    # cym_hand_off): deliver it, then let the poll end.
                    try:
                        _deliver_batch(self, cm.handed, size)
                    finally:
                        _mgr_poll_end(cm)
                if self._calls:
                    self._run_calls()
            finally:
                self._inside = 0
                self._poller = 0
            if self._pending is not None or _dispatch.escaped:
                self._raise_pending()
        finally:
            token.append(True)

    def run(self, poll_ms: int = 100, *, grace_ms: int = 1000) -> None:
        """Poll until SIGINT or SIGTERM, then close.

        After the signal the current poll completes, then in-flight
        responses get up to ``grace_ms`` to finish (see
        ``_graceful.finish_in_flight``; ``grace_ms=0`` closes at once).  A
        second signal ends that wait.  The previous signal handlers are
        restored on the way out (``_signals.serve_until_signal``), and the
        Manager is closed even when ``poll`` raises.  Off the main thread,
        ``signal.signal`` raises ``ValueError`` before anything changes, and
        the Manager stays open.
        """
        grace_ms = to_int(grace_ms, "grace_ms", 0)
        serve_until_signal(
            functools.partial(self.poll, poll_ms),  # a lambda's frame less per poll
            finish=lambda stop: finish_in_flight(self, stop.received, poll_ms, grace_ms),
            cleanup=self.close)

    def close(self) -> None:
        """Close every connection and free the Manager; idempotent.

        Handlers still receive ``MG_EV_POLL`` and ``MG_EV_CLOSE`` during the
        call.  Raises ``RuntimeError`` while a poll is running.
        """
        if self._freed:
            return
        if self._inside:
            raise self._busy(_CLOSE_WHILE_POLLING)
        token = self._poll_token
        try:
            token.pop()
        except IndexError:  # another thread holds it
            raise self._busy(_CLOSE_WHILE_POLLING) from None
        try:
            self._freed = True
            self._before_free()
            with self._calling_c:
                try:
                    lib.cym_mgr_free(self._cm)
                finally:
                    _dispatch.release_slot(self._slot)
                    for conn in list(self._conns.values()):
                        conn._detach()
                    self._conns.clear()
                    self._lsn.clear()
                    self._cm = self._mgr = None
                    _LIVE.discard(self)
        finally:
            token.append(True)

    def __enter__(self) -> "Manager":
        return self

    def __exit__(self, *exc: Any) -> Literal[False]:
        self.close()
        return False

    # -- connections ---------------------------------------------------------

    @property
    def connections(self) -> Tuple[Connection, ...]:
        """The live connections, in the order Python first saw them."""
        return tuple(self._conns.values())

    @property
    def live_handles(self) -> int:
        """How many Connection objects this Manager tracks (0 after close)."""
        return len(self._conns)

    def _open(self, kind: int, url: Any, handler: Optional[Handler], error: str,
              opener: Optional[Callable[[Any, bytes, int], Any]] = None,
              exc_type: Type[MongooseError] = MongooseError) -> Connection:
        """Create a connection with ``cym_open(kind)``, or ``opener(cm, url, state)``.

        Raises ``exc_type(error % url)`` when Mongoose refuses.
        """
        raw = to_cstr(url, "url")
        self._check_open()
        self._check_thread()
        if not raw:  # mg_listen("") would listen on every interface
            raise exc_type(error % url)
        with self._calling_c:
            if opener is None:
                c = lib.cym_open(self._cm, kind, raw, self._mask)
            else:
                c = opener(self._cm, raw, self._mask)
            if c == ffi.NULL:
                conn = None
            else:
                conn = self._conns[int(c.id)]
                if handler is not None:
                    conn._handler = handler
                    self._retarget(conn)
        if conn is None:
            raise exc_type(error % url)
        return conn

    def listen(self, url: str, handler: Optional[Handler] = None, *,
               http: Optional[bool] = None, limits: Optional[Limits] = None,
               backlog: Optional[int] = None, reuse_port: bool = False) -> Connection:
        """Listen on ``url`` (``http://``, ``tcp://``, ``udp://``, ...; port 0 for any).

        HTTP parsing is on for ``http(s)://`` and ``ws(s)://`` URLs unless
        ``http`` says otherwise.  Accepted connections inherit ``handler``
        and ``limits`` (a :class:`Limits`; ``None`` for the defaults, which
        TCP listeners get too; UDP has none).  ``backlog`` is the kernel's
        queue of connections not yet accepted (``None``:
        ``DEFAULT_BACKLOG``, 1024; the kernel caps it at
        ``net.core.somaxconn``); each poll accepts every queued connection,
        up to 256 per listener.  ``reuse_port=True`` sets ``SO_REUSEPORT``
        before binding, so several processes can listen on one port and the
        kernel spreads connections over them.

        Raises ``ListenError("Failed to listen on '<url>'")`` (a
        ``MongooseError``) on failure, ``MongooseError`` for ``reuse_port``
        on a system without ``SO_REUSEPORT``, ``TypeError``/``ValueError``
        for a bad ``limits`` or ``backlog``, and ``RuntimeError("Manager
        has been freed")`` after ``close()``.

        ``MG_EV_OPEN``, which Mongoose fires inside this call, goes to the
        Manager's default handler, not to ``handler``.
        """
        kind = lib.CYM_HTTP_LISTEN if _wants_http(url, http) else lib.CYM_LISTEN
        return self._listen(kind, url, handler, limits, backlog, reuse_port, -1)

    def listen_fd(self, fd: int, handler: Optional[Handler] = None, *, scheme: str = "http",
                  http: Optional[bool] = None, limits: Optional[Limits] = None) -> Connection:
        """Serve an inherited listening socket, as ``listen`` serves a URL.

        For pre-fork masters and systemd socket activation (``LISTEN_FDS``:
        the first socket is descriptor 3).  ``fd`` is duplicated, so the
        caller keeps its own descriptor; the listener owns the copy.
        ``scheme`` (``http``, ``https``, ``ws``, ``wss`` or ``tcp``) says
        what the socket serves, as a URL's scheme does for ``listen``.
        Raises ``ValueError`` when ``fd`` is not a listening TCP socket,
        ``TypeError`` when it is not an int.
        """
        if isinstance(fd, bool) or not isinstance(fd, int):
            raise TypeError("fd must be an int, got %s" % type(fd).__name__)
        if scheme not in ("http", "https", "ws", "wss", "tcp"):
            raise ValueError("scheme must be http, https, ws, wss or tcp, got %r" % (scheme,))
        own = _adopt_listening(fd)
        url = "%s://0.0.0.0:0" % scheme
        kind = lib.CYM_HTTP_LISTEN if _wants_http(url, http) else lib.CYM_LISTEN
        try:
            return self._listen(kind, url, handler, limits, None, False, own)
        except BaseException:
            if own >= 0:
                _close_quietly(own)
            raise

    def _listen(self, kind: int, url: str, handler: Optional[Handler], limits: Optional[Limits],
                backlog: Optional[int], reuse_port: bool, adopt_fd: int) -> Connection:
        lim = check_limits(limits)
        if backlog is None:
            depth = DEFAULT_BACKLOG
        elif isinstance(backlog, bool) or not isinstance(backlog, int):
            raise TypeError("backlog must be an int, got %s" % type(backlog).__name__)
        elif not 1 <= backlog <= _INT_MAX:
            raise ValueError("backlog must be between 1 and %d, got %d" % (_INT_MAX, backlog))
        else:
            depth = backlog
        if reuse_port and not lib.cym_has_reuseport():
            raise MongooseError("reuse_port: SO_REUSEPORT is not available on this system")

        def opener(cm: Any, raw: bytes, state: int) -> Any:
            return lib.cym_listen(cm, kind, raw, state, depth, 1 if reuse_port else 0, adopt_fd)

        error = "Failed to listen on '%s'" if adopt_fd < 0 else "Failed to adopt %s"
        conn = self._open(kind, url, handler, error, opener, ListenError)
        if not lib.cym_flags(conn._c) & lib.CYM_F_UDP:
            try:
                attach_limits(conn._c, lim, kind == lib.CYM_HTTP_LISTEN)
            except BaseException:
                conn.close()
                raise
        return conn

    def connect(self, url: str, handler: Optional[Handler] = None, *,
                http: Optional[bool] = None) -> Connection:
        """Open an outbound connection; it completes during later polls.

        Failures (refused, DNS) arrive as ``MG_EV_ERROR`` then ``MG_EV_CLOSE``.
        Raises ``RuntimeError("Failed to connect to '<url>'")`` when Mongoose
        refuses the URL, and ``RuntimeError("Manager has been freed")`` after
        ``close()``.  ``MG_EV_OPEN`` and, for an IP literal,
        ``MG_EV_RESOLVE`` fire inside this call and go to the Manager's
        default handler, not to ``handler``.
        """
        kind = lib.CYM_HTTP_CONNECT if _wants_http(url, http) else lib.CYM_CONNECT
        return self._open(kind, url, handler, "Failed to connect to '%s'")

    def ws_connect(self, url: str, handler: Optional[Handler] = None, *,
                   headers: Optional[Mapping[str, str]] = None,
                   subprotocols: Optional[Sequence[str]] = None,
                   origin: Optional[str] = None, compression: Optional[str] = None,
                   max_size: Optional[int] = _ws.DEFAULT_MAX_SIZE,
                   ping_interval: Optional[float] = None,
                   ping_timeout: Optional[float] = None) -> Connection:
        """Open a WebSocket client connection; ``MG_EV_WS_OPEN`` follows the 101.

        ``headers`` (a mapping) and ``origin`` are added to the request;
        ``subprotocols`` are offered, and ``conn.ws_subprotocol`` tells the
        one the server chose.  ``compression="deflate"`` offers
        permessage-deflate.  ``max_size`` bounds a received message (bytes,
        after inflation; ``None``: 1 GiB); larger ones close with 1009.
        ``ping_interval``/``ping_timeout`` work as on ``ws_upgrade``.  A 101
        answer choosing a subprotocol or extension not offered fails the
        connection (``MG_EV_ERROR``, no ``MG_EV_WS_OPEN``).  Raises
        ``TypeError``/``ValueError`` for bad options (before connecting).
        """
        args = _ws.client_options(headers, subprotocols, origin, compression, max_size,
                                  ping_interval, ping_timeout)
        conn = self._open(lib.CYM_WS_CONNECT, url, handler,
                          "Failed to create WebSocket connection to '%s'")
        # frame checks, close handshake and the options above (ws.py)
        rc = lib.cym_ws_client(conn._c, *args)
        if rc:
            conn.close()
            check(rc)
        return conn

    def mqtt_listen(self, url: str, handler: Optional[Handler] = None) -> Connection:
        """Listen for MQTT clients; the application (or ``MqttBroker``) implements the broker.

        Accepted connections run the MQTT parser of ``cymongoose.mqtt``.
        The listen backlog is ``DEFAULT_BACKLOG``, as for ``listen``.  Raises ``ListenError("Failed to listen for MQTT on '<url>'")`` on
        failure.
        """
        return self._open(0, url, handler, "Failed to listen for MQTT on '%s'",
                          lambda cm, raw, state: lib.cym_mqtt_listen(cm, raw, state,
                                                                     DEFAULT_BACKLOG),
                          ListenError)

    def sntp_connect(self, url: str, handler: Optional[Handler] = None) -> Connection:
        """Ask an SNTP server for the time; ``MG_EV_SNTP_TIME`` delivers it."""
        return self._open(lib.CYM_SNTP_CONNECT, url, handler,
                          "Failed to connect to SNTP server '%s'")


class _CallingC:
    """The bracket around every call into C that may dispatch events.

    ``with mgr._calling_c: lib.some_call(...)`` marks the Manager as inside
    C for the call (handlers it fires run nested, a ``poll()`` from them
    raises, ``Connection.close`` defers), and on a normal exit raises what
    a handler left pending (``KeyboardInterrupt``, ``SystemExit``) once the
    outermost bracket ends.  One per Manager, re-entered by nested calls
    (poll thread only), hence the stack of depths.  ``Manager.poll`` does
    the same inline, as the outermost bracket.
    """

    __slots__ = ("_mgr", "_depths")

    def __init__(self, mgr: Manager) -> None:
        self._mgr = mgr
        self._depths: List[int] = []

    def __enter__(self) -> None:
        mgr = self._mgr
        depth = mgr._inside
        self._depths.append(depth)
        mgr._inside = depth + 1

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        mgr = self._mgr
        # Restored, not decremented: a KeyboardInterrupt landing inside the
        # dispatcher's bookkeeping cannot leave the Manager stuck inside.
        mgr._inside = self._depths.pop()
        if exc_type is None and (mgr._pending is not None or _dispatch.escaped):
            mgr._raise_pending()
        return False
