"""Who may connect to ``MqttBroker`` and which topics they may use.

Passwords come from a file in mosquitto's format (made by
``mosquitto_passwd``) or from a callback; topic rights from a file in
mosquitto's ``acl_file`` format or from a callback.
"""

import base64
import binascii
import hashlib
import hmac
from typing import Callable, Dict, List, Optional, Tuple

from ._broker_packets import topic_matches

#: ``authenticate(client_id, username, password) -> bool``; username and
#: password are ``None`` when CONNECT leaves them out.
Authenticate = Callable[[str, Optional[str], Optional[bytes]], bool]
#: ``acl(client_id, username, topic, access) -> bool`` with ``access`` one of
#: ``"read"`` (receive a message on ``topic``), ``"write"`` (publish to it)
#: and ``"subscribe"`` (``topic`` is then a filter).
Acl = Callable[[str, Optional[str], str, str], bool]


def load_password_file(path: str) -> Dict[str, str]:
    """``username -> hash`` from a mosquitto password file.

    Lines are ``username:$7$iterations$salt$hash`` (PBKDF2-SHA512,
    mosquitto 2's default) or ``username:$6$salt$hash`` (SHA-512 of password
    plus salt, mosquitto 1.x), with base64 fields.  Blank lines and ``#``
    comments are skipped; a line of another shape raises ``ValueError``
    naming the line.
    """
    users: Dict[str, str] = {}
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, hashed = line.partition(":")
            if not sep or not name or _parse_hash(hashed) is None:
                raise ValueError("%s:%d: not a mosquitto password line" % (path, lineno))
            users[name] = hashed
    return users


def _parse_hash(hashed: str) -> Optional[Tuple[int, bytes, bytes]]:
    """``(iterations, salt, digest)``; iterations 0 means the plain SHA-512 form."""
    parts = hashed.split("$")
    try:
        if len(parts) == 5 and parts[1] == "7":
            return int(parts[2]), base64.b64decode(parts[3]), base64.b64decode(parts[4])
        if len(parts) == 4 and parts[1] == "6":
            return 0, base64.b64decode(parts[2]), base64.b64decode(parts[3])
    except (ValueError, binascii.Error):
        return None
    return None


def check_password(hashed: str, password: bytes) -> bool:
    """Whether ``password`` matches a mosquitto password hash."""
    parsed = _parse_hash(hashed)
    if parsed is None:
        return False
    iterations, salt, digest = parsed
    if iterations:
        got = hashlib.pbkdf2_hmac("sha512", password, salt, iterations)
    else:
        got = hashlib.sha512(password + salt).digest()
    return hmac.compare_digest(got, digest)


_ACCESS = {"read": ("read", "subscribe"), "write": ("write",),
           "readwrite": ("read", "subscribe", "write"), "deny": ()}
_Rule = Tuple[str, Tuple[str, ...], bool, bool]  # topic, accesses, deny, a "pattern" line


class AclFile:
    """Topic rights from a file in mosquitto's ``acl_file`` format.

    ``topic [read|write|readwrite|deny] TOPIC`` lines before any ``user``
    line apply to anonymous clients; those after ``user NAME`` to that user;
    ``pattern [access] TOPIC`` lines to everyone, with ``%c`` replaced by
    the client id and ``%u`` by the username.  The access defaults to
    ``readwrite``.  A matching ``deny`` wins; what no rule grants is
    refused.  A subscription is allowed when a rule granting ``read``
    matches the filter itself (``+`` and ``#`` in a rule cover the same
    wildcards in the filter).
    """

    def __init__(self, path: str) -> None:
        self.anonymous: List[_Rule] = []
        self.users: Dict[str, List[_Rule]] = {}
        self.patterns: List[_Rule] = []
        current = self.anonymous
        with open(path, "r", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                words = line.split(None, 2)
                if not words or words[0].startswith("#"):
                    continue
                keyword = words[0]
                if keyword == "user" and len(words) >= 2:
                    current = self.users.setdefault(line.split(None, 1)[1].strip(), [])
                    continue
                if keyword not in ("topic", "pattern") or len(words) < 2:
                    raise ValueError("%s:%d: not an ACL line" % (path, lineno))
                if len(words) == 3 and words[1] in _ACCESS:
                    access, topic = words[1], words[2].strip()
                else:
                    access, topic = "readwrite", line.split(None, 1)[1].strip()
                is_pattern = keyword == "pattern"
                rule = (topic, _ACCESS[access], access == "deny", is_pattern)
                (self.patterns if is_pattern else current).append(rule)

    def __call__(self, client_id: str, username: Optional[str], topic: str,
                 access: str) -> bool:
        rules = self.users.get(username, []) if username is not None else self.anonymous
        allowed = False
        for pattern, accesses, deny, is_pattern in rules + self.patterns:
            if is_pattern:
                pattern = pattern.replace("%c", client_id).replace("%u", username or "")
            if topic_matches(pattern, topic):
                if deny:
                    return False
                allowed = allowed or access in accesses
        return allowed


class Guard:
    """The broker's authentication and ACL decisions, logged by the caller."""

    __slots__ = ("users", "authenticate", "acl", "anonymous")

    def __init__(self, password_file: Optional[str], authenticate: Optional[Authenticate],
                 acl_file: Optional[str], acl: Optional[Acl],
                 allow_anonymous: Optional[bool]) -> None:
        if password_file is not None and authenticate is not None:
            raise ValueError("give password_file or authenticate, not both")
        if acl_file is not None and acl is not None:
            raise ValueError("give acl_file or acl, not both")
        self.users = load_password_file(password_file) if password_file else None
        self.authenticate = authenticate
        self.acl: Optional[Acl] = AclFile(acl_file) if acl_file else acl
        checks_passwords = self.users is not None or authenticate is not None
        self.anonymous = (not checks_passwords) if allow_anonymous is None else allow_anonymous

    def admits(self, client_id: str, username: Optional[str],
               password: Optional[bytes]) -> bool:
        """Whether CONNECT's credentials let the client in."""
        if username is None:
            return self.anonymous
        if self.authenticate is not None:
            return bool(self.authenticate(client_id, username, password))
        if self.users is None:
            return True
        hashed = self.users.get(username or "")
        return hashed is not None and password is not None and check_password(hashed, password)

    def allows(self, client_id: str, username: Optional[str], topic: str, access: str) -> bool:
        """Whether the ACL lets the client ``access`` the topic (or filter)."""
        return self.acl is None or bool(self.acl(client_id, username, topic, access))
