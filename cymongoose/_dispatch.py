"""The one dispatcher C calls, and the event masks that keep crossings rare.

Mongoose calls the shim's trampoline (``cym_ev`` in ``_csrc/core.c``) for
every event of every connection.  The trampoline crosses into Python only
for events the connection's handler wants, plus OPEN and CLOSE, which keep
one ``Connection`` per Mongoose connection.  A crossing made only for that
bookkeeping arrives with the event number complemented (``~ev``).

C finds the Manager by its slot in ``_MANAGERS`` and the Connection by its
id in the Manager's table; timers use the same rule (docs/architecture.md,
"C to Python").
"""

import struct
import sys
import threading
import traceback
from typing import Any, Callable, List, Optional, TypeVar

from . import constants as C
from ._ffi import ffi, lib
from .messages import HttpMessage, MqttMessage, WsMessage, _View, _WsMessageCopy

EV_ALL = int(lib.CYM_EV_ALL)
LSN_SHIFT = int(lib.CYM_LSN_SHIFT)
_USER_BIT = 1 << C.MG_EV_USER

F = TypeVar("F", bound=Callable[..., Any])


def handles(*events: int) -> Callable[[F], F]:
    """Declare the events a handler wants; the others never reach Python.

    ``@handles(MG_EV_HTTP_MSG)`` on a handler makes every other event of its
    connections (above all ``MG_EV_POLL``, once per connection per poll) cost
    no Python call.  ``MG_EV_USER`` stands for every user event.  A handler
    without the declaration receives every event.
    """
    mask = 0
    for ev in events:
        if isinstance(ev, bool) or not isinstance(ev, int) or ev < 0:
            raise ValueError("not an event number: %r" % (ev,))
        mask |= 1 << min(ev, C.MG_EV_USER)

    def mark(fn: F) -> F:
        try:
            setattr(fn, "__cym_events__", mask)
            return fn
        except (AttributeError, TypeError):
            # Bound methods and builtins take no attributes: wrap them.
            def wrapper(*args: Any) -> Any:
                return fn(*args)

            setattr(wrapper, "__cym_events__", mask)
            setattr(wrapper, "__wrapped__", fn)
            return wrapper  # type: ignore[return-value]

    return mark


def mask_of(handler: Optional[Callable[..., Any]]) -> int:
    """The event mask a handler asks for: none for ``None``, all if undeclared."""
    if handler is None:
        return 0
    return getattr(handler, "__cym_events__", EV_ALL)


def _error_text(arg: int) -> Optional[str]:
    return ffi.string(ffi.cast("char *", arg)).decode("utf-8", "ignore") if arg else None


def _wakeup_bytes(arg: int) -> bytes:
    if not arg:
        return b""
    s = ffi.cast("struct mg_str *", arg)
    return ffi.unpack(s.buf, s.len) if s.len else b""


def _view(cls: Any) -> Callable[[int], Any]:
    new = cls.__new__

    def make(arg: int) -> Any:
        if not arg:
            return None
        view = new(cls)
        view._addr = arg
        view._p = None
        return view

    return make


def _int(arg: int) -> int:
    return arg


def _none(arg: int) -> None:
    return None


# How each event's data reaches the handler, indexed by event.
_WRAP: List[Callable[[int], Any]] = [_none] * (C.MG_EV_USER + 1)
_WRAP[C.MG_EV_ERROR] = _error_text
for _ev in (C.MG_EV_HTTP_HDRS, C.MG_EV_HTTP_MSG, C.MG_EV_WS_OPEN):
    _WRAP[_ev] = _view(HttpMessage)
_WRAP[C.MG_EV_WS_MSG] = _view(WsMessage)
_WRAP[C.MG_EV_MQTT_CMD] = _view(MqttMessage)
_WRAP[C.MG_EV_MQTT_MSG] = _view(MqttMessage)
_WRAP[C.MG_EV_MQTT_OPEN] = _int
_WRAP[C.MG_EV_SNTP_TIME] = _int
_WRAP[C.MG_EV_WAKEUP] = _wakeup_bytes

# The dispatcher's fast path, per event: None for events whose data is None,
# the view class for events with a view (made inline, which saves CPython a
# call per event), _SLOW for the rest (OPEN and CLOSE keep the Connection
# table; the others are rare).
class _SLOW(_View):
    """Marker in _FAST; never instantiated."""

    __slots__ = ()


