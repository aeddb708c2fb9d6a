"""Process metrics for the live chart: CPU, memory, rates."""

import os
import resource
import time
from typing import Dict, Optional


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; else the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Rates:
    """CPU share and per-second rates between two samples."""

    def __init__(self) -> None:
        self._last: Optional[Dict[str, float]] = None

    def sample(self, requests: int, messages: int) -> Dict[str, float]:
        times = os.times()
        now = {"t": time.monotonic(), "cpu": times.user + times.system,
               "requests": float(requests), "messages": float(messages)}
        last, self._last = self._last, now
        if last is None or now["t"] <= last["t"]:
            return {"cpu": 0.0, "rps": 0.0, "mps": 0.0}
        span = now["t"] - last["t"]
        return {"cpu": round(100.0 * (now["cpu"] - last["cpu"]) / span, 1),
                "rps": round((now["requests"] - last["requests"]) / span, 1),
                "mps": round((now["messages"] - last["messages"]) / span, 1)}
