"""The persisted last trusted time as an attacker or a bad sector leaves it: whatever the file holds, the clock
starts, and a floor no real time can reach (1e300, the year 9999) is refused as corrupt rather than kept, so
NTP's first sync still makes wall time trusted. Before the fix a floor of 1e300 held the device untrusted for
good: every time-bound part (uploads, releases) waited for a time that never comes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hal.clock import FakeClock
from hal.trustedtime import FakeNtp, TrustedClock

NOW = 1_790_000_000.0  # 2026


@pytest.mark.parametrize("body", [
    b'{"last_trusted_wall": 1e300}', b'{"last_trusted_wall": 253402300799}', b'{"last_trusted_wall": 1e19}',
    b'{"last_trusted_wall": NaN}', b'{"last_trusted_wall": Infinity}', b'{"last_trusted_wall": "1e300"}',
    b'{"last_trusted_wall": true}', b"[1e300]", b"1e300", b"", b"\x00" * 64, b"{" * 5000, b"[" * 4096,
])
def test_a_corrupt_floor_does_not_hold_time_untrusted_for_good(tmp_path: Path, body: bytes) -> None:
    state = tmp_path / "trusted_time.json"
    state.write_bytes(body)
    ntp = FakeNtp(synced=False)
    clock = TrustedClock(FakeClock(start_wall=NOW), ntp, state)
    assert not clock.trusted
    ntp.is_synced = True
    assert clock.trusted and abs(clock.wall() - NOW) < 1
    assert json.loads(state.read_text())["last_trusted_wall"] == pytest.approx(NOW, abs=1)


def test_a_real_floor_is_still_kept(tmp_path: Path) -> None:
    state = tmp_path / "trusted_time.json"
    state.write_text(json.dumps({"last_trusted_wall": NOW + 3600}))  # an hour ahead of a clock that is behind
    ntp = FakeNtp(synced=True)
    clock = TrustedClock(FakeClock(start_wall=NOW), ntp, state)
    assert not clock.trusted  # the machine's clock is before what was once trusted: not taken


def test_a_server_time_past_any_real_time_is_refused_and_not_persisted(tmp_path: Path) -> None:
    state = tmp_path / "trusted_time.json"
    clock = TrustedClock(FakeClock(start_wall=NOW), FakeNtp(synced=False), state)
    assert not clock.observe_server_time(253402214459.0)  # a Date of 31 Dec 9999 from a hostile cloud
    assert clock.refused == 1 and not clock.trusted and not state.exists()
    assert clock.observe_server_time(NOW) and clock.trusted
