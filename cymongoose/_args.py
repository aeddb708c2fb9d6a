"""Argument conversion shared by every public call."""

from typing import Any, Optional

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def to_bytes(data: Any) -> bytes:
    """Data-like argument: ``str`` is UTF-8 encoded, anything else ``bytes(obj)``."""
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if data is None:
        raise TypeError("cannot convert 'NoneType' object to bytes")
    return bytes(data)


def to_cstr(value: Any, name: str) -> bytes:
    """A ``str`` parameter, encoded as UTF-8 for a NUL-terminated C string."""
    if not isinstance(value, str):
        raise TypeError(
            "Argument '%s' has incorrect type (expected str, got %s)"
            % (name, type(value).__name__)
        )
    return value.encode("utf-8")


def to_int(value: Any, name: str, lo: int = _INT_MIN, hi: int = _INT_MAX) -> int:
    """A C integer parameter: ``TypeError`` for non-numbers, ``OverflowError`` out of range."""
    if isinstance(value, float):
        value = int(value)
    elif not isinstance(value, int):
        index = getattr(value, "__index__", None)
        if index is None:
            raise TypeError(
                "Argument '%s' must be an integer, got %s" % (name, type(value).__name__)
            )
        value = index()
    if not lo <= value <= hi:
        raise OverflowError("Argument '%s' out of range: %d" % (name, value))
    return int(value)


def text(raw: bytes) -> str:
    """Text read from a C buffer: UTF-8 with surrogateescape."""
    return raw.decode("utf-8", "surrogateescape")


def header_line(name: Any, value: Any) -> str:
    """One ``"name: value\\r\\n"`` line; CR, LF or NUL in either raise ``ValueError``."""
    k, v = str(name), str(value)
    for part, what in ((k, "name"), (v, "value")):
        if "\r" in part or "\n" in part or "\0" in part:
            raise ValueError(
                "Header %s contains illegal character (CR, LF, or NUL): %r" % (what, part)
            )
    return "%s: %s\r\n" % (k, v)


def optional_str(value: Optional[str], name: str) -> Optional[bytes]:
    """A ``str`` parameter that may be empty or ``None`` (then ``None``)."""
    if value is None or value == "":
        return None
    return to_cstr(value, name)
