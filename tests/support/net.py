"""Small loopback UDP peers for the DNS, SNTP and UDP tests, each on its own thread."""

import select
import socket
import struct
import threading
from typing import Callable, Dict, List, Optional, Tuple

import cymongoose as cm

Reply = Callable[[bytes], Optional[bytes]]

NTP_OFFSET = 2208988800  # seconds from 1900 to 1970


class UdpPeer:
    """A UDP socket on ``host`` whose thread answers each datagram with ``reply(data)``.

    ``reply`` returns the answer, or ``None`` to stay silent.  Every datagram
    received is kept in ``received``.  ``host`` may be ``"::1"``.
    """

    def __init__(self, reply: Reply, host: str = "127.0.0.1") -> None:
        self.reply = reply
        self.received: List[bytes] = []
        ipv6 = ":" in host
        self.sock = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.url = ("udp://[%s]:%d" if ipv6 else "udp://%s:%d") % (host, self.port)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            data, addr = self.sock.recvfrom(65536)
            self.received.append(data)
            answer = self.reply(data)
            if answer is not None:
                self.sock.sendto(answer, addr)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> "UdpPeer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- DNS ---------------------------------------------------------------------


def dns_question(packet: bytes) -> Tuple[int, str, int, bytes]:
    """(transaction id, name, qtype, raw question section) of a DNS query."""
    txid = struct.unpack("!H", packet[:2])[0]
    i = 12
    labels = []
    while packet[i]:
        n = packet[i]
        labels.append(packet[i + 1:i + 1 + n].decode("ascii"))
        i += n + 1
    qtype = struct.unpack("!H", packet[i + 1:i + 3])[0]
    return txid, ".".join(labels), qtype, packet[12:i + 5]


def dns_server(records: Dict[str, str]) -> UdpPeer:
    """A DNS server answering A queries for ``records`` (name -> IPv4), NXDOMAIN otherwise."""

    def reply(packet: bytes) -> bytes:
        txid, name, qtype, question = dns_question(packet)
        ip = records.get(name.lower())
        if ip is None or qtype != 1:
            return struct.pack("!HHHHHH", txid, 0x8183, 1, 0, 0, 0) + question
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
        return struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + question + answer

    return UdpPeer(reply)


# -- SNTP --------------------------------------------------------------------


def ntp_timestamp(epoch_ms: int) -> bytes:
    seconds, ms = divmod(epoch_ms, 1000)
    return struct.pack("!II", seconds + NTP_OFFSET, int(ms * 2**32 // 1000))


def sntp_server(epoch_ms: int, answer_from: int = 1) -> UdpPeer:
    """An SNTP server whose clock reads ``epoch_ms``; it answers the
    ``answer_from``-th request and every later one."""
    count = [0]

    def reply(packet: bytes) -> Optional[bytes]:
        count[0] += 1
        if count[0] < answer_from or len(packet) < 48:
            return None
        stamp = ntp_timestamp(epoch_ms)
        # LI 0, version 4, mode 4 (server); stratum 1; origin = the client's transmit time.
        head = bytes([0x24, 1, 6, 0xEC]) + b"\0" * 8 + b"TEST"
        return head + stamp + packet[40:48] + stamp + stamp

    return UdpPeer(reply)


class PerConnection:
    """A handler that records ``(conn, ev, data)`` for every event but POLL, on one thread."""

    def __init__(self) -> None:
        self.events: List[Tuple[object, int, object]] = []

    def __call__(self, conn: object, ev: int, data: object) -> None:
        if ev != cm.MG_EV_POLL:
            self.events.append((conn, ev, data))

    def events_of(self, conn: object) -> List[Tuple[int, object]]:
        """``(ev, data)`` of every event ``conn`` had, in order."""
        return [(e, d) for c, e, d in self.events if c is conn]

    def of(self, conn: object, ev: int) -> List[object]:
        """The data of every ``ev`` that ``conn`` had, in order."""
        return [d for c, e, d in self.events if c is conn and e == ev]

    def seen(self, conn: object, ev: int) -> bool:
        return any(c is conn and e == ev for c, e, _ in self.events)
