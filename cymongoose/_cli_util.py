"""Helpers shared by the command-line subcommands: argument checks and the banner."""

import argparse
import ipaddress
from typing import Sequence
from urllib.parse import urlsplit

from .connection import Connection


class UsageError(ValueError):
    """A bad command-line argument: reported as a usage error, exit status 2."""


def check_url(url: str, schemes: Sequence[str]) -> str:
    """Check that ``url`` is ``SCHEME://HOST[:PORT]`` with one of ``schemes``.

    Returns ``url`` unchanged.  Raises ``UsageError`` naming what is wrong
    (unknown scheme, no host, a port that is not a number in 0..65535).
    Whether the host can be bound is found out only when listening.
    """
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a malformed or out-of-range port
    except ValueError as exc:
        raise UsageError("bad URL %r: %s" % (url, exc)) from None
    if parts.scheme not in schemes:
        raise UsageError("bad URL %r: expected %s" % (
            url, " or ".join("%s://HOST:PORT" % s for s in schemes)))
    if not parts.hostname:
        raise UsageError("bad URL %r: no host" % url)
    return url


def listen_url(listener: Connection, scheme: str) -> str:
    """``scheme://host:port`` of a listener, with the real port (after port 0)."""
    addr = listener.local_addr
    if addr is None:
        raise RuntimeError("the listener is closed")
    host, port, is_ipv6 = addr
    return "%s://%s:%d" % (scheme, "[%s]" % short_ip(host) if is_ipv6 else host, port)


def short_ip(host: str) -> str:
    """An IPv6 address in its short form (``::1``); anything else unchanged."""
    if ":" not in host:
        return host
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def banner(what: str, url: str) -> None:
    """Print where the server listens (tests and users read this line)."""
    print("cymongoose %s on %s/" % (what, url))
    print("  Press Ctrl+C to stop", flush=True)


def positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not an integer: %r" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
