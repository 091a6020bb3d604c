"""Builds ICMP echo requests and reads echo replies, for IPv4 and IPv6.

The payload is fixed per engine, so its checksum is summed once and each request costs a few integer
operations; that matters when thousands of targets are pinged in one burst.
"""

from __future__ import annotations

import socket
import struct

ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
_HEADER = struct.Struct("!BBHHH")
_ID_SEQ = struct.Struct("!HH")


def _ones_complement_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class EchoCodec:
    """Echo requests of one family with one identifier; parses what comes back on such a socket."""

    def __init__(self, family: int, ident: int, payload_size: int = 56, ip_header_included: bool = False):
        self.family = family
        self.ident = ident & 0xFFFF
        self.request_type = ECHO_REQUEST[family]
        self.reply_type = ECHO_REPLY[family]
        pattern = b"sitewatch-echo "
        self.payload = (pattern * (payload_size // len(pattern) + 1))[:payload_size]
        self._payload_sum = _ones_complement_sum(self.payload)
        # Raw IPv4 sockets hand over the IP header too; datagram ICMP sockets and IPv6 do not.
        self.ip_header_included = ip_header_included and family == socket.AF_INET
        # The kernel fills in ICMPv6 checksums (it needs the pseudo-header); IPv4 is ours to compute.
        self._compute_checksum = family == socket.AF_INET

    def request(self, sequence: int) -> bytes:
        checksum = 0
        if self._compute_checksum:
            total = (self.request_type << 8) + self.ident + sequence + self._payload_sum
            total = (total & 0xFFFF) + (total >> 16)
            total = (total & 0xFFFF) + (total >> 16)
            checksum = ~total & 0xFFFF
        return _HEADER.pack(self.request_type, 0, checksum, self.ident, sequence) + self.payload

    def parse_reply(self, packet: bytes) -> tuple[int, int] | None:
        """Returns (identifier, sequence) of an echo reply, or None for anything else."""
        offset = (packet[0] & 0x0F) * 4 if self.ip_header_included and packet else 0
        if len(packet) < offset + 8 or packet[offset] != self.reply_type:
            return None
        return _ID_SEQ.unpack_from(packet, offset + 4)
