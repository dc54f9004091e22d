"""Set a device up against a reference cloud on this machine (tests, benchmarks, bench runs): copy the
dev PKI's device files into a device folder and build the TLS and uploader configs that point at the cloud."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from cloud.app import DEV_DEVICE, Cloud, CloudConfig
from firmware.config.sync import UploaderConfig
from hal.clock import Clock
from trust import pki
from trust.tls import TlsConfig


@dataclass(frozen=True, slots=True)
class DeviceSetup:
    tls: TlsConfig
    uploader: UploaderConfig
    outbox_path: str

    def sync_table(self) -> dict[str, object]:
        """The `[sync]` section of a sensor config for this device (for `to_toml`), sync on."""
        up = self.uploader
        return {"enabled": True, "tls": asdict(self.tls), "outbox": {"path": self.outbox_path},
                "uploader": {"url": up.url, "device_id": up.device_id, "keyring_file": up.keyring_file}}


def device_setup(cloud: Cloud, device_dir: Path, port: int, **uploader_overrides: object) -> DeviceSetup:
    d = Path(device_dir)
    d.mkdir(parents=True, exist_ok=True)
    p = cloud.pki
    for src, name in ((p.device_cert, "device.pem"), (p.device_key, "device.key"), (p.pins, "pins.json"),
                      (p.root / "device_keys.json", "keys.json")):
        if not (d / name).exists():  # keys 0600 (copyfile would leave them 0644 under the usual umask)
            pki.write_atomic(d / name, Path(src).read_bytes(), private=name.endswith((".key", "keys.json")))
    tls = TlsConfig(ca_file=str(p.ca_cert), cert_file=str(d / "device.pem"), key_file=str(d / "device.key"),
                    pins_file=str(d / "pins.json"),
                    fleet_root_public_key=pki.root_public_b64(pki.load_root_key(p.root_key)))
    fields: dict[str, object] = {"url": f"https://localhost:{port}", "device_id": DEV_DEVICE,
                                 "keyring_file": str(d / "keys.json")}
    fields.update(uploader_overrides)
    return DeviceSetup(tls, UploaderConfig(**fields), str(d / "outbox.sqlite"))  # type: ignore[arg-type]


class CloudThread:
    """A reference cloud serving on 127.0.0.1 from its own thread and event loop, for callers that are not
    async themselves (the bench run, `umbra run` tests). `close()` stops it."""

    def __init__(self, data_dir: Path, clock: Clock, **config: object) -> None:
        self.cloud = Cloud(CloudConfig(data_dir=str(data_dir), **config), clock)  # type: ignore[arg-type]
        self.loop = asyncio.new_event_loop()
        self.runner, self.port = self.loop.run_until_complete(self.cloud.start(port=0))
        self.api_runner, self.api_port = self.loop.run_until_complete(self.cloud.start_api(port=0))
        self.thread = threading.Thread(target=self.loop.run_forever, name="reference-cloud", daemon=True)
        self.thread.start()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.api_runner.cleanup(), self.loop).result(10)
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
