"""OTA on loopback: publish with python-tuf, a device fetches over pinned mutual TLS from the reference cloud,
installs into the inactive slot, boots it on trial and commits after its health check; bad releases roll
back; rollout membership nests."""

from __future__ import annotations

import pytest

from bench.lib.ota_site import Site
from ota.errors import Refused
from ota.health import after_boot
from ota.rollout import evaluate, in_stage, make_plan, position


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


def test_publish_update_health_check_commit(site):
    site.publish("1.1.0")
    client = site.client()
    update = client.check()
    assert update is not None and update.version == "1.1.0"
    slot = client.install(update, client.download(update))
    assert slot == "b" and (site.boot.slot_path("b") / "VERSION").read_text() == "1.1.0"
    assert site.boot.boot() == "b"  # the reboot tries the new slot once
    result = after_boot(site.boot, {"loop": lambda: True, "camera": lambda: True, "cloud": lambda: True}, 5)
    assert result.ok and site.boot.state()["committed"] == "b"
    assert site.client("1.1.0").check() is None  # nothing newer: up to date


def test_a_release_that_never_reaches_the_cloud_rolls_back(site):
    site.publish("1.1.0")
    client = site.client()
    client.install(u := client.check(), client.download(u))
    site.boot.boot()
    ticks = iter(range(100))
    res = after_boot(site.boot, {"loop": lambda: True, "cloud": lambda: False}, 30,
                     clock=lambda: float(next(ticks)), sleep=lambda s: None)
    assert not res.ok and "cloud" in res.reason
    st = site.boot.state()
    assert st["committed"] == "a" and st["booted"] == "a" and "cloud" in st["last_rollback"]


def test_a_release_that_crashes_before_its_check_falls_back_at_the_next_boot(site):
    site.publish("1.1.0")
    client = site.client()
    client.install(u := client.check(), client.download(u))
    assert site.boot.boot() == "b"  # ... and the new firmware dies before marking itself good
    assert site.boot.boot() == "a"  # the bootloader's next boot takes the committed slot
    assert "not marked good" in site.boot.state()["last_rollback"]


def test_version_floor_min_from_and_other_hardware(site):
    site.publish("1.1.0", min_from="1.0.5")
    assert site.client("1.0.0").check() is None  # too old to upgrade straight to 1.1.0
    assert site.client("1.0.5").check().version == "1.1.0"
    assert site.client("1.0.5", floor="1.2.0").check() is None  # signed but below the floor
    site.publish("1.3.0", hardware="umbra-pi5")
    assert site.client("1.2.0").check() is None  # the pi5 release is not for this board


def test_staged_rollout_membership_nests_and_halts(site):
    plan = make_plan("1.1.0", [1, 10, 50, 100], [0, 0, 0, 0], [0.02] * 4)
    fleet = [f"dev-{i}" for i in range(2000)]
    shares = []
    for stage in range(4):
        p = {**plan, "stages": plan["stages"][: stage + 1]}
        members = {d for d in fleet if in_stage(p, d, "1.1.0", now=1.0)}
        shares.append(len(members) / len(fleet))
        if stage:
            assert prev <= members  # noqa: F821 (set in the previous round) - stages nest
        prev = members  # noqa: F841
    assert shares[0] < 0.03 and 0.07 < shares[1] < 0.13 and 0.45 < shares[2] < 0.55 and shares[3] == 1.0
    first = [d for d in fleet if position(d, "1.1.0") < 0.01]
    halted, status = evaluate({**plan, "stages": plan["stages"][:1]}, {d: "rolled_back" for d in first[:3]},
                              fleet, now=1.0)
    assert halted["state"] == "halted" and status.failed == 3
    assert not in_stage(halted, first[0], "1.1.0", now=1.0)
    # the signed plan reaches devices through TUF: a halted plan stops the release on a device in the stage
    site.publish("1.1.0")
    site.repo.set_rollout(halted)
    assert site.client(device_id=first[0]).check() is None


def test_an_oversized_release_is_refused_before_download(site):
    site.publish("1.1.0", payload=b"x" * 200_000)
    client = site.client(max_bundle_bytes=100_000)
    with pytest.raises(Refused, match="too_large"):
        client.download(client.check())
    assert site.boot.state()["trying"] is None


def test_an_interrupted_download_resumes_where_it_stopped(site):
    bundle_path = site.publish("1.1.0", payload=bytes(range(256)) * 4000)
    client = site.client()
    update = client.check()
    data = bundle_path.read_bytes()
    import hashlib

    part = client.cache_dir / f"{hashlib.sha256(data).hexdigest()}.part"
    part.write_bytes(data[: len(data) // 2])  # the connection dropped half way
    before = site.fetcher.bytes_received
    path = client.download(update)
    assert path.read_bytes() == data
    assert site.fetcher.bytes_received - before == len(data) - len(data) // 2  # only the rest came
