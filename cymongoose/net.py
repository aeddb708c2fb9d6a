"""DNS, SNTP and raw TCP/UDP methods, mixed into ``Connection`` and ``Manager``."""

import weakref
from typing import Any

from ._carry import carried, carried_with_answer
from ._args import to_cstr, to_int
from ._ffi import ffi, lib
from ._host import ConnectionHost, ManagerHost
from .errors import MongooseError, check

_F_LISTENING = int(lib.CYM_F_LISTENING)
_E_STATE = int(lib.CYM_E_STATE)
_CONSUME_TEXTS = {_E_STATE: "recv_consume() is for raw tcp:// and udp:// connections; "
                            "this one has a protocol parser"}

# Mongoose keeps a pointer to the DNS URL: each Manager's buffer lives here
# as long as the Manager does.
_DNS_URLS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


class NetConnectionMixin(ConnectionHost):
    """``Connection`` methods for name resolution, SNTP and raw receive buffers."""

    __slots__ = ()

    def _net_call(self, fn: Any, *args: Any) -> Any:
        """Call C on the live connection; events it fires run nested, as in a handler."""
        c = self._live()
        with self._mgr._calling_c:
            return fn(c, *args)

    @carried
    def resolve(self, url: str) -> None:
        """Resolve ``url``'s host, then connect this connection there (C ``mg_resolve``).

        The remote port comes from ``url`` (or its scheme's default).  An IP
        literal fires ``MG_EV_RESOLVE`` at once; a name is looked up through
        the Manager's ``dns_server`` (timeout ``dns_timeout``), ``*.local``
        through mDNS.  Success fires ``MG_EV_RESOLVE`` and starts a connect;
        failure fires ``MG_EV_ERROR`` (``"<host> DNS lookup failed"``,
        ``"DNS timeout"``), after an A query and, only when it finds no IPv4
        address, one AAAA query (see ``Manager.dns_server``).  Meant for
        client connections.  A lookup still pending is replaced, and a
        connection that already has a socket closes it first.  Raises
        ``TypeError`` for a non-``str`` url, ``RuntimeError`` on a closed
        connection, on a listener, and in the ``MG_EV_OPEN`` that
        ``connect()`` fires (the connect resolves its own URL next).
        """
        raw = to_cstr(url, "url")
        c = self._live()
        if lib.cym_flags(c) & _F_LISTENING:
            raise MongooseError("resolve() needs a client connection, not a listener")
        check(self._net_call(lib.cym_net_resolve, raw), {
            _E_STATE: "resolve() cannot run in the MG_EV_OPEN of a new client "
                      "connection: connect() resolves its URL right after"})

    @carried
    def resolve_cancel(self) -> None:
        """Drop any DNS or mDNS lookup pending for this connection."""
        lib.mg_resolve_cancel(self._live())

    @carried
    def sntp_request(self) -> None:
        """Send one SNTP request on an ``sntp_connect`` connection.

        While the connection is still resolving, Mongoose only logs an error.
        """
        self._net_call(lib.mg_sntp_request)

    @carried_with_answer
    def recv_consume(self, length: int = -1) -> int:
        """Remove the first ``length`` bytes (all if negative) of the receive buffer.

        Raw TCP/UDP input otherwise accumulates until the 3 MiB receive
        limit closes the connection: an ``MG_EV_READ`` handler reads with
        ``recv_data()`` and then consumes what it handled, so the next READ
        sees only new bytes.  Returns the
        number of bytes removed; 0 once closed.  Raises ``RuntimeError`` on
        a connection with a protocol parser (HTTP, WebSocket, MQTT, SNTP),
        which consumes its own input.
        """
        if isinstance(length, bool) or not isinstance(length, int):
            raise TypeError("Argument 'length' must be an int")
        c = self._c
        if c is None:
            return 0
        n = int(c.recv.len) if length < 0 else min(length, int(c.recv.len))
        return int(check(lib.cym_net_consume(c, n), _CONSUME_TEXTS))


class NetManagerMixin(ManagerHost):
    """``Manager`` settings for name resolution."""

    __slots__ = ()

    @property
    def dns_server(self) -> str:
        """URL of the DNS server for lookups, ``"udp://8.8.8.8:53"`` by default.

        Setting it (e.g. ``"udp://127.0.0.1:5353"``) applies to the next
        lookup; lookups in flight on the old server fail with ``MG_EV_ERROR``.
        A lookup asks this server for an IPv4 address (A) and, when it has
        none, once for an IPv6 address (AAAA); a name with neither fails with
        ``"<host> DNS lookup failed"``.  (Mongoose 7.23 asks its fixed IPv6
        server for AAAA, and again after every failed answer, without end:
        vendor/patches/0001-dns-aaaa-fallback-once.patch.)  ``localhost``
        and IP literals never need a lookup.
        Raises ``TypeError`` for a non-``str``, ``ValueError`` for ``""``
        and ``RuntimeError`` once the Manager is closed.
        """
        self._check_open()
        return ffi.string(lib.cym_net_dns(self._mgr)).decode("utf-8", "surrogateescape")

    @dns_server.setter
    def dns_server(self, url: str) -> None:
        raw = to_cstr(url, "url")
        if not raw:
            raise ValueError("dns_server must be a URL such as 'udp://127.0.0.1:53'")
        self._check_open()
        self._check_thread()
        keep = ffi.new("char[]", raw)
        lib.cym_net_set_dns(self._mgr, keep, 1 if self._inside else 0)
        _DNS_URLS[self] = keep  # only now may the previous buffer go

    @property
    def dns_timeout(self) -> int:
        """DNS lookup timeout in milliseconds (3000 by default)."""
        self._check_open()
        return int(lib.cym_net_dns_timeout(self._mgr, -1))

    @dns_timeout.setter
    def dns_timeout(self, ms: int) -> None:
        value = to_int(ms, "ms", 0)
        self._check_open()
        self._check_thread()
        lib.cym_net_dns_timeout(self._mgr, value)


__all__ = ["NetConnectionMixin", "NetManagerMixin"]
