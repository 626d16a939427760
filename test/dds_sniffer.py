"""Count RTPS (DDS) packets per network interface with a raw AF_PACKET socket.

Needs root (CAP_NET_RAW); `Sniffer.available()` says whether it can run. Used by the
test session to prove that no DDS packet leaves the machine: packets seen on `lo` show
the sniffer works, packets on any other interface are a leak.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def _rtps_over_udp(frame: bytes) -> bool:
    """True for an Ethernet frame carrying UDP whose payload starts with the RTPS magic."""
    if len(frame) < 14:
        return False
    ethertype = struct.unpack("!H", frame[12:14])[0]
    offset = 14
    if ethertype == 0x8100 and len(frame) >= 18:  # VLAN tag
        ethertype = struct.unpack("!H", frame[16:18])[0]
        offset = 18
    if ethertype == 0x0800:  # IPv4
        if len(frame) < offset + 20:
            return False
        ihl = (frame[offset] & 0x0F) * 4
        proto = frame[offset + 9]
        udp = offset + ihl
    elif ethertype == 0x86DD:  # IPv6 (no extension headers)
        proto = frame[offset + 6] if len(frame) > offset + 6 else 0
        udp = offset + 40
    else:
        return False
    return proto == 17 and frame[udp + 8 : udp + 12] == b"RTPS"


class Sniffer:
    """Counts RTPS packets per interface (and direction) in a background thread."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.leaks: list[str] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, name="dds-sniffer", daemon=True)

    @staticmethod
    def available() -> str | None:
        """None when a raw socket can be opened, else why not."""
        try:
            socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
        except (PermissionError, OSError, AttributeError) as exc:
            return f"cannot open a raw packet socket ({exc}); run the tests as root to check"
        return None

    def start(self) -> Sniffer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame, (ifname, _proto, pkttype, *_rest) = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                break
            if _rtps_over_udp(frame):
                self.counts[ifname] += 1
                if ifname != "lo":
                    direction = "out" if pkttype == PACKET_OUTGOING else "in"
                    self.leaks.append(f"{ifname} ({direction}, {len(frame)} bytes)")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()

    @property
    def loopback(self) -> int:
        return self.counts["lo"]

    @property
    def elsewhere(self) -> int:
        return sum(n for name, n in self.counts.items() if name != "lo")
