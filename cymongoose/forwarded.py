"""Reverse-proxy headers: who the client really is, when a trusted proxy says so.

Behind nginx or HAProxy every request comes from the proxy.  The proxy
names the client in ``X-Forwarded-For`` / ``X-Forwarded-Proto`` /
``X-Forwarded-Host`` or in RFC 7239 ``Forwarded``.  Those headers are
believed only when the connection's peer is in ``forwarded_allow_ips``
(default ``127.0.0.1``, as uvicorn); from any other peer they change
nothing.

With several proxies the hops are read from the right: each hop that is
itself trusted is skipped, and the first untrusted one is the client (the
leftmost when every hop is trusted).  ``Forwarded`` wins over the
``X-Forwarded-*`` headers when both are present.  The scheme and host of
the client's hop come from the same element of ``Forwarded`` or, for
``X-Forwarded-Proto``/``-Host``, from the value at the client's position
when the lists line up with ``X-Forwarded-For`` (else their first value).

The functions here are pure: :class:`Front` turns headers into a
:class:`Origin`, and the WSGI environ and ASGI scope builders apply it.
"""

import ipaddress
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

__all__ = ["Front", "Origin", "parse_forwarded", "DEFAULT_ALLOW"]

#: Trusted by default: a proxy on the same machine.
DEFAULT_ALLOW = "127.0.0.1"

_SCHEMES = frozenset(("http", "https", "ws", "wss"))
_HOST = re.compile(r"[A-Za-z0-9._\-]{1,253}(?::\d{1,5})?\Z|\[[0-9A-Fa-f:.]{2,45}\](?::\d{1,5})?\Z")
_TOKEN = re.compile(r"[A-Za-z0-9._\-]{1,64}\Z")  # "unknown", "_hidden" (RFC 7239 section 6)
_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*')

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class Origin:
    """Where a request came from, as the client saw it: ``ip`` (the client's
    address, or an RFC 7239 token such as ``unknown``), ``port`` (0 when the
    proxy did not say), ``scheme`` (``http``/``https``/``ws``/``wss``, None:
    unchanged) and ``host`` (the ``Host`` the client sent, None: unchanged)."""

    __slots__ = ("ip", "port", "scheme", "host")

    def __init__(self, ip: str, port: int, scheme: Optional[str], host: Optional[str]) -> None:
        self.ip = ip
        self.port = port
        self.scheme = scheme
        self.host = host

    def __repr__(self) -> str:
        return "Origin(%r, %d, %r, %r)" % (self.ip, self.port, self.scheme, self.host)


def parse_forwarded(value: str) -> List[Dict[str, str]]:
    """The elements of an RFC 7239 ``Forwarded`` value, left to right.

    Each element maps lower-case parameter names (``for``, ``proto``,
    ``host``, ``by``) to unquoted values.  Raises ``ValueError`` for a
    malformed value.
    """
    elements: List[Dict[str, str]] = []
    pos, end = 0, len(value)
    element: Dict[str, str] = {}
    while pos < end:
        found = _PAIR.match(value, pos)
        if found is None or not found.group(2):
            raise ValueError("malformed Forwarded header: %r" % value)
        raw = found.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        element[found.group(1).lower()] = raw
        pos = found.end()
        if pos < end and value[pos] == ";":
            pos += 1
        elif pos < end and value[pos] == ",":
            elements.append(element)
            element = {}
            pos += 1
        elif pos < end:
            raise ValueError("malformed Forwarded header: %r" % value)
    if element:
        elements.append(element)
    return elements


