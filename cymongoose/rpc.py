"""JSON-RPC through Mongoose's ``mg_rpc_*``: ``Rpc`` and ``RpcReq``."""

import json
from typing import Any, Callable, Dict, List, Optional

from . import _dispatch
from ._args import text, to_bytes, to_cstr, to_int
from ._ffi import ffi, lib
from .errors import MongooseError

RpcHandler = Callable[["RpcReq"], Any]

_INT_MAX = 2**31 - 1  # ok/err pass lengths through printf's "%.*s"
_from_handle = ffi.from_handle
_cast = ffi.cast


def _checked_len(raw: bytes) -> int:
    if len(raw) > _INT_MAX:
        raise OverflowError("JSON-RPC response text longer than 2**31-1 bytes")
    return len(raw)


class RpcReq:
    """One request, passed to a handler and valid only while it runs.

    ``ok`` or ``err`` answers it, once.  After the handler returns (and for
    a directly constructed ``RpcReq()``) both raise
    ``RuntimeError("RpcReq is no longer valid")``.
    """

    __slots__ = ("_r", "_frame", "_done")

    def __init__(self) -> None:
        self._r: Any = None
        self._frame = b""
        self._done = False

    @classmethod
    def _bind(cls, r: Any, frame: bytes) -> "RpcReq":
        req = cls.__new__(cls)
        req._r = r
        req._frame = frame
        req._done = False
        return req

    def _invalidate(self) -> None:
        self._r = None
        self._frame = b""

    def _take(self) -> Any:
        """The C request, once: validity first, then the single-response rule."""
        r = self._r
        if r is None:
            raise MongooseError("RpcReq is no longer valid")
        if self._done:
            raise MongooseError("Response already sent")
        self._done = True
        return r

    @property
    def frame(self) -> str:
        """The whole request text; ``""`` once invalid."""
        return text(self._frame)

    def ok(self, result_json: str) -> None:
        """Answer with ``result_json`` inserted verbatim as the raw JSON ``result``.

        The text is not validated.  A notification (no ``"id"``) gets no
        output.  Raises ``TypeError`` for a non-``str`` argument.
        """
        raw = to_cstr(result_json, "result_json")
        n = _checked_len(raw)
        lib.cym_rpc_ok(self._take(), raw, n)

    def err(self, code: int, message: str) -> None:
        """Answer with an error object; ``message`` is encoded with ``json.dumps``.

        A notification (no ``"id"``) gets no output.  Raises ``TypeError``
        for a non-``str`` message and ``OverflowError`` for a code outside
        the C ``int`` range.
        """
        c = to_int(code, "code")
        if not isinstance(message, str):
            raise TypeError("Argument 'message' has incorrect type (expected str, got %s)"
                            % type(message).__name__)
        _error(self._take(), c, message)


def _error(r: Any, code: int, message: str) -> None:
    raw = json.dumps(message).encode("ascii")
    lib.cym_rpc_err(r, code, raw, _checked_len(raw))


class _Call:
    """What one ``process`` call shares with its handlers."""

    __slots__ = ("frame", "fatal")

    def __init__(self, frame: bytes) -> None:
        self.frame = frame
        self.fatal: Optional[BaseException] = None


class Rpc:
    """A JSON-RPC method table, independent of any Manager.

    Handlers run synchronously inside :meth:`process`, on the calling
    thread.  An instance is not meant to be shared between threads while
    methods are being added.
    """

    __slots__ = ("_head", "_handlers", "_handle", "__weakref__")

    def __init__(self) -> None:
        head = lib.cym_rpc_new()
        if head == ffi.NULL:
            raise MemoryError("cannot allocate an RPC method list")
        self._head: Any = ffi.gc(head, lib.cym_rpc_free)
        # An Rpc lives outside any Manager, so C reaches it by handle, the one
        # alternative to slot + id (docs/architecture.md, "C to Python").
        # Every C entry's fn_data is this dict's handle (not the Rpc's own,
        # which would make an uncollectable cycle): entry address -> handler.
        self._handlers: Dict[int, RpcHandler] = {}
        self._handle = ffi.new_handle(self._handlers)

    def add(self, method: str, handler: RpcHandler) -> None:
        """Register ``handler(req)`` for ``method``, a Mongoose glob pattern.

        New entries go first and the first match wins, so a later ``add``
        of the same name shadows the older one.  Raises ``TypeError`` for a
        non-``str`` method.
        """
        raw = to_cstr(method, "method")
        entry = lib.cym_rpc_add(self._head, raw, len(raw), self._handle)
        if entry == ffi.NULL:
            raise MemoryError("cannot add RPC method %r" % method)
        self._handlers[int(_cast("uintptr_t", entry))] = handler

    @property
    def methods(self) -> List[str]:
        """The registered patterns, newest first, without empty ones."""
        out = []
        p = self._head[0]
        while p != ffi.NULL:
            if p.method.len:
                out.append(text(ffi.unpack(p.method.buf, p.method.len)))
            p = p.next
        return out

    def process(self, frame: Any) -> str:
        """Run one request and return the response text, or ``""`` for none.

        ``frame`` is data-like.  Unknown methods answer -32601, frames that
        are not JSON-RPC -32700, a handler that raises or does not answer
        -32603; notifications (no ``"id"``) get ``""``.  A
        ``KeyboardInterrupt``/``SystemExit`` from a handler is raised here
        once Mongoose has returned.
        """
        raw = to_bytes(frame)
        call = _Call(raw)
        handle = ffi.new_handle(call)
        out = ffi.new("struct mg_iobuf *")
        try:
            lib.cym_rpc_process(self._head, raw, len(raw), handle, out)
            response = text(ffi.buffer(out.buf, out.len)[:]) if out.len else ""
        finally:
            lib.cym_rpc_out_free(out)
        if call.fatal is not None:
            raise call.fatal
        return response


@ffi.def_extern(onerror=_dispatch._on_escape)
def _cym_rpc_call(r: Any) -> None:
    call = _from_handle(r.req_data)
    req = RpcReq._bind(r, call.frame)
    try:
        handler = _from_handle(r.rpc.fn_data)[int(_cast("uintptr_t", r.rpc))]
        handler(req)
        if not req._done:
            _error(r, -32603, "handler produced no response")
    except Exception as exc:  # becomes the response; an exception after one is dropped
        if not req._done:
            req._done = True
            _error(r, -32603, str(exc))
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: process() raises it
        if call.fatal is None:
            call.fatal = exc
    finally:
        req._invalidate()


__all__ = ["Rpc", "RpcReq"]
