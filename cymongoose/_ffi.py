"""The raw cffi layer: ``ffi`` and ``lib`` of the compiled extension.

Importing it applies the process-wide settings: Mongoose's own
logging starts silenced, and its wall clock is seeded from ``time.time()``
so that certificate dates check out without an SNTP round trip.
"""

import time

from ._mg_cffi import ffi, lib

lib.mg_log_level = 0
lib.mg_boot_timestamp_ms = int(time.time() * 1000) - lib.mg_millis()

__all__ = ["ffi", "lib"]
