"""`umbra samples authorize/list/revoke` and `umbra privacy` on the device keep the sensor's clock rules
([device] clock = "ntp", `firmware.cli.assemble.build_clock`): a Pi that booted a day ahead or behind, before NTP
answered, must not refuse a valid token as expired (nor take an expired one), list a token as in force, or date
a DPIA, on its wrong clock; once NTP has set the clock the same commands judge normally. The machine's clock
(`time.time` too, as the commands read it before) is skewed; the true time is an injected clock. Real
signatures, the real audit log and token store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.cli import assemble
from firmware.cli.main import main
from firmware.config import to_toml
from firmware.samples.authorization import public_key_b64, sign_token
from hal.clock import FakeClock
from hal.trustedtime import FakeNtp, SkewedClock

DAY = 86_400.0
T0 = 1_800_000_000 - (1_800_000_000 % 3600)  # the true time
DEV = "shop-7"


class Device:
    """A machine whose clock is `offset_s` off the true time until NTP synchronises (and steps) it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp: Path, offset_s: float) -> None:
        self.true = FakeClock(start_wall=T0)
        self.machine, self.ntp = SkewedClock(self.true, offset_s), FakeNtp(synced=False)
        monkeypatch.setattr(assemble, "SystemClock", lambda: self.machine)
        monkeypatch.setattr(assemble, "TimedatectlNtp", lambda _clock: self.ntp)
        monkeypatch.setattr(time, "time", self.machine.wall)  # what the commands read before
        self.key = Ed25519PrivateKey.generate()
        self.config = tmp / "umbra.toml"
        self.config.write_text(to_toml({
            "device": {"id": DEV, "state_dir": str(tmp / "state"), "clock": "ntp"},
            "authorization": {"customer_public_key": public_key_b64(self.key)},
            "privacy": {"audit_file": str(tmp / "audit.jsonl")},
        }))
        self.audit = tmp / "audit.jsonl"

    def ntp_syncs(self) -> None:
        self.machine.offset_s = 0.0
        self.ntp.is_synced = True

    def token(self, not_before: float, expires: float, token_id: str) -> str:
        return sign_token(self.key, device_id=DEV, rate_per_hour=5, not_before=int(not_before), expires=int(expires),
                          token_id=token_id)

    def events(self) -> list[dict]:
        if not self.audit.exists():
            return []
        return [json.loads(x) for x in self.audit.read_text().splitlines()]

    def run(self, *argv: str) -> int:
        return main([*argv[:2], "--config", str(self.config), *argv[2:]])


def test_a_device_a_day_ahead_holds_a_valid_token_and_takes_it_once_ntp_answers(tmp_path, monkeypatch, capsys):
    dev = Device(monkeypatch, tmp_path, +DAY)
    token = dev.token(T0 - 3600, T0 + 12 * 3600, "five")  # valid now (true time), "expired" by the wrong clock
    assert dev.run("samples", "authorize", token) == 1
    out = capsys.readouterr().out
    assert out.startswith("held:") and "not trusted" in out
    events = dev.events()
    assert [e["event"] for e in events if e["event"].startswith("authorization_")] == ["authorization_held"]
    assert events[-1]["fields"] == {"reason": "time-untrusted", "claimed_token_id": "five"}
    assert dev.run("samples", "list") == 0
    assert "0 token(s)" in capsys.readouterr().out  # nothing stored while held
    dev.ntp_syncs()
    assert dev.run("samples", "authorize", token) == 0
    assert "accepted five" in capsys.readouterr().out
    assert dev.run("samples", "list") == 0
    assert "five: 5/h" in capsys.readouterr().out


def test_a_device_a_day_behind_does_not_take_an_expired_token(tmp_path, monkeypatch, capsys):
    dev = Device(monkeypatch, tmp_path, -DAY)
    token = dev.token(T0 - 2 * DAY, T0 - 3600, "old")  # expired an hour ago: "in force" by the wrong clock
    assert dev.run("samples", "authorize", token) == 1
    assert capsys.readouterr().out.startswith("held:")
    assert not any(e["event"] == "authorization_accepted" for e in dev.events())
    dev.ntp_syncs()
    assert dev.run("samples", "authorize", token) == 1
    assert "refused (expired)" in capsys.readouterr().out


def test_list_and_dpia_do_not_judge_tokens_on_an_untrusted_clock(tmp_path, monkeypatch, capsys):
    dev = Device(monkeypatch, tmp_path, 0.0)
    dev.ntp_syncs()
    token = dev.token(T0 - 3600, T0 + 12 * 3600, "five")
    assert dev.run("samples", "authorize", token) == 0  # taken on a good clock
    capsys.readouterr()
    dev.machine.offset_s, dev.ntp.is_synced = DAY, False  # rebooted a day ahead, NTP not answering yet
    (tmp_path / "state" / "trusted_time.json").unlink(missing_ok=True)  # a first boot: nothing known
    assert dev.run("samples", "list") == 0
    out = capsys.readouterr().out
    assert "five: not judged (time untrusted)" in out and "not usable" not in out and "in force" not in out.replace(
        "whether each is in force", "")
    assert dev.run("privacy", "dpia") == 0
    captured = capsys.readouterr()
    assert "not trusted" in captured.err and "(time not given)" in captured.out
    assert "- not judged" in captured.out and "token five" not in captured.out
    dev.ntp_syncs()
    assert dev.run("privacy", "dpia") == 0
    assert "token five: 5 per hour" in capsys.readouterr().out


def test_revoke_goes_ahead_untrusted_and_its_entry_is_not_before_the_last_trusted_time(tmp_path, monkeypatch,
                                                                                       capsys):
    dev = Device(monkeypatch, tmp_path, 0.0)
    dev.ntp_syncs()
    assert dev.run("samples", "authorize", dev.token(T0 - 3600, T0 + 12 * 3600, "five")) == 0
    dev.machine.offset_s, dev.ntp.is_synced = -30 * DAY, False  # a month behind
    assert dev.run("samples", "revoke", "five") == 0
    assert "revoked" in capsys.readouterr().out
    entry = [e for e in dev.events() if e["event"] == "authorization_revoked"][-1]
    assert entry["t"] >= T0 - 1  # the clock's best estimate, never before the last trusted time
