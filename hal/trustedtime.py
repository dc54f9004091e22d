"""Trusted time. A Raspberry Pi has no battery-backed clock: it boots with an old (or any) time until NTP
answers. TrustedClock wraps the machine's clock and says which wall time can be trusted:

- untrusted at start; trusted once the system reports NTP synchronisation (`NtpStatus`), or once a server
  the device authenticated (the cloud over pinned mutual TLS) states its time (`observe_server_time`, from
  its HTTP Date);
- once trusted, wall time runs on the monotonic clock from the last trusted anchor, so a clock stepped
  later (by hand, by a bad NTP answer) does not move it; a fresh NTP reading re-anchors it only if it agrees
  with that estimate (within `STEP_TOLERANCE_S` plus `DRIFT_PPM` of the monotonic time since the anchor:
  NTP slews, it steps only when something is wrong);
- an NTP reading that disagrees (the machine's clock stepped while NTP still says "synchronised") is a
  *step*: counted (`steps`), logged, and time is untrusted until it is settled (the clock keeps running on
  the estimate, so the sensor keeps working and time-bound decisions are held): NTP agreeing with the
  estimate again settles it; an authenticated server time settles it (if it sides against NTP, NTP readings
  that disagree are then ignored until one agrees again); NTP holding the new time steadily for
  `ACCEPT_STEP_AFTER_S` is taken as the time if it is ahead (a step back is never taken from NTP alone: the
  time never goes backwards once trusted);
- never earlier than the last trusted time persisted (`state_file`, written at most once a minute), so a
  reboot with an old clock, or a replayed server time, cannot take it back;
- while untrusted, `wall()` is the machine's time but never below that floor: the sensor keeps working,
  and callers hold time-bound decisions (key validity, certificate renewal, releases) on `trusted`.

Who reads it: the uploader (signing times, key validity, renewal; it learns the time from the cloud), the
device's TLS contexts (certificate validity judged on this clock, not the system's: `trust.tls.CertTimes`),
OTA checks (held while untrusted; python-tuf judges expiry at this time), analytics (windows withheld), and
customer sample grants and installer tokens (held while untrusted).

`monotonic_ns` and `sleep_until_ns` are the machine's, so intervals never depend on the wall clock."""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
from pathlib import Path
from typing import Protocol

from hal.clock import Clock
from trust.files import write_atomic

log = logging.getLogger(__name__)

PERSIST_EVERY_S = 60.0
STEP_TOLERANCE_S = 2.0  # an NTP reading this far from the estimate (plus drift) is a step, not a slew
DRIFT_PPM = 500.0  # the most an NTP-slewed clock moves against the monotonic one (the kernel's slew limit)
ACCEPT_STEP_AFTER_S = 900.0  # NTP holding a stepped time this long (monotonic), with no server to ask, is taken
MAX_STATE_BYTES = 4096
# no trusted time is later than this (2200-01-01): a floor or a server time past it is corrupt or an attack, and
# kept it would hold wall time untrusted for good (no NTP sync could ever reach it)
LATEST_TRUSTED_WALL = 7_258_118_400.0


class NtpStatus(Protocol):
    def synced(self) -> bool:
        """True when the system clock is synchronised to NTP now."""
        ...


