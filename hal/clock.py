"""Clocks: monotonic time for cadence, wall time for records. Injected everywhere; tests use FakeClock."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def monotonic_ns(self) -> int:
        """Monotonic nanoseconds; never goes back."""
        ...

    def wall(self) -> float:
        """Wall-clock seconds since the Unix epoch (UTC)."""
        ...

    def sleep_until_ns(self, deadline_ns: int) -> None:
        """Block until the monotonic clock reaches `deadline_ns` (return at once if it has)."""
        ...


class SystemClock:
    """The real clocks of the machine."""

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def wall(self) -> float:
        return time.time()

    def sleep_until_ns(self, deadline_ns: int) -> None:
        remaining = deadline_ns - time.monotonic_ns()
        if remaining > 0:
            time.sleep(remaining / 1e9)


class FakeClock:
    """A clock that moves only when told to. `sleep_until_ns` jumps to the deadline at once, so loops run
    as fast as the CPU allows and every run replays the same."""

    def __init__(self, start_wall: float = 1_700_000_000.0, start_mono_ns: int = 1_000_000_000) -> None:
        self._mono = start_mono_ns
        self._wall0 = start_wall
        self._mono0 = start_mono_ns

    def monotonic_ns(self) -> int:
        return self._mono

    def wall(self) -> float:
        return self._wall0 + (self._mono - self._mono0) / 1e9

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._mono += int(round(seconds * 1e9))

    def advance_ns(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("a clock does not go back")
        self._mono += ns

    def sleep_until_ns(self, deadline_ns: int) -> None:
        if deadline_ns > self._mono:
            self._mono = deadline_ns


def due_ns(t0_ns: int, fps: float, index: int) -> int:
    """When frame `index` (0-based) of a source started at `t0_ns` and running at `fps` comes due."""
    return t0_ns + int(round(index * 1e9 / fps))


def due_frame(clock: Clock, t0_ns: int, fps: float, nxt: int) -> int:
    """For a source that runs at its own rate (a camera): the index (0-based) of the frame to deliver now.
    The next one, `nxt`, waited for when it is not due yet; or, when later ones came due while the caller
    was busy, the newest one due (those between are skipped, as a camera drops them)."""
    latest = int((clock.monotonic_ns() - t0_ns) * fps / 1e9 + 1e-6)
    if latest <= nxt:
        clock.sleep_until_ns(due_ns(t0_ns, fps, nxt))
        return nxt
    return latest