_FAST: List[Optional[type]] = [None if w is _none else _SLOW for w in _WRAP]
for _ev in (C.MG_EV_HTTP_HDRS, C.MG_EV_HTTP_MSG, C.MG_EV_WS_OPEN):
    _FAST[_ev] = HttpMessage
_FAST[C.MG_EV_WS_MSG] = WsMessage
_FAST[C.MG_EV_MQTT_CMD] = _FAST[C.MG_EV_MQTT_MSG] = MqttMessage
_FAST[C.MG_EV_OPEN] = _FAST[C.MG_EV_CLOSE] = _FAST[C.MG_EV_USER] = _SLOW
# An upper half of _SLOW: a complemented event (~ev, negative) indexes it
# from the end, and user events above MG_EV_USER land in it too.  Bytecodes
# are what the fast path costs on CPython, so no range check of its own.
_FAST += [_SLOW] * len(_FAST)
_new_view = _View.__new__

# Exceptions that escaped even the dispatcher's own try (onerror); the next
# poll() raises them.
escaped: List[BaseException] = []


def _on_escape(exc_type: Any, exc: BaseException, tb: Any) -> None:
    escaped.append(exc if exc is not None else exc_type())


# Live Managers by slot.  C passes the slot, a small int, rather than a
# handle: a void * argument costs cffi a new cdata object per crossing, and
# ffi.from_handle a call (bench/count.py, CPython: -2,000 instructions
# per plain request, -340 declared).
_MANAGERS: List[Any] = []
_FREE_SLOTS: List[int] = []
_SLOTS_LOCK = threading.Lock()


def take_slot(mgr: Any) -> int:
    """Register a new Manager; the slot goes into its ``cym_mgr``."""
    with _SLOTS_LOCK:
        if _FREE_SLOTS:
            slot = _FREE_SLOTS.pop()
            _MANAGERS[slot] = mgr
        else:
            slot = len(_MANAGERS)
            _MANAGERS.append(mgr)
    return slot


def release_slot(slot: int) -> None:
    """The Manager is freed: C dispatches nothing more for this slot."""
    with _SLOTS_LOCK:
        _MANAGERS[slot] = None
        _FREE_SLOTS.append(slot)


_CLOSE = C.MG_EV_CLOSE
_OPEN = C.MG_EV_OPEN
_NWRAP = len(_WRAP)


@ffi.def_extern(onerror=_on_escape)
def _cym_dispatch(slot: int, cid: int, ev: int, arg: int) -> None:
    mgr = _MANAGERS[slot]
    if ev == _BATCH:
        # First, as it comes once per poll that read a WebSocket message: in
        # the fast path below its index would raise (and, on CPython, cost
        # an exception) on the way to the slow path.
        deliver_batch(mgr, arg, cid)
        return
    # Fast path: the common events, on a known connection, while poll() (or
    # another C entry point) already holds mgr._inside, so this call needs
    # no bookkeeping of its own.  Everything else takes _dispatch_slow, which
    # behaves exactly the same.
    if mgr._inside:
        try:
            cls = _FAST[ev]  # complemented events index its _SLOW upper half
            conn = mgr._conns[cid]
        except (IndexError, KeyError):
            cls = _SLOW
        if cls is not _SLOW:
            handler = conn._handler
            if handler is None:
                handler = mgr._handler
                if handler is None:
                    return
            if cls is None:
                try:
                    handler(conn, ev, None)
                except Exception as exc:
                    mgr._report(exc)
                except BaseException as exc:  # re-raised by poll()
                    mgr._defer(exc)
                return
            data: Any = _new_view(cls)  # Mongoose never passes NULL for these
            data._addr = arg
            try:
                handler(conn, ev, data)
            except Exception as exc:
                mgr._report(exc)
            except BaseException as exc:
                mgr._defer(exc)
            finally:
                data._addr = 0  # the view dies with the event
            return
    _dispatch_slow(mgr, cid, ev, arg)


# A batch of events (_csrc/core.c, "delivered per poll"): records of
# (connection id, flags, payload length), each before its payload; a record
# whose flags are _POLLS is a run of POLLs, its payload their connections' ids.
_BATCH = int(lib.CYM_EV_BATCH)
_REC = struct.Struct("=QII")
assert _REC.size == int(lib.CYM_BATCH_REC)
_POLLS = int(lib.CYM_BATCH_POLLS)
_SPAN = int(lib.CYM_BATCH_SPAN)
_CHARS = ffi.typeof("char *")
# (address, a buffer of _SPAN bytes there) of the last batch: the shim keeps
# a batch's memory from poll to poll, so most batches are read by slicing
# the same buffer, where a read through C would cost two calls per batch.
# Only the current batch's `size` bytes are ever read through it.
_last_batch: Any = (0, None)
_WS_MSG = C.MG_EV_WS_MSG
_POLL = C.MG_EV_POLL


