"""The sockets a process listens on, as Linux's /proc tells them (no tool of the proxy's own)."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"  # a bound UDP socket (a WireGuard or QUIC server) is "listening"


@dataclass(frozen=True)
class Listening:
    protocol: str  # tcp, tcp6, udp, udp6
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int


def decode(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/tcp: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(words)


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if match := re.fullmatch(r"socket:\[(\d+)\]", target):
            inodes.add(match.group(1))
    return inodes


def listening(pid: int) -> list[Listening]:
    """Every TCP socket `pid` listens on and every UDP socket it has bound."""
    inodes = socket_inodes(pid)
    found = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        table = Path("/proc/net") / protocol
        if not table.exists():
            continue
        for row in table.read_text().splitlines()[1:]:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            wanted = TCP_LISTEN if protocol.startswith("tcp") else UDP_UNCONNECTED
            if inode in inodes and state == wanted:
                address, port = local.split(":")
                found.append(Listening(protocol, decode(address), int(port, 16)))
    return found
