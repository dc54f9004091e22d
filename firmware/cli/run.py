"""`umbra run`: the one place that wires a running sensor, one `init_*` step per subsystem (outputs, sync,
audit, analytics, flow groups, demographics, samples, OTA), then runs the loop and closes everything in order."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import random
import signal
import sys
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from firmware import __version__
from firmware.alerts.rules import AlertSink, alert_sink
from firmware.cli.assemble import JsonlSink, build_clock, build_loop
from firmware.cli.installer import Installer, attach_installer
from firmware.cli.summary import stop_summary
from firmware.config import UmbraConfig, load, resolve_path
from firmware.config.checks import flag, whole
from firmware.demographics.hook import DemographicsHook, build_demographics_hook
from firmware.errors import FirmwareError
from firmware.flows.hook import FlowGroupHook, build_flow_hook
from firmware.installer.countaudit import LineCountSink
from firmware.installer.counts import RunCounts
from firmware.privacy.accountant import Accountant
from firmware.privacy.analytics import Analytics
from firmware.privacy.audit import AuditLog, AuditSink, NoAudit, audit_log_for
from firmware.privacy.continual import ContinualRelease
from firmware.privacy.frameaudit import FrameAuditSink
from firmware.samples.authorization import Authorizer
from firmware.samples.gate import sample_faces, sample_persons
from firmware.samples.grantstore import device_id_of, sensor_grants
from firmware.samples.hook import JobRunner, SampleHook, SampleWorker
from firmware.samples.taking import SampleScheduler, SampleTaker
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import CameraLost, SensorLoop, TickSink
from firmware.sync.service import StatusSink, SyncService
from hal.errors import DetectorError
from hal.trustedtime import TrustedClock
from ota import agent
from ota.lock import LockedBoot
from ota.watchdog import Watchdog
from trust.files import check_regular, private_dirs

log = logging.getLogger("umbra")

Emit = Callable[[Iterable[Mapping[str, Any]]], object]


@dataclass
class Sensor:
    """What `umbra run` wired: the loop and the parts that need closing when it stops."""

    cfg: UmbraConfig
    base: Path
    clock: TrustedClock
    files: ExitStack = field(default_factory=ExitStack)
    sinks: list[TickSink] = field(default_factory=list)
    emit_aggregates: list[Emit] = field(default_factory=list)
    sync: SyncService | None = None
    audit: AuditLog | None = None
    analytics: Analytics | None = None
    continual: ContinualRelease | None = None
    loop: SensorLoop | None = None
    flows: FlowGroupHook | None = None
    demographics: DemographicsHook | None = None
    samples: SampleHook | None = None
    frames: FrameAuditSink | None = None
    alerts: AlertSink | None = None
    ota: agent.Scheduler | None = None
    counts: RunCounts | None = None
    installer: Installer | None = None
    status: StatusSink | None = None


def cmd_run(args: argparse.Namespace) -> int:
    if args.max_frames is not None:
        flag(whole, "--max-frames", args.max_frames, 1, 2**62, unit="frames")
    cfg = load(args.config)
    try:  # the state dir holds the outbox, the audit log, the budget and keys: 0700 when it is made
        private_dirs(resolve_path(cfg.device.state_dir, args.config.resolve().parent))
    except OSError as e:
        raise FirmwareError(f"[device] state_dir {cfg.device.state_dir}: cannot make it: {e.strerror}") from e
    sensor = Sensor(cfg, args.config.resolve().parent, build_clock(cfg, args.config.resolve().parent))
    init_sync(sensor)
    init_outputs(sensor)
    sensor.audit = audit_log_for(cfg, sensor.base)  # its head signed with the device key when there is one
    if sensor.sync is not None and sensor.audit is not None:
        audit = sensor.audit
        sensor.sync.audit_head = lambda: audit.head  # travels with every batch: the cloud sees a log going back
    sensor.analytics = analytics_sink(cfg, sensor.base, sensor.emit_aggregates, sensor.audit,
                                      trusted=lambda: sensor.clock.trusted)
    sensor.sinks.append(sensor.analytics)
    if cfg.privacy.tree_enabled:  # running totals per step, from the same budget
        sensor.continual = ContinualRelease(
            cfg.privacy, Geometry(cfg.geometry), sensor.analytics.accountant, sensor.analytics.emit,
            resolve_path(cfg.privacy.tree_state_file, sensor.base),
            audit=sensor.audit.append if sensor.audit is not None else None, trusted=lambda: sensor.clock.trusted,
            history=sensor.audit.path if sensor.audit is not None else None)  # what the log says was released
        sensor.sinks.append(sensor.continual)
    watchdog = Watchdog()  # systemd's WatchdogSec restarts a loop that stops ticking
    sensor.sinks.append(watchdog)
    counts = sensor.counts = RunCounts(Geometry(cfg.geometry))  # the stop summary's and the installer view's
    sensor.sinks.append(counts)
    sensor.emit_aggregates.append(counts.released)
    loop = sensor.loop = build_loop(cfg, sensor.base, sensor.clock, sinks=sensor.sinks)
    init_hooks(sensor, loop)
    sensor.installer = attach_installer(cfg, args.config, loop, counts, sensor.audit, sensor.clock)  # [installer]
    if sensor.installer is not None and sensor.status is not None:  # a live zone change reaches the cloud's plan
        sensor.installer.live.on_applied.append(sensor.status.replan)
    watchdog.ready()
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    if sensor.sync is not None:
        sensor.sync.start()
    sensor.ota = start_ota(cfg, sensor.base, loop, sensor.sync, sensor.clock)
    lost: CameraLost | None = None
    try:
        stats = loop.run(max_ticks=args.max_frames)
    except KeyboardInterrupt:
        stats = loop.stats
    except CameraLost as e:  # gone mid-run past the loop's limit: what was counted is kept, then one line
        stats, lost = loop.stats, e
    finally:
        close(sensor)
    print(stop_summary(stats, counts.snapshot(), cfg.privacy.profile,
                       sensor.audit.failures if sensor.audit is not None else 0, withheld(sensor)))
    if lost is not None:
        print(f"umbra: {lost}", file=sys.stderr)
        return 3
    return 0


def withheld(sensor: Sensor) -> int:
    """Records of every kind not released because their audit entry could not be written (a full disk)."""
    parts = (sensor.analytics, sensor.flows, sensor.demographics, sensor.frames, sensor.alerts)
    return sum(getattr(p, "withheld", 0) for p in parts if p is not None)


def init_sync(sensor: Sensor) -> None:
    """[sync]: the outbox takes aggregates (and track records, tracks profile only: see init_hooks); the uploader
    drains it."""
    cfg = sensor.cfg
    if not cfg.sync.enabled:
        return
    sync = sensor.sync = SyncService(cfg.sync, sensor.clock)
    sensor.emit_aggregates.append(sync.outbox.enqueue)  # track records: init_hooks, behind their audit entry


def init_outputs(sensor: Sensor) -> None:
    """[output]: the bench's JSON-lines files of released tracks and aggregates, and of the device's own line
    counts."""
    out = sensor.cfg.output
    if out.tracks_file:
        sensor.sinks.append(JsonlSink(_open_append(resolve_path(out.tracks_file, sensor.base), sensor.files)))
    if out.crossings_file:  # the loop's own line counts, per bucket, for `umbra audit-counts`
        counts = _open_append(resolve_path(out.crossings_file, sensor.base), sensor.files)
        sensor.sinks.append(LineCountSink(counts, sensor.cfg.quantize.time_bucket_s))
    if out.aggregates_file:
        agg = _open_append(resolve_path(out.aggregates_file, sensor.base), sensor.files)
        sensor.emit_aggregates.append(functools.partial(write_json_lines, agg))


def init_hooks(sensor: Sensor, loop: SensorLoop) -> None:
    """Flow groups, demographics, sample images (with customer grants), the cloud status record and the frame audit."""
    cfg, audit, sync = sensor.cfg, sensor.audit, sensor.sync
    sensor.flows = build_flow_hook(cfg.flowgroups, loop, sensor.emit_aggregates, audit)
    if sensor.flows is not None:  # [flowgroups]: crops embedded in the frame's scope, group counts per window
        sensor.flows.trusted = lambda: sensor.clock.trusted
        loop.track_hooks.append(sensor.flows)
    if sensor.analytics is not None:  # [demographics]: head crops estimated in the frame's scope, noised histograms
        sensor.demographics = build_demographics_hook(cfg.demographics, loop, sensor.emit_aggregates,
                                                      sensor.analytics.accountant, audit)
        if sensor.demographics is not None:
            sensor.demographics.trusted = lambda: sensor.clock.trusted
            loop.track_hooks.append(sensor.demographics)
    sampler = sensor.samples = sample_hook(cfg, sync, audit)  # the sample is made on its worker's thread
    if sampler is not None:
        refresher = sensor_grants(cfg, sensor.base, sampler.taker.scheduler, audit, sensor.clock.wall(),
                                  trusted=lambda: sensor.clock.trusted)
        loop.frame_hooks.extend([refresher, sampler] if refresher is not None else [sampler])
    alerts = sensor.alerts = alert_sink(cfg.alerts, Geometry(cfg.geometry), sensor.emit_aggregates, audit,
                        trusted=lambda: sensor.clock.trusted)  # audited first; held while the time is untrusted
    if alerts is not None:  # [alerts]: zone rules, umbra.alert/1 records with the aggregates
        loop.sinks.append(alerts)
    if sync is not None:
        sensor.status = sync.status_sink(loop, cfg.privacy.profile, geometry=cfg.geometry)  # + zone plan
        loop.sinks.append(sensor.status)
    tracks_leave = sync is not None and cfg.privacy.profile == "tracks"  # through the uploader, tracks profile only
    if audit is not None:  # track records go to the outbox only once their records_released entry is written
        sensor.frames = FrameAuditSink(loop, audit, release=sync.outbox.enqueue if sync and tracks_leave else None)
        loop.sinks.append(sensor.frames)
    elif sync is not None and tracks_leave:  # no audit log configured: nothing to write first
        loop.sinks.append(sync.sink)


def close(sensor: Sensor) -> None:
    """In order: OTA checks, the partial window's aggregates, flow groups and demographics (paid for like any
    other), the budget, the frame audit, a sample being made (waited for, within a bound), the uploader, the
    output files."""
    if sensor.installer is not None:
        sensor.installer.stop()
    if sensor.ota is not None:
        sensor.ota.stop()
    _close_windows(sensor, sensor.clock.wall())
    if sensor.samples is not None:
        sensor.samples.close()
    if sensor.sync is not None:
        sensor.sync.stop()
    sensor.files.close()


def _close_windows(sensor: Sensor, wall: float) -> None:
    """The partial windows of every stream, the budget, then the frame audit."""
    if sensor.analytics is not None:
        sensor.analytics.close_window()
    if sensor.continual is not None:
        sensor.continual.close()
    if sensor.flows is not None:
        sensor.flows.close_window(wall)
    if sensor.demographics is not None:
        sensor.demographics.close_window(wall)
    if sensor.analytics is not None:
        sensor.analytics.accountant.close()
    if sensor.frames is not None:
        sensor.frames.flush(wall)


def start_ota(cfg: UmbraConfig, base: Path, loop: SensorLoop, sync: SyncService | None,
              clock: TrustedClock | None = None) -> agent.Scheduler | None:
    """With [ota] enabled: a slot on trial gets its health check (commit or roll back), and updates are
    checked on a schedule; outcomes go to the outbox as umbra.ota/1 records. Checks are held while the
    sensor's `clock` is not trusted, and judged at its time once it is."""
    if not cfg.ota.enabled:
        return None
    boot = agent.make_boot(cfg.ota.boot, base)

    def report(rec: dict) -> None:
        if sync is not None:
            sync.outbox.enqueue([rec])
        log.info("ota: %s", rec)

    # commit, rollback, install and the switch to a new slot, each under the slots lock the package's scripts
    # take too (ota.lock)
    lock = agent.slots_lock(cfg.ota)
    boot = LockedBoot(boot, lock)
    if boot.state().get("trying") or boot.state().get("trying_now"):
        agent.TrialMonitor(boot, agent.sensor_probes(loop, sync, cfg.loop.detect_hz, cfg.ota.max_restarts),
                           cfg.ota.health_deadline_s, report, __version__, "?", clock).start()
    client = agent.make_client(cfg.ota, cfg.sync.tls, boot, cfg.sync.uploader.device_id or cfg.device.id,
                               __version__, clock, lock)

    def run_check() -> None:
        if agent.check_and_install(client, report):
            boot.boot()  # on a Pi: reboot into the new slot, on trial once

    scheduler = agent.Scheduler(run_check, cfg.ota.check_every_s)
    scheduler.start()
    return scheduler


