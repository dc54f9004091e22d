"""Secrets and the folders that hold them are private whatever the umask (third attacker sweep, issue 15):
every secret file 0600 from its first byte (that held already: `write_atomic` writes through a 0600 temp
file), and every folder made to hold one, the sensor's state dir and the provisioning agent's device folder,
0700. On the old code those folders were made with the process umask: 0755 under the usual 022, and 0777,
world-writable, under 000, so another local user could read the outbox and audit log or rename files over
the device's key, keyring and trusted-time floor."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.cli.main import main
from firmware.config import to_toml
from trust.files import write_atomic


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(umask=st.integers(0, 0o777), depth=st.integers(1, 4))
def test_a_secret_written_into_new_folders_makes_them_0700(tmp_path_factory, umask: int, depth: int) -> None:
    root = tmp_path_factory.mktemp("s")
    folder = root.joinpath(*[f"d{i}" for i in range(depth)])
    old = os.umask(umask)
    try:
        write_atomic(folder / "device.key", b"secret", private=True)
    finally:
        os.umask(old)
    assert _mode(folder / "device.key") == 0o600
    made = [root.joinpath(*[f"d{i}" for i in range(j + 1)]) for j in range(depth)]
    assert [oct(_mode(d)) for d in made] == [oct(0o700)] * depth


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_umbra_run_makes_its_state_dir_0700(tmp_path: Path, capsys, umask: int) -> None:
    shared = Path(os.environ.get("UMBRA_DATA_DIR", "/work/shared/data"))
    state = tmp_path / "state"
    cfg = {"device": {"state_dir": str(state)},
           "camera": {"kind": "video", "source": str(shared / "video/vtest.avi")},
           "detector": {"kind": "scripted", "ground_truth": str(shared / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
           "output": {"aggregates_file": str(tmp_path / "agg.jsonl")},
           "privacy": {"window_s": 60}, "samples": {"enabled": False}}
    (tmp_path / "umbra.toml").write_text(to_toml(cfg))
    old = os.umask(umask)
    try:
        assert main(["run", "--config", str(tmp_path / "umbra.toml"), "--max-frames", "5"]) == 0
    finally:
        os.umask(old)
    assert oct(_mode(state)) == oct(0o700), sorted(p.name for p in state.iterdir())
    assert (state / "audit.jsonl").exists()


def test_the_provisioning_agent_makes_its_device_folder_0700(tmp_path: Path) -> None:
    from provisioning.agent import DeviceAgent
    from trust import pki

    _, ca = pki.make_ca("test ca", pki.utcnow())
    old = os.umask(0o022)
    try:
        DeviceAgent(tmp_path / "dev" / "state", hardware_id="hw1", model="m", firmware="1",
                    trusted_ca_pem=pki.cert_pem(ca))
    finally:
        os.umask(old)
    assert oct(_mode(tmp_path / "dev" / "state")) == oct(0o700)
