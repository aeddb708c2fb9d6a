"""TLS: ``TlsOpts`` and ``Connection.tls_init``/``tls_free``.

cymongoose uses Mongoose's built-in TLS stack, with no OpenSSL.  What it
speaks (read from Mongoose 7.23's ``mongoose.c`` and checked by the tests):

* TLS 1.3 only; a peer limited to TLS 1.2 fails the handshake;
* one cipher suite, TLS_CHACHA20_POLY1305_SHA256, and one key exchange
  group, X25519;
* own key (a server's, or a client certificate's): EC on P-256, as SEC 1
  ``EC PRIVATE KEY`` or PKCS #8 ``PRIVATE KEY`` (signing
  ecdsa_secp256r1_sha256).  Mongoose also parses RSA keys, but 7.23 fails
  to sign with any of them, so ``tls_init`` refuses them up front.  No
  Ed25519, no P-384 keys, no encrypted keys;
* the peer's certificate: its key must be P-256 or RSA of 2048 to 4096
  bits; its chain may be signed with ECDSA on P-256 or P-384 or with RSA
  (PKCS #1 v1.5), using SHA-256 or SHA-384.

See ``docs/tls.md`` for a guide.
"""

import os
from typing import Any, Optional, Tuple

from ._carry import carried
from . import _pem
from ._ffi import lib
from ._host import ConnectionHost
from .errors import check

_INIT_TEXTS = {
    int(lib.CYM_E_TLS_ALREADY): "TLS is already initialised on this connection",
    int(lib.CYM_E_TLS_FREE_PENDING): "tls_free() takes effect at the next poll; "
                                     "call tls_init() after that",
}

_MAX_PATH = 4096
_PEM_MARK = "-----BEGIN"
_FILE_FIELDS = ("ca", "cert", "key")
_RSA_BROKEN = ("TlsOpts.key: Mongoose's built-in TLS cannot sign with this RSA key "
               "(Mongoose 7.23's RSA signing fails for every key); use an EC P-256 key")


def _is_path(value: Any) -> bool:
    """A ``str``/``bytes`` value that names a PEM file rather than holding PEM.

    It must not contain ``-----BEGIN`` (PEM text always does), must be one
    line, and must name an existing file.  DER bytes never pass: they hold
    NUL bytes, which no path does.
    """
    mark: Any = _PEM_MARK if isinstance(value, str) else _PEM_MARK.encode()
    newline: Any = "\n" if isinstance(value, str) else b"\n"
    if mark in value or newline in value or len(value) > _MAX_PATH:
        return False
    return os.path.isfile(value)


def _read(path: Any, field: str) -> bytes:
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ValueError("TlsOpts.%s: file %r is empty" % (field, os.fsdecode(path)))
    return data


def _construct(value: Any, field: str) -> bytes:
    """Constructor conversion, plus paths for ``ca``/``cert``/``key``."""
    file_ok = field in _FILE_FIELDS
    if file_ok and isinstance(value, os.PathLike):
        return _read(value, field)
    if not value:
        return b""
    if file_ok and isinstance(value, (str, bytes)) and _is_path(value):
        return _read(value, field)
    if isinstance(value, str):
        return value.encode("utf-8")
    if not isinstance(value, bytes):
        raise TypeError("Expected bytes, got %s" % type(value).__name__)
    return value


def _assign(value: Any, field: str) -> Optional[bytes]:
    """Assignment after construction: ``bytes`` or ``None``, plus paths."""
    file_ok = field in _FILE_FIELDS
    if file_ok and isinstance(value, os.PathLike):
        return _read(value, field)
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise TypeError("Expected bytes, got %s" % type(value).__name__)
    if file_ok and value and _is_path(value):
        return _read(value, field)
    return value