class TimedatectlNtp:
    """systemd's view (`timedatectl show -p NTPSynchronized`: the kernel's adjtimex sync flag), asked at
    most every `every_s` seconds; False where timedatectl is missing or fails."""

    def __init__(self, clock: Clock, every_s: float = 30.0) -> None:
        self.clock, self.every_ns = clock, int(every_s * 1e9)
        self._last: tuple[int, bool] | None = None

    def synced(self) -> bool:
        now = self.clock.monotonic_ns()
        if self._last is None or now - self._last[0] >= self.every_ns:
            self._last = (now, self._ask())
        return self._last[1]

    @staticmethod
    def _ask() -> bool:
        exe = shutil.which("timedatectl")
        if exe is None:
            return False
        try:
            out = subprocess.run([exe, "show", "-p", "NTPSynchronized", "--value"], capture_output=True,
                                 text=True, timeout=5, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return out.stdout.strip() == "yes"


class FakeNtp:
    def __init__(self, synced: bool = False) -> None:
        self.is_synced = synced

    def synced(self) -> bool:
        return self.is_synced


class SkewedClock:
    """A machine's clock that is off by `offset_s` from `true` (a Pi before NTP), for tests and the bench;
    setting `offset_s` to 0 is NTP stepping it right. Its monotonic clock is the true one's."""

    def __init__(self, true: Clock, offset_s: float) -> None:
        self.true, self.offset_s = true, offset_s

    def monotonic_ns(self) -> int:
        return self.true.monotonic_ns()

    def wall(self) -> float:
        return self.true.wall() + self.offset_s

    def sleep_until_ns(self, deadline_ns: int) -> None:
        self.true.sleep_until_ns(deadline_ns)


class TrustedClock:
    """A Clock whose `wall()` is the best trusted estimate; `trusted` says whether it may be relied on."""

    def __init__(self, base: Clock, ntp: NtpStatus | None = None, state_file: str | Path | None = None) -> None:
        self.base, self.ntp = base, ntp
        self.state_file = Path(state_file) if state_file else None
        self._anchor: tuple[float, int] | None = None  # (trusted wall, monotonic ns then)
        self._origin: tuple[float, int] | None = None  # the anchor NTP readings are judged against (see _agrees)
        self._floor = self._load_floor()
        self._persisted_ns: int | None = None
        self.refused = 0  # server times refused for being earlier than the floor
        self.steps = 0  # NTP readings that disagreed with trusted time (a stepped clock), each dispute once
        self._dispute: tuple[float, int] | None = None  # (NTP's offset from the estimate, monotonic ns since)
        self._ntp_overruled = False  # a server time sided against NTP: its disagreeing readings are ignored
        self._returned = 0.0  # the latest wall time returned since anchored

    @classmethod
    def always_trusted(cls, base: Clock) -> TrustedClock:
        """The machine's clock taken as trusted (a bench PC with a good clock; tests of other things)."""
        clock = cls(base)
        clock._anchor = clock._origin = (base.wall(), base.monotonic_ns())
        return clock

    def monotonic_ns(self) -> int:
        return self.base.monotonic_ns()

    def sleep_until_ns(self, deadline_ns: int) -> None:
        self.base.sleep_until_ns(deadline_ns)

    @property
    def floor(self) -> float:
        """The last trusted wall time known (persisted; 0.0 when none was ever known)."""
        return self._floor

    @property
    def trusted(self) -> bool:
        self._poll_ntp()
        return self._anchor is not None and self._dispute is None

    def wall(self) -> float:
        self._poll_ntp()
        if self._anchor is None:
            return max(self.base.wall(), self._floor)
        t = max(self._estimate(), self._floor, self._returned)
        self._returned = t  # once anchored, never backwards: not even when a step is settled
        if self._dispute is None:
            self._persist(t)
        return t

    def _estimate(self) -> float:
        assert self._anchor is not None
        return self._anchor[0] + (self.base.monotonic_ns() - self._anchor[1]) / 1e9

    def _agrees(self, t: float) -> bool:
        """Whether an NTP reading `t` agrees with trusted time: within the tolerance of the estimate from the
        anchor and of the one from the origin (where trust was last established) plus the drift since, so a
        run of small steps cannot walk the clock away (the kernel slews wall and monotonic time alike: only a
        step moves one against the other)."""
        assert self._anchor is not None and self._origin is not None
        now = self.base.monotonic_ns()
        from_origin = self._origin[0] + (now - self._origin[1]) / 1e9
        drift = STEP_TOLERANCE_S + DRIFT_PPM * 1e-6 * (now - self._origin[1]) / 1e9
        return abs(t - self._estimate()) <= STEP_TOLERANCE_S and abs(t - from_origin) <= drift

    def observe_server_time(self, t: float) -> bool:
        """An authenticated server's time (e.g. the cloud's Date over pinned mutual TLS). Anchors the clock
        unless it is earlier than the last trusted time (then refused and counted). Returns whether taken."""
        if not t <= LATEST_TRUSTED_WALL:
            self.refused += 1
            log.warning("server time %r is past any real time: refused", t)
            return False
        if not t >= self._floor - 1.0:  # its Date has whole seconds
            self.refused += 1
            log.warning("server time %.0f is before the last trusted time %.0f: refused", t, self._floor)
            return False
        if self._dispute is not None:  # it settles a step NTP reported: for NTP, or against it
            ntp_said = self._estimate() + self._dispute[0]
            self._ntp_overruled = abs(t - ntp_said) > STEP_TOLERANCE_S + 1.0
            log.warning("server time %.0f settles the clock step (%s NTP)", t,
                        "against" if self._ntp_overruled else "with")
            self._dispute = None
        self._set_anchor(max(t, self._floor, self._returned), origin=True)
        return True

    def _poll_ntp(self) -> None:
        if self.ntp is None or not self.ntp.synced():
            return
        t = self.base.wall()
        if self._anchor is None:
            if t >= self._floor - 1.0:
                self._set_anchor(t, origin=True)
            return
        off = t - self._estimate()
        if self._agrees(t):  # NTP agrees: a slew, a small step, or a step put right
            if self._dispute is not None or self._ntp_overruled:
                log.info("NTP agrees with trusted time again")
            self._dispute, self._ntp_overruled = None, False
            self._set_anchor(t)
            return
        if self._ntp_overruled:
            return
        now = self.base.monotonic_ns()
        if self._dispute is None or abs(off - self._dispute[0]) > STEP_TOLERANCE_S:
            if self._dispute is None:
                self.steps += 1
                log.warning("the clock stepped %+.0f s against trusted time: time untrusted until NTP agrees "
                            "again or the cloud says the time", off)
            self._dispute = (off, now)
            return
        if now - self._dispute[1] >= ACCEPT_STEP_AFTER_S * 1e9 and t >= max(self._floor, self._returned):
            log.warning("NTP held a time %+.0f s from trusted time for %.0f s: taken as the time", off,
                        ACCEPT_STEP_AFTER_S)
            self._dispute = None
            self._set_anchor(t, origin=True)

    def _set_anchor(self, t: float, origin: bool = False) -> None:
        if self._anchor is None:
            log.info("wall time trusted from now (%.0f)", t)
        self._anchor = (t, self.base.monotonic_ns())
        if origin or self._origin is None:
            self._origin = self._anchor
        self._persist(t)

    def _persist(self, t: float) -> None:
        now = self.base.monotonic_ns()
        self._floor = max(self._floor, t)
        if self.state_file is None or (self._persisted_ns is not None and
                                       now - self._persisted_ns < PERSIST_EVERY_S * 1e9):
            return
        self._persisted_ns = now
        try:
            write_atomic(self.state_file, json.dumps({"last_trusted_wall": self._floor}).encode())
        except OSError as e:
            log.warning("cannot persist the last trusted time to %s: %s", self.state_file, e.strerror)

    def _load_floor(self) -> float:
        if self.state_file is None or not self.state_file.exists():
            return 0.0
        try:
            with open(self.state_file, "rb") as f:
                value = json.loads(f.read(MAX_STATE_BYTES)).get("last_trusted_wall", 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"last_trusted_wall {value!r} is not a time")
            if value > LATEST_TRUSTED_WALL:
                raise ValueError(f"last_trusted_wall {value!r} is past any real time")
            return float(value)
        except (OSError, ValueError, AttributeError, RecursionError) as e:
            log.warning("last trusted time unreadable in %s (%s): starting without a floor", self.state_file, e)
            return 0.0
