"""Options of ``serve_dir``/``serve_file`` turned into one ``cym_serve`` call.

The serving itself (ranges, conditional requests, ``Vary``, safe paths,
streaming) is C: cymongoose/_csrc/static.c.
"""

from fnmatch import fnmatchcase
from typing import Any, List, Mapping, Optional, Union

from ._args import to_cstr
from ._ffi import ffi, lib

CacheControl = Union[None, str, Mapping[str, str]]
_CACHE_CONTROL_MAX = 256  # static.c formats the header line in a fixed buffer

#: Types Mongoose's own table lacks; the caller's ``mime_types`` come first
#: and win (the first matching ``ext=type`` entry is used).
EXTRA_MIME_TYPES = ",".join((
    "wasm=application/wasm", "avif=image/avif", "woff2=font/woff2",
    "mjs=text/javascript; charset=utf-8", "json=application/json",
    "svg=image/svg+xml", "webp=image/webp", "xml=application/xml",
    "md=text/markdown; charset=utf-8", "webm=video/webm", "ogg=audio/ogg",
    "map=application/json", "bin=application/octet-stream", "tar=application/x-tar",
))
_EXTRA = EXTRA_MIME_TYPES.encode("ascii")


def _cache_control(rule: CacheControl, uri: str) -> bytes:
    """The ``Cache-Control`` value for ``uri``: a string, or the first matching pattern's."""
    if rule is None:
        return b""
    if isinstance(rule, str):
        value = rule
    elif isinstance(rule, Mapping):
        value = next((v for pattern, v in rule.items() if fnmatchcase(uri, pattern)), "")
    else:
        raise TypeError("cache_control must be a str, a mapping or None")
    raw = to_cstr(value, "cache_control")
    if any(b < 0x20 or b == 0x7F for b in raw):
        raise ValueError("cache_control must not contain control characters")
    if len(raw) > _CACHE_CONTROL_MAX:
        raise ValueError("cache_control is longer than %d bytes" % _CACHE_CONTROL_MAX)
    return raw


def serve(c: Any, hm: Any, uri: str, file: Optional[bytes], fields: Mapping[str, str],
          cache_control: CacheControl, follow_symlinks: bool, dotfiles: bool) -> None:
    """Answer the request ``hm`` on connection ``c`` from a directory or one ``file``.

    ``file`` is the C string of ``serve_file``'s path, ``None`` for ``serve_dir``.
    """
    opts = ffi.new("struct mg_http_serve_opts *")
    keep: List[Any] = []
    for field, value in fields.items():
        raw = to_cstr(value, field)
        if field == "mime_types":
            raw = raw + b"," + _EXTRA if raw else _EXTRA
        if raw:
            cbuf = ffi.new("char[]", raw)
            keep.append(cbuf)  # alive until the C call returns
            setattr(opts, field, cbuf)
    path = file if file is not None else ffi.NULL
    flags = (0 if follow_symlinks else lib.CYM_STATIC_NO_SYMLINKS) | \
        (0 if dotfiles else lib.CYM_STATIC_NO_DOTFILES)
    lib.cym_serve(c, hm, opts, path, _cache_control(cache_control, uri), flags)