def _split_node(node: str) -> Tuple[str, int]:
    """``ip``/``ip:port``/``[v6]:port`` -> (ip, port); RFC 7239 tokens kept."""
    node = node.strip()
    port = 0
    if node.startswith("["):
        close = node.find("]")
        host, rest = node[1:close], node[close + 1:]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif node.count(":") == 1:
        host, _, rest = node.partition(":")
        if rest.isdigit():
            port = int(rest)
    else:
        host = node
    return host, port if port < 65536 else 0


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _valid_host(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    value = value.strip()
    return value if _HOST.match(value) else None


def _valid_scheme(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    value = value.strip().lower()
    return value if value in _SCHEMES else None


class Front:
    """The proxies in front of a server, and the mount prefix.

    Args:
        forwarded_allow_ips: the peers whose proxy headers are believed: a
            comma-separated string or a sequence of IP addresses and
            networks (``10.0.0.0/8``, ``::1``), ``"*"`` for every peer,
            ``""``/``None`` for none.
        root_path: the prefix the application is mounted under
            (``SCRIPT_NAME``, ASGI ``root_path``), e.g. ``/api``; ``""``
            for none.

    Raises ``ValueError`` for an entry that is not an address or network,
    or a ``root_path`` that does not start with ``/`` (or ends with one).
    """

    __slots__ = ("_all", "_nets", "_cache", "root_path", "active")

    def __init__(self, forwarded_allow_ips: Union[str, Sequence[str], None] = DEFAULT_ALLOW,
                 root_path: str = "") -> None:
        if forwarded_allow_ips is None:
            entries: Iterable[str] = ()
        elif isinstance(forwarded_allow_ips, str):
            entries = forwarded_allow_ips.split(",")
        else:
            entries = forwarded_allow_ips
        self._all = False
        nets: List[_Network] = []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            if entry == "*":
                self._all = True
                continue
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError("forwarded_allow_ips: not an IP address or network: %r"
                                 % entry) from None
        self._nets = tuple(nets)
        self._cache: Dict[str, bool] = {}
        if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
            raise ValueError("root_path must start with '/' and not end with one: %r"
                             % root_path)
        self.root_path = root_path
        #: False when nothing can change: no trusted peer and no root path.
        self.active = bool(self._all or self._nets or root_path)

    def trusts(self, ip: str) -> bool:
        """Whether proxy headers from peer ``ip`` are believed."""
        known = self._cache.get(ip)
        if known is not None:
            return known
        if self._all:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        mapped = getattr(addr, "ipv4_mapped", None)
        ok = any(addr in net or (mapped is not None and mapped in net) for net in self._nets)
        if len(self._cache) < 4096:  # bounded: peers are many, proxies few
            self._cache[ip] = ok
        return ok

    def origin(self, peer: str, forwarded: Optional[str], xff: Optional[str],
               xproto: Optional[str], xhost: Optional[str]) -> Optional[Origin]:
        """The client's origin from the proxy headers of a request from ``peer``.

        ``None`` when ``peer`` is not trusted or no usable header is set;
        then the request is taken as it came.  A malformed ``Forwarded``
        header is ignored in favour of the ``X-Forwarded-*`` ones.
        """
        if not self.trusts(peer):
            return None
        if forwarded:
            try:
                elements = parse_forwarded(forwarded)
            except ValueError:
                elements = []
            if elements:
                index = self._client_index([e.get("for", "") for e in elements])
                chosen = elements[index]
                ip, port = _split_node(chosen.get("for", ""))
                if not (_is_ip(ip) or _TOKEN.match(ip)):
                    ip, port = peer, 0
                return Origin(ip, port, _valid_scheme(chosen.get("proto")),
                              _valid_host(chosen.get("host")))
        if not (xff or xproto or xhost):
            return None
        ip, port, index, count = peer, 0, 0, 0
        if xff:
            hops = [h.strip() for h in xff.split(",")]
            count = len(hops)
            index = self._client_index(hops)
            host, hport = _split_node(hops[index])
            if _is_ip(host) or _TOKEN.match(host):
                ip, port = host, hport
        return Origin(ip, port, _valid_scheme(_pick(xproto, index, count)),
                      _valid_host(_pick(xhost, index, count)))

    def _client_index(self, hops: List[str]) -> int:
        """Position of the client: the rightmost hop that is not a trusted proxy."""
        for i in range(len(hops) - 1, 0, -1):
            if not self.trusts(_split_node(hops[i])[0]):
                return i
        return 0

    # -- the builders' hooks (only called when ``active``) -----------------------

    def apply_environ(self, environ: Dict[str, Any]) -> None:
        """Apply the proxy headers and ``root_path`` to a WSGI environ."""
        root = self.root_path
        if root:
            environ["SCRIPT_NAME"] = root
            path = environ["PATH_INFO"]
            if path == root or path.startswith(root + "/"):
                environ["PATH_INFO"] = path[len(root):]
        if not self.trusts(environ["REMOTE_ADDR"]):
            return
        get = environ.get
        found = self.origin(environ["REMOTE_ADDR"], get("HTTP_FORWARDED"),
                            get("HTTP_X_FORWARDED_FOR"), get("HTTP_X_FORWARDED_PROTO"),
                            get("HTTP_X_FORWARDED_HOST"))
        if found is None:
            return
        environ["REMOTE_ADDR"] = environ["REMOTE_HOST"] = found.ip
        environ["REMOTE_PORT"] = str(found.port)
        if found.scheme is not None:
            environ["wsgi.url_scheme"] = "https" if found.scheme in ("https", "wss") else "http"
        if found.host is not None:
            environ["HTTP_HOST"] = found.host

    def apply_scope(self, scope: Dict[str, Any]) -> None:
        """Apply the proxy headers and ``root_path`` to an ASGI scope."""
        root = self.root_path
        if root:
            scope["root_path"] = root
            if not (scope["path"] == root or scope["path"].startswith(root + "/")):
                scope["path"] = root + scope["path"]
                scope["raw_path"] = root.encode("utf-8") + scope["raw_path"]
        client = scope["client"]
        if not self.trusts(client[0]):
            return
        wanted = {b"forwarded": None, b"x-forwarded-for": None, b"x-forwarded-proto": None,
                  b"x-forwarded-host": None}
        headers = scope["headers"]
        for name, value in headers:
            if name in wanted:
                text = value.decode("latin-1")
                old = wanted[name]
                wanted[name] = text if old is None else old + ", " + text
        found = self.origin(client[0], wanted[b"forwarded"], wanted[b"x-forwarded-for"],
                            wanted[b"x-forwarded-proto"], wanted[b"x-forwarded-host"])
        if found is None:
            return
        scope["client"] = [found.ip, found.port]
        websocket = scope["type"] == "websocket"
        if found.scheme is not None:
            secure = found.scheme in ("https", "wss")
            scope["scheme"] = ("wss" if secure else "ws") if websocket else \
                ("https" if secure else "http")
        if found.host is not None:
            scope["server"] = list(_host_port(found.host, scope["scheme"]))
            host = [b"host", found.host.encode("latin-1")]
            scope["headers"] = [host] + [pair for pair in headers if pair[0] != b"host"]


def _pick(value: Optional[str], index: int, count: int) -> Optional[str]:
    """The client's entry of an ``X-Forwarded-Proto``/``-Host`` list."""
    if not value:
        return None
    parts = value.split(",")
    return parts[index] if len(parts) == count else parts[0]


def _host_port(host: str, scheme: str) -> Tuple[str, int]:
    default = 443 if scheme in ("https", "wss") else 80
    if host.startswith("["):
        close = host.find("]")
        rest = host[close + 1:]
        return host[1:close], int(rest[1:]) if rest.startswith(":") else default
    name, _, port = host.partition(":")
    return name, int(port) if port else default


def front_of(forwarded_allow_ips: Union[str, Sequence[str], None],
             root_path: str) -> Optional[Front]:
    """A ``Front`` for a server, or None when it would change nothing."""
    front = Front(forwarded_allow_ips, root_path)
    return front if front.active else None
