"""Frames on a byte stream: 0x00, COBS(length(2) | body | CRC-32(4)), 0x00.

COBS (Cheshire & Baker) removes every zero byte from the encoded frame, so 0x00 marks frame boundaries: a
dropped, corrupted or inserted byte spoils at most the frame it falls in, and the decoder resynchronizes at
the next 0x00. The length and the CRC-32 catch what COBS alone would not. Bodies are at most MAX_BODY bytes;
a longer run of bytes without a delimiter is discarded as it grows, so garbage cannot exhaust memory.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from cobs import cobs

from provisioning.errors import FrameError

MAX_BODY = 4096
_MAX_ENCODED = MAX_BODY + 6 + (MAX_BODY + 6) // 254 + 2


def encode(body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise FrameError(f"frame body of {len(body)} bytes exceeds the {MAX_BODY}-byte maximum")
    raw = struct.pack(">H", len(body)) + body + struct.pack(">I", zlib.crc32(body))
    return b"\x00" + cobs.encode(raw) + b"\x00"


def decode(encoded: bytes) -> bytes:
    """One frame's bytes between delimiters -> its body. Raises FrameError."""
    try:
        raw = cobs.decode(encoded)
    except cobs.DecodeError as e:
        raise FrameError(f"bad COBS encoding: {e}") from e
    if len(raw) < 6:
        raise FrameError(f"frame of {len(raw)} bytes is shorter than its header and CRC")
    (n,) = struct.unpack(">H", raw[:2])
    if n != len(raw) - 6:
        raise FrameError(f"frame says {n} bytes but carries {len(raw) - 6}")
    body, (crc,) = raw[2:-4], struct.unpack(">I", raw[-4:])
    if zlib.crc32(body) != crc:
        raise FrameError("CRC-32 mismatch")
    return body


class Deframer:
    """Feed bytes as they arrive; iterate over bodies and the FrameErrors of damaged frames."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False
        self.errors = 0

    def feed(self, data: bytes) -> Iterator[bytes | FrameError]:
        start = 0
        while True:
            i = data.find(b"\x00", start)
            chunk = data[start:] if i < 0 else data[start:i]
            if not self._overflow:
                self._buf += chunk
                if len(self._buf) > _MAX_ENCODED:
                    self._buf.clear()
                    self._overflow = True
            if i < 0:
                return
            start = i + 1
            if self._overflow:
                self._overflow = False
                self.errors += 1
                yield FrameError(f"frame longer than {MAX_BODY} bytes discarded")
            elif self._buf:
                encoded, self._buf = bytes(self._buf), bytearray()
                try:
                    yield decode(encoded)
                except FrameError as e:
                    self.errors += 1
                    yield e
