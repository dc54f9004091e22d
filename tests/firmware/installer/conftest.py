"""A sensor loop on synthetic frames with the installer view attached (no model: fast)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import config as cfgmod
from firmware.cli.installer import Installer, attach_installer
from firmware.installer.counts import RunCounts
from firmware.installer.token import sign_installer_token
from firmware.installer.view import InlineExecutor
from firmware.privacy.audit import AuditLog
from firmware.samples.authorization import public_key_b64
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Tracker
from hal.clock import FakeClock
from hal.faces import ScriptedFaces
from hal.synthetic import SyntheticCamera, SyntheticCrowd

CONFIG = """# a test config: its comments must survive the editor
[device]
id = "dev-1"

[geometry]
homography = [[0.02, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, 1.0]]   # 2 cm per source pixel
count_band_m = 0.1   # the synthetic walkers cover at most 5 cm a frame: a 0.5 m band takes them 20+ frames

[[geometry.zones]]
name = "door"
polygon = [[1.0, 1.0], [5.0, 1.0], [5.0, 5.0], [1.0, 5.0]]

[[geometry.lines]]
name = "mid"
a = [7.0, 0.0]
b = [7.0, 11.0]
"""


@dataclass
class Rig:
    cfg: cfgmod.UmbraConfig
    path: Path
    key: Ed25519PrivateKey
    clock: FakeClock
    loop: SensorLoop
    installer: Installer
    audit: AuditLog

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.installer.server.port}"

    def token(self, device: str = "dev-1", hours: float = 1.0, key: Ed25519PrivateKey | None = None) -> str:
        now = int(self.clock.wall())
        return sign_installer_token(key or self.key, device_id=device, not_before=now - 1,
                                    expires=now + int(hours * 3600), token_id="tok-1")

    def events(self) -> list[dict]:
        import json

        return [json.loads(x) for x in self.audit.path.read_text().splitlines()]


@pytest.fixture()
def rig(tmp_path: Path):
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "umbra.toml"
    path.write_text(CONFIG + '\n[installer]\nenabled = true\nport = 0\n'
                    f'authority_public_key = "{public_key_b64(key)}"\n')
    cfg = cfgmod.load(path)
    clock = FakeClock()
    geo = Geometry(cfg.geometry)
    counts = RunCounts(geo)
    loop = SensorLoop(cfg.loop, SyntheticCamera(clock, frames=60), SyntheticCrowd(6), Tracker(cfg.tracker),
                      Quantizer(cfg.quantize, geo, Pseudonymizer(3600)), clock, sinks=[counts])
    audit = AuditLog(tmp_path / "audit.jsonl")
    inst = attach_installer(replace(cfg), path, loop, counts, audit, clock, faces=ScriptedFaces(),
                            persons=lambda rgb: np.zeros((0, 4)), executor=InlineExecutor())  # views in the tick
    assert inst is not None
    yield Rig(cfg, path, key, clock, loop, inst, audit)
    inst.stop()
