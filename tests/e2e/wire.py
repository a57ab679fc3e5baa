"""What a capture saw: TCP streams out of a pcap file, TLS records out of a stream.

Pure functions over bytes (no sockets): ``tcp_streams`` reads a classic libpcap file
(what ``tcpdump -w`` writes; Ethernet, IPv4, TCP), keeps the connections whose SYN it
saw, and returns each direction's payload in sequence order. ``tls_records`` splits a
stream into TLS records and refuses anything that is not one, so "only TLS on the wire"
is a statement about every byte, not a search for a few strings.
"""

from __future__ import annotations

import struct
from collections import defaultdict

# (source ip, source port, destination ip, destination port)
Flow = tuple[str, int, str, int]

PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
              b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}  # µs and ns variants
ETHERTYPE_IPV4 = 0x0800
TCP = 6
SYN = 0x02
TLS_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
MAX_RECORD = 2**14 + 2048


def _packets(data: bytes) -> list[bytes]:
    endian = PCAP_MAGIC.get(data[:4])
    if endian is None:
        raise ValueError(f"not a pcap file (magic {data[:4].hex()})")
    (linktype,) = struct.unpack(endian + "I", data[20:24])
    if linktype != 1:
        raise ValueError(f"link type {linktype}: only Ethernet (1) is read")
    out, offset = [], 24
    while offset + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        out.append(data[offset + 16:offset + 16 + caplen])
        offset += 16 + caplen
    return out


def _tcp(frame: bytes) -> tuple[Flow, int, int, bytes] | None:
    """(flow, flags, sequence number, payload) of an Ethernet/IPv4/TCP frame, else None."""
    if len(frame) < 14 or struct.unpack("!H", frame[12:14])[0] != ETHERTYPE_IPV4:
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    if ip[9] != TCP:
        return None
    src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
    tcp = ip[ihl:total]
    sport, dport, seq = struct.unpack("!HHI", tcp[:8])
    offset = (tcp[12] >> 4) * 4
    return (src, sport, dst, dport), tcp[13], seq, tcp[offset:]


def tcp_streams(data: bytes, port: int) -> dict[Flow, bytes]:
    """Each direction of each TCP connection to or from ``port`` whose SYN was captured:
    its payload bytes in order (retransmissions counted once)."""
    starts: dict[Flow, int] = {}
    segments: dict[Flow, dict[int, bytes]] = defaultdict(dict)
    for frame in _packets(data):
        parsed = _tcp(frame)
        if parsed is None:
            continue
        flow, flags, seq, payload = parsed
        if port not in (flow[1], flow[3]):
            continue
        if flags & SYN:
            starts[flow] = (seq + 1) % 2**32
        elif payload:
            segments[flow][seq] = payload
    out = {}
    for flow, start in starts.items():
        stream, expected = bytearray(), start
        for seq in sorted(segments.get(flow, {}), key=lambda s: (s - start) % 2**32):
            payload = segments[flow][seq]
            skip = (expected - seq) % 2**32
            if skip < len(payload):
                stream += payload[skip:]
                expected = (seq + len(payload)) % 2**32
        out[flow] = bytes(stream)
    return out


def tls_records(stream: bytes) -> list[int]:
    """The content types of the TLS records ``stream`` is made of, in order. A trailing
    partial record (the capture stopped) is allowed; any other byte is an error."""
    types, offset = [], 0
    while offset + 5 <= len(stream):
        kind, major, minor, length = struct.unpack("!BBBH", stream[offset:offset + 5])
        if kind not in TLS_TYPES or major != 3 or minor > 4 or length > MAX_RECORD:
            raise AssertionError(f"not a TLS record at byte {offset}: "
                                 f"{stream[offset:offset + 16]!r}")
        types.append(kind)
        offset += 5 + length
    return types
