"""``--cert``, ``--key`` and ``--ca``: TLS options of every listening command."""

import argparse
from typing import Optional

from ._cli_util import UsageError
from .tls import TlsOpts


def add_tls_options(parser: argparse.ArgumentParser, scheme: str) -> None:
    """Add ``--cert``, ``--key`` and ``--ca`` to a command listening on ``scheme``://."""
    parser.add_argument("--cert", metavar="FILE",
                        help="PEM certificate (followed by its chain) for %s://" % scheme)
    parser.add_argument("--key", metavar="FILE", help="PEM private key of --cert")
    parser.add_argument("--ca", metavar="FILE",
                        help="PEM CA certificate(s): require client certificates they signed")


def _read_pem(path: str, option: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise UsageError("%s: cannot read %s: %s" % (option, path, exc.strerror)) from None
    if b"-----BEGIN" not in data:
        raise UsageError("%s: not a PEM file: %s" % (option, path))
    return data


def tls_options(url: str, args: argparse.Namespace, scheme: str) -> Optional[TlsOpts]:
    """The ``TlsOpts`` the options ask for, checked; ``None`` without them.

    Raises ``UsageError`` for ``--cert`` without ``--key`` (or the reverse),
    ``--ca`` alone, options with a URL that is not ``scheme``:// (or none
    with one), unreadable files, or material TLS cannot use.
    """
    cert, key, ca = args.cert, args.key, args.ca
    if (cert is None) != (key is None):
        raise UsageError("--cert and --key go together")
    secure = url.lower().startswith(scheme + "://")
    if secure and cert is None:
        raise UsageError("a %s:// URL needs --cert and --key" % scheme)
    if cert is None:
        if ca is not None:
            raise UsageError("--ca needs --cert and --key")
        return None
    if not secure:
        raise UsageError("--cert/--key need a %s:// URL" % scheme)
    opts = TlsOpts(cert=_read_pem(cert, "--cert"), key=_read_pem(key, "--key"),
                   ca=_read_pem(ca, "--ca") if ca is not None else None)
    try:
        opts._prepared()  # the checks tls_init makes, before any client comes
    except ValueError as exc:
        raise UsageError("--cert/--key: %s" % exc) from None
    return opts
