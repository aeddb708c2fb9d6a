"""Request body readers of the HTTP server core.

A body that is not buffered when its head arrives is streamed: the server
feeds each reader the bytes received so far and gets back the body bytes
they carry.  Every reader has the same interface (``BodyReader``):

* ``take(available)``: how many of the ``available`` received bytes to
  hand to ``feed`` (a length-delimited body never reads past its end);
* ``feed(data)``: ``(body bytes, finished, bytes of data used)``.  Bytes
  not used belong to the next (pipelined) request.

A malformed body raises ``BodyError`` with the status to answer.
"""

from typing import List, Protocol, Tuple

#: What ``feed`` returns: body bytes, finished, bytes of the input used.
Fed = Tuple[bytes, bool, int]


class BodyError(Exception):
    """A request body that cannot be accepted; ``status`` says why."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class BodyReader(Protocol):
    """The interface every body reader implements (see the module docstring)."""

    def take(self, available: int) -> int: ...

    def feed(self, data: bytes) -> Fed: ...


class LengthBody:
    """A body delimited by ``Content-Length``."""

    __slots__ = ("remaining",)

    def __init__(self, length: int) -> None:
        self.remaining = length

    def take(self, available: int) -> int:
        return min(available, self.remaining)

    def feed(self, data: bytes) -> Fed:
        self.remaining -= len(data)
        return data, self.remaining == 0, len(data)


_HEX = b"0123456789abcdefABCDEF"
_CTL = bytes(range(9)) + bytes(range(10, 32)) + b"\x7f"  # all but HTAB
_MAX_LINE = 8192


class ChunkedBody:
    """A ``Transfer-Encoding: chunked`` body, decoded incrementally.

    Raises ``BodyError(400)`` for a malformed stream: bare LF line ends (as
    Mongoose refuses them), whitespace before a chunk's size or after it
    unless an extension follows, a control character in an extension.
    Raises ``BodyError(413)`` once the decoded size passes ``limit``.
    Extensions and trailers are read and ignored.
    """

    __slots__ = ("state", "left", "line", "limit", "total")

    def __init__(self, limit: int) -> None:
        self.state = 0      # 0 size line, 1 data, 2 CRLF after data, 3 trailers
        self.left = 0
        self.line = b""
        self.limit = limit
        self.total = 0

    def take(self, available: int) -> int:
        return available

    def feed(self, data: bytes) -> Fed:
        out: List[bytes] = []
        i, n = 0, len(data)
        while i < n:
            if self.state == 1:
                k = min(self.left, n - i)
                out.append(data[i:i + k])
                i += k
                self.left -= k
                if self.left == 0:
                    self.state = 2
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self.line += data[i:]
                if len(self.line) > _MAX_LINE:
                    raise BodyError(400)
                i = n
                break
            line = self.line + data[i:j]
            self.line = b""
            i = j + 1
            if not line.endswith(b"\r"):
                raise BodyError(400)
            line = line[:-1]
            if self.state == 2:
                if line:
                    raise BodyError(400)
                self.state = 0
            elif self.state == 0:
                # RFC 9112 7.1: hex digits, then whitespace only before an
                # extension (";"), which holds no control character.  int()
                # would also take "0x", "_", signs and surrounding spaces,
                # which a proxy in front may read otherwise.
                size, semi, ext = line.partition(b";")
                if semi:
                    size = size.rstrip(b" \t")
                if (not size or size.strip(_HEX)
                        or len(ext.translate(None, _CTL)) != len(ext)):
                    raise BodyError(400)
                self.left = int(size, 16)
                self.total += self.left
                if self.total > self.limit:
                    raise BodyError(413)
                self.state = 1 if self.left else 3
            elif not line:  # the blank line after the trailers
                return b"".join(out), True, i
        return b"".join(out), False, i
