"""OTA on the running device: the `[ota]` config, checks on a schedule (with jitter) and on command, the
health check of a slot on trial while the sensor runs, and reports of every outcome as `umbra.ota/1` records
through the outbox (so ops see them in the cloud, and the rollout controller can halt a stage)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from hal.boot import BootControl, DirectoryBootControl, TrybootBootControl
from ota.client import OtaClient, OtaClientConfig, PinnedFetcher, pin_checker
from ota.config import OtaConfig
from ota.errors import Held, OtaError, Refused
from ota.health import HealthResult, check
from ota.lock import SlotLock
from ota.slots import SlotLinks
from ota.watchdog import restart_count
from trust.tls import CertTimes, DeviceTime, PinStore, TlsConfig, client_context, device_context

log = logging.getLogger(__name__)
Report = Callable[[dict[str, Any]], None]


def make_boot(spec: str, base: Path | None = None) -> BootControl:
    """"tryboot"; "directory:<path>" (two slot folders and a state file); "slots:<root>" (the package's layout,
    ota.slots: venvs under <root>/slots/slot-a|b/<version>, <root>/current moved with the booted slot)."""
    if spec == "tryboot":
        return TrybootBootControl()
    kind, _, where = spec.partition(":")
    path = Path(where) if Path(where).is_absolute() or base is None else base / where
    return SlotLinks(path) if kind == "slots" else DirectoryBootControl(path)


def make_client(cfg: OtaConfig, tls: TlsConfig, boot: BootControl, device_id: str, version: str,
                time: DeviceTime | None = None, lock: SlotLock | None = None) -> OtaClient:
    """The device's client: its TLS identity and pins (the uploader's), its embedded root. With `time` (the
    running sensor's trusted clock), checks are held until it is trusted, and certificate and metadata expiry
    are judged on it rather than on the system clock. `lock`: the slots lock (default: [ota] lock_file's)."""
    times: CertTimes | None = None
    if time is not None:
        ctx, times = device_context(tls.ca_file, tls.cert_file, tls.key_file, tls.min_version, time)
    else:
        ctx = client_context(tls.ca_file, tls.cert_file, tls.key_file, tls.min_version)
    fetcher = PinnedFetcher(ctx, pin_checker(PinStore(tls.pins_file, tls.fleet_root_public_key).pins),
                            cert_times=times)
    try:
        root = Path(cfg.trusted_root).read_bytes()
    except OSError as e:
        raise OtaError(f"no trusted OTA root at {cfg.trusted_root}: provision the device first") from e
    return OtaClient(OtaClientConfig(cfg.base_url, device_id, cfg.hardware, version, cfg.version_floor),
                     Path(cfg.state_dir), root, fetcher, boot, time, lock or slots_lock(cfg))


def slots_lock(cfg: OtaConfig) -> SlotLock:
    """The slots lock the package's scripts take too ([ota] lock_file; ota.lock)."""
    return SlotLock(Path(cfg.lock_file), cfg.lock_wait_s)


def record(release: str, from_version: str, result: str, reason: str = "", slot: str | None = None,
           now: float | None = None) -> dict[str, Any]:
    r = {"schema": "umbra.ota/1", "t": int(time.time() if now is None else now), "release": release,
         "from_version": from_version, "result": result}
    if reason:
        r["reason"] = reason[:300]
    if slot:
        r["slot"] = slot
    return r


def check_and_install(client: OtaClient, report: Report) -> str | None:
    """One check: the newest allowed release is downloaded, verified and installed into the inactive slot,
    which then boots once on trial. Returns the release installed, or None. Every outcome is reported (a check
    held while the device's time is not trusted too: result "held")."""
    current = client.config.version
    now = client.time.wall() if client.time is not None else None
    try:
        update = client.check()
        if update is None:
            return None
        slot = client.install(update, client.download(update))
    except Held as e:
        report(record("?", current, "held", str(e), now=now))
        log.info("update check %s", e)
        return None
    except Refused as e:
        report(record("?", current, "refused", str(e), now=now))
        log.warning("update refused: %s", e)
        return None
    report(record(update.version, current, "installed", slot=slot, now=now))
    return update.version


class _Stats(Protocol):
    ticks: int
    frames: int
    camera_stalls: int
    detector_errors: int


class LoopView(Protocol):
    """What the health check reads of the running loop (firmware's SensorLoop)."""

    @property
    def stats(self) -> _Stats: ...


class _UploaderStats(Protocol):
    batches: int


class _Uploader(Protocol):
    @property
    def stats(self) -> _UploaderStats: ...


class SyncView(Protocol):
    """What the health check reads of cloud sync (firmware's SyncService)."""

    @property
    def uploader(self) -> _Uploader | None: ...


def sensor_probes(loop: LoopView, sync: SyncView | None, detect_hz: float, max_restarts: int,
                  restarts: Callable[[], int] | None = None) -> dict[str, Callable[[], bool]]:
    """What 'healthy' means for a slot on trial: the loop ticks at its rate, the camera delivers and the
    detector answers, the uploader reached the cloud (when sync is on), and systemd did not keep restarting."""
    started = time.monotonic()
    first_ticks = loop.stats.ticks

    def ticking() -> bool:
        elapsed = time.monotonic() - started
        return elapsed >= 10 and (loop.stats.ticks - first_ticks) >= 0.8 * detect_hz * elapsed

    probes = {
        "loop": ticking,
        "camera": lambda: loop.stats.frames > 0 and loop.stats.camera_stalls == 0,
        "detector": lambda: loop.stats.frames > 0 and loop.stats.detector_errors <= 0.05 * loop.stats.frames,
        "restarts": lambda: (restarts or restart_count)() <= max_restarts,
    }
    if sync is not None:
        probes["cloud"] = lambda: sync.uploader is not None and sync.uploader.stats.batches > 0
    return probes


class TrialMonitor(threading.Thread):
    """While a slot is on trial: run the health check within the deadline, then commit it or roll it back
    (which reboots into the committed slot on a Pi), and report either way."""

    def __init__(self, boot: BootControl, probes: dict[str, Callable[[], bool]], deadline_s: float,
                 report: Report, release: str, from_version: str, clock: DeviceTime | None = None) -> None:
        """`clock`: the sensor's (hal.trustedtime.TrustedClock), whose best estimate stamps the report: a slot
        on trial has just booted, when a Pi's system clock is most likely wrong (None: the system clock)."""
        super().__init__(name="ota-trial", daemon=True)
        self.boot, self.probes, self.deadline_s, self.report = boot, probes, deadline_s, report
        self.release, self.from_version, self.clock = release, from_version, clock
        self.result: HealthResult | None = None

    def run(self) -> None:
        self.result = check(self.probes, self.deadline_s)
        slot = self.boot.active()
        now = self.clock.wall() if self.clock is not None else None
        if self.result.ok:
            self.boot.mark_good()
            self.report(record(self.release, self.from_version, "committed", slot=slot, now=now))
            log.info("slot %s committed: %s", slot, self.result.reason)
        else:
            self.report(record(self.release, self.from_version, "rolled_back", self.result.reason, slot, now=now))
            log.error("slot %s rolled back: %s", slot, self.result.reason)
            self.boot.rollback(self.result.reason)


class Scheduler(threading.Thread):
    """Checks every `every_s` (plus up to 10% jitter so a fleet does not call at once), or at once on kick()."""

    def __init__(self, run_check: Callable[[], Any], every_s: float, rng: random.Random | None = None) -> None:
        super().__init__(name="ota-check", daemon=True)
        self.run_check, self.every_s = run_check, every_s
        self.rng = rng or random.Random()
        self._wake = threading.Event()
        self._stopping = threading.Event()

    def kick(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.every_s * (1 + 0.1 * self.rng.random()))
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.run_check()
            except Exception as e:  # a failed check is retried at the next one; the sensor keeps running
                log.warning("update check failed: %s", e)
