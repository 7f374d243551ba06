"""Hand-built Ethernet / IPv4 / UDP / DNS frames, shared by the IoT tests."""

from __future__ import annotations

import socket
import struct


def dns(name: str, qtype: int = 1, response: bool = False, ident: int = 7) -> bytes:
    """One DNS message with one question (RD set; a plain answer flags word for responses)."""
    flags = 0x8180 if response else 0x0100
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return (
        struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0)
        + labels
        + b"\x00"
        + struct.pack("!HH", qtype, 1)
    )


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(body: bytes, src: str, dst: str, ttl: int = 64) -> bytes:
    return (
        struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(body), 0, 0, ttl, 17, 0)
        + socket.inet_aton(src)
        + socket.inet_aton(dst)
        + body
    )


def eth(src: str, dst: str, payload: bytes) -> bytes:
    return (
        bytes.fromhex(dst.replace(":", ""))
        + bytes.fromhex(src.replace(":", ""))
        + (b"\x08\x00" + payload)
    )
