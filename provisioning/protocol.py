"""Requests and responses over the framed serial line: CBOR maps with a protocol version and a sequence number.

    request  {"v": 1, "seq": n, "op": "hello", "args": {...}}
    response {"v": 1, "seq": n, "ok": true, "result": {...}}
             {"v": 1, "seq": n, "ok": false, "error": {"code": "...", "message": "..."}}

The station retries a request that got no answer with the same sequence number; the agent answers a repeated
sequence number from its cache instead of running the command again, so a retry never does a step twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import cbor2

from provisioning.errors import FrameError, ProvisioningError
from provisioning.framing import Deframer, encode

__all__ = ["VERSION", "OPS", "ProvisioningError", "ByteLink", "Client", "pack", "unpack"]

VERSION = 1
OPS = ("hello", "generate_key", "install_chain", "set_config", "verify", "self_test", "lock")


class ByteLink(Protocol):
    """What the station needs of a serial port (pyserial's Serial fits)."""

    def write(self, data: bytes) -> int | None: ...

    def read(self, size: int = 1) -> bytes: ...


def pack(message: dict[str, Any]) -> bytes:
    return encode(cbor2.dumps(message))


def unpack(body: bytes) -> dict[str, Any]:
    try:
        msg = cbor2.loads(body)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as e:
        raise ProvisioningError("bad_cbor", f"frame body is not CBOR: {e}") from e
    if not isinstance(msg, dict) or msg.get("v") != VERSION or not isinstance(msg.get("seq"), int):
        raise ProvisioningError("bad_message", f"not a version {VERSION} message with a sequence number")
    return msg


class Client:
    """The station's end: `call(op, **args)` -> result, or ProvisioningError."""

    def __init__(self, link: ByteLink, *, timeout_s: float = 3.0, retries: int = 3,
                 clock: Callable[[], float] = time.monotonic, on_bytes: Callable[[str, bytes], None] | None = None):
        self.link, self.timeout_s, self.retries, self.clock = link, timeout_s, retries, clock
        self.on_bytes = on_bytes  # sees every byte each way (tests capture the line with it)
        self._seq = int.from_bytes(__import__("os").urandom(2), "big")  # sessions do not reuse numbers
        self._deframer = Deframer()
        self.sent = self.received = 0

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        self._seq = (self._seq + 1) % 2**31
        frame = pack({"v": VERSION, "seq": self._seq, "op": op, "args": args})
        for _attempt in range(self.retries + 1):
            self._write(frame)
            reply = self._await(self._seq)
            if reply is None:
                continue
            if reply.get("ok") is True:
                result = reply.get("result", {})
                return result if isinstance(result, dict) else {}
            err = reply.get("error") or {}
            raise ProvisioningError(str(err.get("code", "refused")), str(err.get("message", "")))
        raise ProvisioningError("timeout", f"no answer to {op!r} after {self.retries + 1} tries")

    def _write(self, data: bytes) -> None:
        self.sent += len(data)
        if self.on_bytes:
            self.on_bytes("out", data)
        self.link.write(data)

    def _await(self, seq: int) -> dict[str, Any] | None:
        deadline = self.clock() + self.timeout_s
        while self.clock() < deadline:
            data = self.link.read(4096)
            if not data:
                continue
            self.received += len(data)
            if self.on_bytes:
                self.on_bytes("in", data)
            for item in self._deframer.feed(data):
                if isinstance(item, FrameError):
                    continue  # a damaged answer: the retry will bring it again
                try:
                    msg = unpack(item)
                except ProvisioningError:
                    continue
                if msg["seq"] == seq:
                    return msg
        return None
