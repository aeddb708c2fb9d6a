"""The access log of the WSGI and ASGI servers (logger ``cymongoose.access``).

One INFO line per response, in the format of ``cymongoose serve`` plus the
request time: ``CLIENT - - "METHOD TARGET PROTO" STATUS BYTES SECONDS``.
``CLIENT`` is the address after trusted proxy headers; ``STATUS`` and
``BYTES`` are read from what the server wrote (``BYTES`` counts the body,
``-`` when there was none); ``SECONDS`` runs from the request head to the
last byte handed to Mongoose.  When the logger is not enabled for INFO at
the start of a request, that request costs one level check.
"""

import logging
import re
import time
from typing import Any, Optional

access_log = logging.getLogger("cymongoose.access")

_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f-\U0010ffff]')


def _quote(text: str) -> str:
    """``text`` made safe inside a log line's double quotes."""
    return _UNSAFE.sub(lambda m: "\\x%02x" % ord(m.group()) if ord(m.group()) < 256
                       else "\\u%04x" % ord(m.group()), text)


class AccessRecord:
    """What the access line of one exchange needs, filled in as it goes."""

    __slots__ = ("client", "request", "start", "status", "body", "head_done")

    def __init__(self, client: str, request: str) -> None:
        self.client = client
        self.request = request
        self.start = time.monotonic()
        self.status = "-"
        self.body = 0
        self.head_done = False

    def wrote(self, data: bytes) -> None:
        """Bytes of the response handed to Mongoose (head first)."""
        if self.head_done:
            self.body += len(data)
            return
        end = data.find(b"\r\n\r\n")
        if data.startswith(b"HTTP/1.") and len(data) >= 12:
            self.status = data[9:12].decode("latin-1")
        if end >= 0:
            self.head_done = True
            self.body += len(data) - end - 4

    def done(self) -> None:
        """The exchange ended: log its line."""
        access_log.info('%s - - "%s" %s %s %.6f', self.client, self.request, self.status,
                        self.body or "-", time.monotonic() - self.start)


def access_record(hm: Any, client: str) -> Optional[AccessRecord]:
    """A record for the request ``hm`` from ``client``, or None when the
    access log is off."""
    if not access_log.isEnabledFor(logging.INFO):
        return None
    target = hm.uri + ("?" + hm.query if hm.query and "?" not in hm.uri else "")
    return AccessRecord(_quote(client), "%s %s %s" % (
        _quote(hm.method), _quote(target), _quote(hm.proto or "HTTP/1.1")))
