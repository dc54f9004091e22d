"""Each attack of the TUF specification against a device on loopback: the device refuses, says why, and stays
on its committed slot with nothing on trial."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata

from bench.lib.ota_site import Site
from ota import bundle
from ota.errors import Refused


def untouched(site) -> None:
    st = site.boot.state()
    assert st["committed"] == "a" and st["trying"] is None and not any(site.boot.slot_path("b").iterdir())


def served(site, name: str):
    return site.repo.meta_dir / name


def resign(site, role: str, mutate, signer=None, version_bump: bool = True) -> None:
    """Rewrite a served metadata file (as an attacker or a broken mirror would), signed by `signer`."""
    path = served(site, f"{role}.json")
    md = Metadata.from_file(str(path))
    mutate(md.signed)
    if version_bump:
        md.signed.version += 1
    md.signatures.clear()
    md.sign(signer or site.repo.signers(role)[0])
    data = md.to_bytes()
    path.write_bytes(data)
    if role != "timestamp":
        (site.repo.meta_dir / f"{md.signed.version}.{role}.json").write_bytes(data)


@pytest.fixture
def site(tmp_path):

    s = Site(tmp_path)
    s.publish("1.1.0")
    yield s
    s.close()


def test_arbitrary_installation_tampered_target_is_refused(site):
    client = site.client()
    update = client.check()
    target = next(site.repo.targets_dir.rglob("*1.1.0.tar"))
    target.write_bytes(target.read_bytes()[:-10] + b"evil!evil!")  # same length, other bytes
    with pytest.raises(Refused, match="target"):
        client.download(update)
    untouched(site)


def test_arbitrary_installation_rogue_signed_targets_are_refused(site):
    rogue = CryptoSigner.generate_ed25519()
    version = json.loads(served(site, "targets.json").read_bytes())["signed"]["version"]

    def add_evil(targets):
        targets.targets["releases/umbra-pi4/9.9.9.tar"] = targets.targets["releases/umbra-pi4/1.1.0.tar"]

    resign(site, "targets", add_evil, signer=rogue, version_bump=False)
    (site.repo.meta_dir / f"{version}.targets.json").write_bytes(served(site, "targets.json").read_bytes())
    with pytest.raises(Refused, match="metadata"):
        site.client().check()
    untouched(site)


def test_rollback_older_metadata_is_refused(site):
    client = site.client()
    client.check()  # the device has seen the current timestamp
    old = served(site, "timestamp.json").read_bytes()
    site.publish("1.2.0")
    site.client().check()
    served(site, "timestamp.json").write_bytes(old)  # a replayed older timestamp
    with pytest.raises(Refused, match="metadata"):
        site.client().check()
    untouched(site)


def test_rollback_to_an_older_release_is_not_offered(site):
    assert site.client("1.2.0").check() is None  # 1.1.0 is signed, but older than what runs


def test_indefinite_freeze_expired_timestamp_is_refused(site):
    site.repo.now = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    site.repo.refresh_timestamp(days=1)  # expired two days ago: a frozen mirror replaying it
    with pytest.raises(Refused, match="Expired"):
        site.client().check()
    untouched(site)


def test_endless_data_oversized_metadata_and_target_are_refused(site):
    served(site, "timestamp.json").write_bytes(b" " * 20_000 + served(site, "timestamp.json").read_bytes())
    with pytest.raises(Refused, match="metadata"):
        site.client().check()
    untouched(site)


def test_endless_data_target_longer_than_signed_is_refused(tmp_path):

    s = Site(tmp_path)
    try:
        s.publish("1.1.0")
        client = s.client()
        update = client.check()
        target = next(s.repo.targets_dir.rglob("*1.1.0.tar"))
        with open(target, "ab") as f:
            f.write(b"\0" * 1_000_000)
        with pytest.raises(Refused, match="target"):
            client.download(update)
        untouched(s)
    finally:
        s.close()


def test_mix_and_match_snapshot_from_another_publication_is_refused(site):
    old_snapshot = served(site, "snapshot.json").read_bytes()
    site.publish("1.2.0")
    version = json.loads(served(site, "snapshot.json").read_bytes())["signed"]["version"]
    served(site, f"{version}.snapshot.json").write_bytes(old_snapshot)  # the right name, older content
    with pytest.raises(Refused, match="metadata"):
        site.client().check()
    untouched(site)


def test_fast_forward_recovered_by_rotating_the_timestamp_key(site):
    honest = served(site, "timestamp.json").read_bytes()
    resign(site, "timestamp", lambda s: setattr(s, "version", 10**6), version_bump=False)  # a stolen key
    site.client().check()  # the device trusts version 1,000,000 now
    served(site, "timestamp.json").write_bytes(honest)  # ops' own copy is back on the server
    site.repo.refresh_timestamp()
    with pytest.raises(Refused, match="metadata"):
        site.client().check()  # honest versions look like a rollback ...
    site.repo.rotate_key("timestamp")  # ... until ops rotate the key: the device forgets the forged version
    assert site.client().check().version == "1.1.0"
    untouched(site)


def test_wrong_software_bundle_for_other_hardware_is_refused(site, tmp_path):
    other = tmp_path / "pi5.tar"
    bundle.build(tmp_path / "tree-1.1.0", other, "1.2.0", ["umbra-pi5"], "1.0.0")
    site.repo.add_target("releases/umbra-pi4/1.2.0.tar", other,  # signed under this board's name by mistake
                         {"version": "1.2.0", "hardware": "umbra-pi4", "min_from": "1.0.0"})
    client = site.client()
    update = client.check()
    assert update.version == "1.2.0"
    with pytest.raises(Refused, match="wrong_hardware"):
        client.install(update, client.download(update))
    untouched(site)


def test_key_compromise_below_threshold_root_is_refused(site):
    one_key = site.repo.signers("root")[0]
    rogue = CryptoSigner.generate_ed25519()

    def takeover(root):
        for keyid in list(root.roles["targets"].keyids):
            root.revoke_key(keyid, "targets")
        root.add_key(rogue.public_key, "targets")

    resign(site, "root", takeover, signer=one_key)  # 1 of the 3 root keys: below the threshold of 2
    with pytest.raises(Refused, match="metadata"):
        site.client().check()
    untouched(site)


def test_malicious_mirror_serving_another_repository_is_refused(site, tmp_path):
    from ota.repo import Repository

    evil = Repository(tmp_path / "evil")
    evil.init()
    shutil.rmtree(site.repo.public)
    shutil.copytree(evil.public, site.repo.public)  # a mirror with its own keys and a "release"
    with pytest.raises(Refused, match="metadata"):
        site.client().check()
    untouched(site)


def test_root_key_rotation_is_followed_and_the_old_keys_lose_power(site):

    old_root_keys = site.repo.signers("root")
    site.client().check()  # the device trusts root v1
    site.repo.rotate_key("root")  # v2: new keys, signed by the old threshold and the new
    site.publish("1.2.0")
    assert site.client().check().version == "1.2.0"  # the device walked the chain to v2
    # a v3 signed by two of the retired keys (their old threshold) is refused: they lost their power at v2
    path = served(site, "root.json")
    md = Metadata.from_file(str(path))
    md.signed.version += 1
    md.signatures.clear()
    for key in old_root_keys[:2]:
        md.sign(key, append=True)
    (site.repo.meta_dir / f"{md.signed.version}.root.json").write_bytes(md.to_bytes())
    with pytest.raises(Refused, match="metadata"):
        site.client().check()
    untouched(site)
