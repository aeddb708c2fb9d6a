"""Login sessions and the rate limit on wrong passwords."""

import hmac
import secrets
import time
from typing import Dict, List, Optional

#: Wrong passwords a client may try within WINDOW seconds.
MAX_FAILURES = 5
WINDOW = 60.0
#: Seconds a session lives without use.
SESSION_TTL = 12 * 3600.0


class Auth:
    """One password; sessions are random tokens kept in memory."""

    def __init__(self, password: str) -> None:
        if not password:
            raise ValueError("the dashboard password must not be empty")
        self._password = password.encode("utf-8")
        self._sessions: Dict[str, float] = {}  # token -> last use
        self._failures: Dict[str, List[float]] = {}  # client ip -> failure times

    def retry_after(self, client: str) -> int:
        """Seconds ``client`` must wait before trying again; 0 when it may."""
        now = time.monotonic()
        recent = [t for t in self._failures.get(client, []) if now - t < WINDOW]
        if recent:
            self._failures[client] = recent
        else:
            self._failures.pop(client, None)
        if len(recent) < MAX_FAILURES:
            return 0
        return max(1, int(WINDOW - (now - recent[0])) + 1)

    def login(self, client: str, password: str) -> Optional[str]:
        """A new session token, or None for a wrong password (counted)."""
        if hmac.compare_digest(password.encode("utf-8"), self._password):
            self._failures.pop(client, None)
            token = secrets.token_urlsafe(32)
            self._sessions[token] = time.monotonic()
            return token
        self._failures.setdefault(client, []).append(time.monotonic())
        if len(self._failures) > 10000:  # bounded: forget the oldest clients
            for ip in list(self._failures)[:1000]:
                del self._failures[ip]
        return None

    def check(self, token: Optional[str]) -> bool:
        """Whether ``token`` is a live session (its use extends it)."""
        if not token:
            return False
        last = self._sessions.get(token)
        now = time.monotonic()
        if last is None or now - last > SESSION_TTL:
            self._sessions.pop(token, None)
            return False
        self._sessions[token] = now
        return True

    def logout(self, token: Optional[str]) -> None:
        if token:
            self._sessions.pop(token, None)


def cookie_token(cookie_header: Optional[str], name: str = "session") -> Optional[str]:
    """The value of cookie ``name`` in a ``Cookie`` header."""
    for part in (cookie_header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