class TlsOpts:
    """TLS settings for :meth:`Connection.tls_init`.

    Args:
        ca: CA certificate(s), PEM (a bundle works on clients) or one DER
            certificate.  On a client it verifies the server's chain, and
            always does when set, ``skip_verification`` or not.  On a
            server it turns on client-certificate (two-way)
            authentication, with the first certificate only.  **A client
            without ``ca`` does not verify the server's chain at all.**
        cert: own certificate, PEM (followed by its chain, if any) or DER.
        key: private key of ``cert``: EC on P-256, as PEM (``EC PRIVATE
            KEY`` or PKCS #8 ``PRIVATE KEY``) or DER, not encrypted.  RSA
            keys are refused by ``tls_init``: Mongoose 7.23 cannot sign
            with them.
        name: client only: server name sent as SNI and checked against the
            certificate's SAN/CN whenever set, even with
            ``skip_verification``.  A certificate with an IP SAN equal to
            the connected address also passes.
        skip_verification: do not check the peer's CertificateVerify
            signature (its proof that it holds the certificate's key), and
            offer every signature algorithm, so that servers with keys
            Mongoose cannot verify (P-384, Ed25519) can be reached.  As
            measured with Mongoose 7.23 it does not turn off the ``ca``
            check.  **Insecure: for development only.**

    Conversion: a ``str`` is UTF-8 encoded, a falsy value
    becomes ``b""``, anything else must be ``bytes`` (``TypeError``
    otherwise).  After construction the byte fields accept only ``bytes``
    or ``None``; ``tls_init`` raises ``TypeError``
    for a field left at ``None``.

    Our addition: ``ca``, ``cert`` and ``key`` also accept the path of a
    PEM (or DER) file, read at once, so the attribute holds the file's
    bytes.  An ``os.PathLike`` is always a path.  A ``str`` (constructor
    only: assignment refuses ``str``) or ``bytes`` is a path when it
    contains no ``-----BEGIN`` marker, is a single line and names an
    existing file; otherwise it is the content itself.  Raises ``OSError``
    when a path cannot be read and ``ValueError`` when the file is empty.
    """

    __slots__ = ("_ca", "_cert", "_key", "_name", "_skip", "_ready")

    def __init__(self, ca: Any = None, cert: Any = None, key: Any = None,
                 name: Any = None, skip_verification: Any = False) -> None:
        self._ca: Optional[bytes] = _construct(ca, "ca")
        self._cert: Optional[bytes] = _construct(cert, "cert")
        self._key: Optional[bytes] = _construct(key, "key")
        self._name: Optional[bytes] = _construct(name, "name")
        self._skip = bool(skip_verification)
        self._ready: Optional[Tuple[bytes, bytes, bytes, bytes]] = None

    @property
    def ca(self) -> Optional[bytes]:
        """CA certificate(s) used to verify the peer (``b""`` for none)."""
        return self._ca

    @ca.setter
    def ca(self, value: Any) -> None:
        self._ca = _assign(value, "ca")
        self._ready = None

    @property
    def cert(self) -> Optional[bytes]:
        """Own certificate (and chain), ``b""`` for none."""
        return self._cert

    @cert.setter
    def cert(self, value: Any) -> None:
        self._cert = _assign(value, "cert")
        self._ready = None

    @property
    def key(self) -> Optional[bytes]:
        """Private key of ``cert``, ``b""`` for none."""
        return self._key

    @key.setter
    def key(self, value: Any) -> None:
        self._key = _assign(value, "key")
        self._ready = None

    @property
    def name(self) -> Optional[bytes]:
        """Server name for SNI and the host name check (clients), ``b""`` for none."""
        return self._name

    @name.setter
    def name(self, value: Any) -> None:
        self._name = _assign(value, "name")
        self._ready = None

    @property
    def skip_verification(self) -> bool:
        """Skip the certificate chain check. Insecure: development only."""
        return self._skip

    @skip_verification.setter
    def skip_verification(self, value: Any) -> None:
        self._skip = bool(value)

    def _prepared(self) -> Tuple[bytes, bytes, bytes, bytes]:
        """``(ca, cert, key, name)`` checked and canonical, cached until a field changes.

        Raises ``TypeError`` for a field set to ``None`` and ``ValueError``
        for material Mongoose could not use.
        """
        ready = self._ready
        if ready is None:
            fields = []
            for field in ("ca", "cert", "key", "name"):
                value = getattr(self, "_" + field)
                if value is None:
                    raise TypeError("TlsOpts.%s is None; use b\"\" for no value" % field)
                fields.append(value)
            ca, cert, key, name = fields
            ready = (
                _pem.certificates(ca, "ca") if ca else b"",
                _pem.certificates(cert, "cert") if cert else b"",
                _pem.private_key(key) if key else b"",
                _pem.server_name(name),
            )
            if ready[2] and not lib.cym_tls_key_signs(ready[2], len(ready[2])):
                raise ValueError(_RSA_BROKEN)
            self._ready = ready
        return ready

    def __reduce__(self) -> Any:
        return (_restore, (self._ca, self._cert, self._key, self._name, self._skip))


