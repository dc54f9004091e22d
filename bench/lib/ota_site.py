"""An OTA site on loopback for tests and benchmarks: a TUF repository, the reference cloud serving it over
mutual TLS with pins, and a device (A/B slots, OTA client) against them."""

from __future__ import annotations

from pathlib import Path

from cloud.harness import CloudThread
from hal.boot import DirectoryBootControl
from hal.clock import SystemClock
from ota import bundle
from ota.client import OtaClient, OtaClientConfig, PinnedFetcher, pin_checker
from ota.repo import Repository
from trust.tls import PinStore, client_context

HW = "umbra-pi4"


def release_tree(tmp: Path, version: str, payload: bytes = b"print('umbra')\n") -> Path:
    tree = tmp / f"tree-{version}"
    (tree / "umbra").mkdir(parents=True, exist_ok=True)
    (tree / "umbra" / "main.py").write_bytes(payload)
    (tree / "VERSION").write_text(version)
    return tree


class Site:
    """A repository, the reference cloud serving it, and one device (slots, client) against them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.repo = Repository(tmp / "repo")
        self.root = self.repo.init()
        self.cloud = CloudThread(tmp / "cloud", SystemClock(), ota_dir=str(self.repo.public))
        p = self.cloud.cloud.pki
        from trust import pki

        pins = PinStore(str(p.pins), pki.root_public_b64(pki.load_root_key(p.root_key)))
        self.fetcher = PinnedFetcher(client_context(p.ca_cert, p.device_cert, p.device_key), pin_checker(pins.pins))
        self.boot = DirectoryBootControl(tmp / "device" / "boot")

    def publish(self, version: str, min_from: str = "1.0.0", hardware: str = HW, payload: bytes = b"ok") -> Path:
        out = self.tmp / f"{version}-{hardware}.tar"
        bundle.build(release_tree(self.tmp, version, payload), out, version, [hardware], min_from)
        self.repo.publish_release(out, version, [hardware], min_from)
        return out

    def client(self, version: str = "1.0.0", device_id: str = "dev-1", floor: str = "0", **kw) -> OtaClient:
        cfg = OtaClientConfig(f"https://localhost:{self.cloud.port}/ota", device_id, HW, version, floor, **kw)
        return OtaClient(cfg, self.tmp / "device" / "ota", self.root, self.fetcher, self.boot)

    def close(self) -> None:
        self.cloud.close()


