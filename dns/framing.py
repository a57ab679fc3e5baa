"""DNS over TCP framing (RFC 1035 §4.2.2, RFC 7766): each message behind a 2-byte length.

Pure: the TCP shell feeds whatever bytes arrive and gets whole messages back, so no
parsing happens between awaits. A frame longer than ``max_size`` is the peer's fault
(``RemoteProtocolError``) and the connection is closed: a query has no business being
large, and the bound keeps a client from making us buffer 64 KiB per connection.
"""

from __future__ import annotations

import struct

from dns.errors import RemoteProtocolError

MAX_FRAME = 65_535


class FrameDecoder:
    """Splits a byte stream into length-prefixed messages."""

    def __init__(self, max_size: int = MAX_FRAME) -> None:
        if not 0 < max_size <= MAX_FRAME:
            raise ValueError(f"max_size must be between 1 and {MAX_FRAME}")
        self.max_size = max_size
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the messages it completes, in order."""
        self._buffer += data
        messages: list[bytes] = []
        while len(self._buffer) >= 2:
            (length,) = struct.unpack_from("!H", self._buffer)
            if length > self.max_size:
                raise RemoteProtocolError(f"TCP message of {length} bytes, max {self.max_size}")
            if len(self._buffer) < 2 + length:
                break
            messages.append(bytes(self._buffer[2 : 2 + length]))
            del self._buffer[: 2 + length]
        return messages


def encode_frame(message: bytes) -> bytes:
    """``message`` behind its 2-byte length; it must fit in 65,535 bytes."""
    if len(message) > MAX_FRAME:
        raise ValueError(f"DNS message of {len(message)} bytes does not fit a TCP frame")
    return struct.pack("!H", len(message)) + message