def write_json_lines(f: IO[str], records: Iterable[Mapping[str, Any]]) -> None:
    f.writelines(json.dumps(r) + "\n" for r in records)


def _open_append(path: Path, files: ExitStack) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    check_regular(path)
    return files.enter_context(path.open("a", encoding="utf-8"))


def analytics_sink(cfg: UmbraConfig, base: Path, emit_to: list[Emit], audit: AuditLog | None = None,
                   trusted: Callable[[], bool] | None = None) -> Analytics:
    """The aggregates sink: zones and lines from the config, the budget in its own file (the demographics
    stream's too: one accountant for every stream), each spend chained into the signed audit log."""
    accountant = Accountant(resolve_path(cfg.privacy.budget_file, base),
                            {**cfg.privacy.budgets(), **cfg.demographics.budgets()}, ledger=audit)

    def emit(records: list) -> None:
        for target in emit_to:
            target(records)

    return Analytics(cfg.privacy, Geometry(cfg.geometry), accountant, emit,
                     audit=audit.append if audit is not None else None, trusted=trusted)


def sample_hook(cfg: UmbraConfig, sync: SyncService | None, audit: AuditSink | None,
                rng: random.Random | None = None, runner: JobRunner | None = None) -> SampleHook | None:
    """[samples]: one de-identified sample image an hour at a random instant, from the main stream, into the
    outbox (kept there until uploaded, never past retention_days). Needs sync and a main stream. `sync` is
    the SyncService (anything with an `outbox`). Each sample is checked by its own models (`_sample_gate`),
    not the loop's detector, off the tick: on the worker's `runner` (a thread unless given)."""
    s = cfg.samples
    if not s.enabled or s.rate_per_hour == 0:
        return None
    if sync is None:
        log.info("samples: sync is off, so no sample images are taken (they may wait only in the outbox)")
        return None
    if not cfg.camera.main_size:
        log.warning("samples: the camera has no main stream, so no sample images are taken")
        return None
    sink: AuditSink = audit if audit is not None else NoAudit()
    gate = _sample_gate(cfg)
    if gate is None:
        log.warning("samples: no person and face models to check a blurred sample with, so no sample images are taken")
        return None
    faces, finder = gate
    authorizer = None
    if cfg.authorization.customer_public_key:  # customer tokens may raise the rate (firmware.samples.grantstore)
        authorizer = Authorizer(cfg.authorization, device_id_of(cfg), sink)
    scheduler = SampleScheduler(s, rng or random.SystemRandom(), authorizer)
    taker = SampleTaker(s, scheduler, faces, put=lambda record: sync.outbox.enqueue([record]),
                        audit=sink, person_finder=finder)
    return SampleHook(taker, sync.outbox, sink, SampleWorker(taker, sink, runner))


def _sample_gate(cfg: UmbraConfig) -> tuple[Any, Any] | None:
    """The check a sample must pass before it leaves (firmware.samples.gate): its own person model, searched on
    the [samples] check grids, and both BlazeFace variants; None (no samples) when the models cannot load."""
    from models import ModelError

    d = cfg.detector
    try:
        return sample_faces(cfg.samples), sample_persons(cfg.samples, d.model, d.threads)
    except (DetectorError, ModelError, OSError, ValueError) as e:
        log.warning("samples: cannot load the models that check a sample (%s): %s", d.model, e)
        return None