def deliver_batch(mgr: Any, arg: int, size: int) -> None:
    """Hand each event of a batch to its connection's handler, in order.

    One crossing for the batch (or none: ``Manager.poll`` delivers the batch
    its poll handed back), where each event used to cost one: the payloads
    arrive as one bytes object and each message's handler gets a slice; a
    POLL carries ``None``, as ever.  A message of a connection
    that a handler closed earlier in the batch is dropped, as C drops data
    for a closing connection.
    """
    global _last_batch
    last = _last_batch
    if last[0] != arg:
        last = _last_batch = (arg, ffi.buffer(ffi.cast(_CHARS, arg), _SPAN))
    blob = last[1][:size]
    rec = _REC.unpack_from
    head = _REC.size
    conns = mgr._conns
    new = _WsMessageCopy.__new__
    pos, end = 0, len(blob)
    mgr._inside += 1
    try:
        while pos < end:
            cid, flags, n = rec(blob, pos)
            pos += head + n
            if flags == _POLLS:
                _deliver_polls(mgr, _poll_ids(blob, pos - n, pos))
                continue
            conn = conns.get(cid)
            if conn is None or conn._closing:
                continue
            handler = conn._handler
            if handler is None:
                handler = mgr._handler
                if handler is None:
                    continue
            msg: Any = new(_WsMessageCopy)
            msg.data = blob[pos - n:pos]
            msg.flags = flags
            try:
                handler(conn, _WS_MSG, msg)
            except Exception as exc:
                mgr._report(exc)
            except BaseException as exc:  # re-raised by poll()
                mgr._defer(exc)
            finally:
                msg.data = b""  # the view dies with the event
                msg.flags = 0
    finally:
        mgr._inside -= 1


_ID = struct.Struct("=Q").unpack_from
_ON_PYPY = sys.implementation.name == "pypy"


def _poll_ids(blob: bytes, start: int, end: int) -> Any:
    """The connection ids of a run of POLLs: ``blob[start:end]``, 8 bytes each."""
    if _ON_PYPY:  # its JIT unboxes one id at a time; a tuple of them all costs more
        return (_ID(blob, i)[0] for i in range(start, end, 8))
    return struct.unpack_from("=%dQ" % ((end - start) >> 3), blob, start)


def _deliver_polls(mgr: Any, ids: Any) -> None:
    """The POLLs of a batch's run, in order (``mgr._inside`` already held)."""
    conns = mgr._conns
    for cid in ids:
        conn = conns.get(cid)
        if conn is None:
            continue
        handler = conn._handler
        if handler is None:
            handler = mgr._handler
            if handler is None:
                continue
        try:
            handler(conn, _POLL, None)
        except Exception as exc:
            mgr._report(exc)
        except BaseException as exc:  # re-raised by poll()
            mgr._defer(exc)


def _dispatch_slow(mgr: Any, cid: int, ev: int, arg: int) -> None:
    mgr._inside += 1
    conn = None
    data = None
    try:
        wanted = ev >= 0
        if not wanted:  # OPEN or CLOSE the handler did not ask for
            ev = ~ev
        conn = mgr._conns.get(cid)
        if conn is None:
            conn = mgr._adopt(cid, ev, arg)
        if not wanted:
            return
        handler = conn._handler
        if handler is None:
            handler = mgr._handler
            if handler is None:
                return
        data = _WRAP[ev](arg) if ev < _NWRAP else None
        handler(conn, ev, data)
    except Exception as exc:
        mgr._report(exc)
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: re-raised by poll()
        mgr._defer(exc)
    finally:
        # Nested so that a second Ctrl-C landing here still forgets a closed
        # connection and leaves the depth count right.
        try:
            if isinstance(data, _View):
                data._invalidate()
        finally:
            try:
                if ev == _CLOSE and conn is not None:
                    conn._c = None  # detached before any call an interrupt could hit
                    mgr._forget(conn)
            finally:
                mgr._inside -= 1


def print_exception(exc: BaseException) -> None:
    """Print a traceback the way ``traceback.print_exc`` would."""
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
