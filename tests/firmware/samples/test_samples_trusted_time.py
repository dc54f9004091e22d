"""Customer sample grants and installer tokens on the sensor's trusted time. A Pi that boots a day ahead must
not drop a valid sampling token as expired (for good), and one a day behind must not take an expired installer
token: while the time is untrusted grants are held (default rate, audited once) and installer tokens refused
(`time-untrusted`, audited); once NTP corrects the clock both work, without a restart. Real signatures, the
real audit log, the installer's real HTTP server on 127.0.0.1; injected clocks, no sleeps."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from dataclasses import replace
from pathlib import Path

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import config as cfgmod
from firmware.cli.installer import attach_installer
from firmware.config import load, to_toml
from firmware.config.samples import SamplesConfig
from firmware.installer.counts import RunCounts
from firmware.installer.token import sign_installer_token
from firmware.privacy.audit import AuditLog
from firmware.samples.authorization import public_key_b64, sign_token
from firmware.samples.grantstore import GrantRefresher, TokenStore, accept, authorizer_for, store_for
from firmware.samples.taking import SampleScheduler
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Tracker
from hal.clock import FakeClock
from hal.faces import ScriptedFaces
from hal.synthetic import SyntheticCamera, SyntheticCrowd
from hal.trustedtime import FakeNtp, SkewedClock, TrustedClock

DAY = 86_400.0
T0 = 1_800_000_000 - (1_800_000_000 % 3600)  # the true time: an hour boundary
DEV = "shop-7"


def samples_in_an_hour(sched: SampleScheduler, refresher: GrantRefresher, clock: TrustedClock,
                       true: FakeClock) -> int:
    taken = 0
    for _ in range(360):
        t = clock.wall()
        refresher(None, None, t)  # type: ignore[arg-type]
        taken += sched.due(t) is not None
        true.advance(10.0)
    return taken


def test_a_sensor_a_day_ahead_holds_grants_and_uses_them_once_the_time_is_trusted(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "umbra.toml"
    path.write_text(to_toml({"device": {"id": DEV, "state_dir": str(tmp_path / "state")},
                             "authorization": {"customer_public_key": public_key_b64(key)}}))
    cfg = load(path)
    log = AuditLog(tmp_path / "audit.jsonl")
    store = store_for(cfg, tmp_path)
    token = sign_token(key, device_id=DEV, rate_per_hour=5, not_before=T0 - 3600, expires=T0 + 12 * 3600,
                       token_id="five")
    accept(store, authorizer_for(cfg, store, log), token, T0)  # authorized the day before, on a good clock
    shutil.copy(store.path, tmp_path / "copy.json")

    true = FakeClock(start_wall=T0)
    device, ntp = SkewedClock(true, DAY), FakeNtp(synced=False)  # booted a day ahead, before NTP answers
    clock = TrustedClock(device, ntp, tmp_path / "trusted_time.json")
    sched = SampleScheduler(SamplesConfig(), random.Random(4), authorizer_for(cfg, store, log))
    refresher = GrantRefresher(store, lambda: authorizer_for(cfg, store, log), sched, log,
                               trusted=lambda: clock.trusted)
    refresher.refresh(clock.wall())
    assert refresher.held and sched.grants == ()
    assert samples_in_an_hour(sched, refresher, clock, true) == 1  # the default rate only
    assert store.read().tokens == (token,)  # not dropped as "expired" a day early
    events = [json.loads(x) for x in log.path.read_text().splitlines()]
    assert [e["fields"]["reason"] for e in events if e["event"] == "authorizations_held"] == ["time-untrusted"]
    assert not any(e["event"] == "authorization_dropped" for e in events)

    device.offset_s, ntp.is_synced = 0.0, True  # NTP steps the clock right: the grant is used from now on
    assert samples_in_an_hour(sched, refresher, clock, true) == 5 and not refresher.held

    # what an unheld refresher does with the same stored token on the day-ahead clock: drops it for good
    old = TokenStore(tmp_path / "copy.json")
    blind = GrantRefresher(old, lambda: authorizer_for(cfg, old, log), SampleScheduler(SamplesConfig(),
                           random.Random(4)), log)
    blind.refresh(T0 + DAY)
    assert old.read().tokens == ()


CONFIG = """[device]
id = "dev-1"

[geometry]
homography = [[0.02, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, 1.0]]

[[geometry.zones]]
name = "door"
polygon = [[1.0, 1.0], [5.0, 1.0], [5.0, 5.0], [1.0, 5.0]]
"""


def test_an_installer_token_is_refused_while_the_time_is_untrusted_then_accepted(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "umbra.toml"
    path.write_text(CONFIG + "\n[installer]\nenabled = true\nport = 0\n"
                    f'authority_public_key = "{public_key_b64(key)}"\n')
    cfg = cfgmod.load(path)
    true = FakeClock(start_wall=T0)
    device, ntp = SkewedClock(true, -DAY), FakeNtp(synced=False)  # a day behind: yesterday's token looks valid
    clock = TrustedClock(device, ntp, tmp_path / "trusted_time.json")
    geo = Geometry(cfg.geometry)
    counts = RunCounts(geo)
    loop = SensorLoop(cfg.loop, SyntheticCamera(true, frames=10), SyntheticCrowd(2), Tracker(cfg.tracker),
                      Quantizer(cfg.quantize, geo, Pseudonymizer(3600)), clock, sinks=[counts])
    audit = AuditLog(tmp_path / "audit.jsonl")
    inst = attach_installer(replace(cfg), path, loop, counts, audit, clock, faces=ScriptedFaces(),
                            persons=lambda rgb: np.zeros((0, 4)))
    assert inst is not None
    base = f"http://127.0.0.1:{inst.server.port}"
    yesterday = sign_installer_token(key, device_id="dev-1", not_before=int(T0 - DAY - 60),
                                     expires=int(T0 - DAY + 3600), token_id="old")
    today = sign_installer_token(key, device_id="dev-1", not_before=int(T0 - 60), expires=int(T0 + 3600),
                                 token_id="new")

    async def post(token: str) -> int:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
            async with s.post(base + "/session", data={"token": token}, allow_redirects=False) as r:
                return r.status

    try:
        first = asyncio.run(post(yesterday))  # expired, but valid by the device's wrong clock
        device.offset_s, ntp.is_synced = 0.0, True
        late, now_ok = asyncio.run(post(yesterday)), asyncio.run(post(today))
    finally:
        inst.stop()
    assert (first, late, now_ok) == (403, 403, 303)
    refused = [e["fields"]["reason"] for e in (json.loads(x) for x in audit.path.read_text().splitlines())
               if e["event"] == "installer_refused"]
    assert refused == ["time-untrusted", "expired"]