def _restore(ca: Optional[bytes], cert: Optional[bytes], key: Optional[bytes],
             name: Optional[bytes], skip: bool) -> TlsOpts:
    """Unpickle a ``TlsOpts`` with its fields as they were, no conversion."""
    opts = TlsOpts.__new__(TlsOpts)
    opts._ca, opts._cert, opts._key, opts._name = ca, cert, key, name
    opts._skip = bool(skip)
    opts._ready = None
    return opts


class TlsConnectionMixin(ConnectionHost):
    """``tls_init`` and ``tls_free`` for :class:`Connection`."""

    __slots__ = ()

    @carried
    def tls_init(self, opts: TlsOpts) -> None:
        """Start TLS on this connection (Mongoose ``mg_tls_init``).

        Call it in ``MG_EV_ACCEPT`` on a server's accepted connection and in
        ``MG_EV_CONNECT`` on a client; a URL scheme (``https://``,
        ``wss://``, ``mqtts://``) never starts TLS by itself.  On a listener
        it does nothing for accepted connections.  Once the handshake
        completes, ``MG_EV_TLS_HS`` fires, before any data.  Our addition:
        servers get it too (Mongoose's built-in stack fires it on clients
        only).

        Handshake failures (untrusted certificate, wrong host name, a TLS
        1.2-only peer, a peer that is not speaking TLS, a peer that hangs
        up) arrive as ``MG_EV_ERROR`` with a readable message, then the
        connection closes; some errors fire inside this call.  Mongoose
        speaks TLS 1.3 only (see the module docstring for keys and curves).

        Raises:
            TypeError: ``opts`` is not a ``TlsOpts`` (``None``
                included), or one of its fields is ``None``.
            ValueError: ``ca``, ``cert`` or ``key`` is malformed or of a
                kind Mongoose does not support, or ``name`` holds a NUL.
            RuntimeError: the connection is closed, already has TLS, or a ``tls_free`` made
                inside the event loop has not taken effect yet.
        """
        if not isinstance(opts, TlsOpts):
            raise TypeError("Argument 'opts' has incorrect type (expected TlsOpts, got %s)"
                            % type(opts).__name__)
        ca, cert, key, name = opts._prepared()
        c = self._live()
        with self._mgr._calling_c:
            rc = lib.cym_tls_init(c, ca, len(ca), cert, len(cert), key, len(key),
                                  name, len(name), 1 if opts._skip else 0)
        if rc:
            check(rc, _INIT_TEXTS)

    @carried
    def tls_free(self) -> None:
        """Drop this connection's TLS state (Mongoose ``mg_tls_free``).

        Rarely needed: the state is freed on close.  The connection then
        carries on in plain text and ``is_tls`` turns False.  Outside the
        event loop this happens at once; inside a handler it happens at the
        connection's next poll (freeing at once could pull the state from
        under Mongoose's running handshake).  A no-op on a connection
        without TLS.

        Raises:
            RuntimeError: the connection is closed.
        """
        c = self._live()
        mgr = self._mgr
        lib.cym_tls_free(c, 0 if mgr is not None and mgr._inside else 1)
