"""Pseudonyms: a keyed hash (HMAC-SHA256) of the tracker's id, under a key that lives only in memory and
rotates. After a rotation the old key is overwritten and forgotten, so old and new pseudonyms cannot be
linked by anyone, the device included."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

KEY_BYTES = 32
PSEUDONYM_HEX = 16  # 64 bits: collisions among a day's tracks are negligible, and it says nothing more


class Pseudonymizer:
    """`pseudonym(track_id, wall)` -> (epoch, 16 hex chars). The key period is `rotate_s` of wall time,
    aligned to multiples of `rotate_s` since the epoch; a new key is drawn from `random_bytes` (the OS's
    CSPRNG unless a test injects one) the first time a new period is seen. Pure: time is an argument."""

    def __init__(self, rotate_s: float = 3600.0, random_bytes: Callable[[int], bytes] = secrets.token_bytes):
        if rotate_s <= 0:
            raise ValueError("pseudonym rotation period must be positive")
        self.rotate_s = rotate_s
        self._random_bytes = random_bytes
        self._epoch: int | None = None
        self._key = bytearray(KEY_BYTES)
        self.rotations = 0

    @property
    def epoch(self) -> int | None:
        return self._epoch

    def epoch_of(self, wall: float) -> int:
        return int(wall // self.rotate_s)

    def pseudonym(self, track_id: int, wall: float) -> tuple[int, str]:
        epoch = self.epoch_of(wall)
        if epoch != self._epoch:
            self._rotate(epoch)
        # the key buffer itself, not bytes(self._key): a copy per call would stay in freed memory, unzeroed
        digest = hmac.new(self._key, track_id.to_bytes(8, "big", signed=True), hashlib.sha256)
        return epoch, digest.hexdigest()[:PSEUDONYM_HEX]

    def _rotate(self, epoch: int) -> None:
        # Any change of period draws a fresh key, even when the wall clock stepped back: a past key is gone
        # for good, so a repeated period label still gets a key nobody has seen.
        fresh = self._random_bytes(KEY_BYTES)
        if len(fresh) != KEY_BYTES:
            raise ValueError(f"random source gave {len(fresh)} bytes, not {KEY_BYTES}")
        self._key[:] = fresh  # overwrite in place: the old key is gone
        self._epoch = epoch
        self.rotations += 1

    def forget(self) -> None:
        """Zero the key (on shutdown)."""
        self._key[:] = bytes(KEY_BYTES)
        self._epoch = None
