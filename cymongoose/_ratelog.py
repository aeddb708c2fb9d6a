"""A per-peer rate limit for log lines about rejected input.

A client that sends bad requests in a loop must not be able to flood the
log: each peer (its IP address) may log ``burst`` lines per ``window``
seconds.  Further lines in the window are counted, not written, and the
peer's next line after the window carries that count.
"""

import threading
import time
from typing import Callable, Dict, List, Optional

BURST = 5
WINDOW = 10.0
MAX_PEERS = 4096  # peers tracked at once; beyond it expired ones are dropped


class PeerLogLimiter:
    """Decides which lines about a peer are logged (thread-safe)."""

    def __init__(self, burst: int = BURST, window: float = WINDOW,
                 max_peers: int = MAX_PEERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = burst
        self._window = window
        self._max_peers = max_peers
        self._clock = clock
        self._lock = threading.Lock()
        # peer -> [window start, lines logged in it, lines suppressed in it]
        self._peers: Dict[str, List[float]] = {}

    def admit(self, peer: str) -> Optional[int]:
        """``None`` to drop this line; otherwise how many lines of this peer
        were suppressed since its last logged one (usually 0)."""
        now = self._clock()
        with self._lock:
            st = self._peers.get(peer)
            if st is None or now - st[0] >= self._window:
                suppressed = int(st[2]) if st is not None else 0
                if st is None and len(self._peers) >= self._max_peers:
                    self._prune(now)
                self._peers[peer] = [now, 1, 0]
                return suppressed
            if st[1] < self._burst:
                st[1] += 1
                return 0
            st[2] += 1
            return None

    def reset(self) -> None:
        """Forget every peer (their suppressed counts too)."""
        with self._lock:
            self._peers.clear()

    def _prune(self, now: float) -> None:
        for peer in [p for p, st in self._peers.items() if now - st[0] >= self._window]:
            del self._peers[peer]
        if len(self._peers) >= self._max_peers:  # a flood from many peers at once
            self._peers.clear()


def peer_of_line(line: str) -> str:
    """The peer's address in a line ending ``": peer HOST:PORT, connection N"``."""
    rest = line.rpartition(": peer ")[2]
    return rest.split(",", 1)[0].rpartition(":")[0]
