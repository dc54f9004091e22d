"""The `umbra` command line."""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from firmware.errors import FirmwareError

log = logging.getLogger("umbra")

# Subcommands whose parsers live with the part they drive: (command, module, help).
DELEGATED = (
    ("calibrate", "firmware.cli.calibrate", "the image-to-ground homography from point pairs (or MOT15 gt)"),
    ("audit-counts", "firmware.cli.auditcounts", "the device's counts against an installer's hand counts"),
    ("draw", "firmware.cli.draw", "the installer view's overlay on a de-identified snapshot, as PNG"),
    ("track", "firmware.sensing.mot", "run the tracker alone on a MOTChallenge detection file"),
    ("audit", "firmware.privacy.audit", "verify the privacy audit log"),
    ("samples", "firmware.cli.samples", "customer sampling authorizations: key pair, tokens, intake"),
    ("installer", "firmware.cli.installer", "installer mode: the operator's key pair and short-lived tokens"),
    ("privacy", "firmware.privacy.compliance", "the DPIA of a config; data-subject access and erasure requests"),
    ("provision", "provisioning.station_cli", "factory provisioning station"),
    ("ota", "ota.cli", "OTA releases and rollouts (ops)"),
)
BENCH = {
    "run": "bench.run",
    "speed": "bench.loop_speed",
    "tracking": "bench.tracking",
    "counting": "bench.counting",
    "privacy": "bench.privacy",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="umbra", description="Umbra people-flow sensor firmware")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the sensor loop from a config file")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument("--max-frames", type=int, default=None)
    run.set_defaults(func=_cmd_run)

    bench = sub.add_parser("bench", help="bench runs and benchmarks (python -m bench.<name> too)")
    bench.add_argument("name", choices=sorted(BENCH), help="which bench to run")
    bench.add_argument("args", nargs=argparse.REMAINDER, help="arguments for that bench (see --help)")
    bench.set_defaults(func=_cmd_bench)

    for name, module, help_text in DELEGATED:
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        mod.add_parser(sub.add_parser(name, help=help_text))

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except FirmwareError as e:
        print(f"umbra: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # errors of other packages' families (HalError, OtaError, ...)
        if type(e).__module__.split(".")[0] in {"hal", "ota", "provisioning", "models", "bench"}:
            print(f"umbra: {e}", file=sys.stderr)
            return 2
        raise


def _cmd_run(args: argparse.Namespace) -> int:
    from firmware import config as cfgmod
    from firmware.cli.assemble import JsonlSink, build_loop
    from hal.clock import SystemClock

    cfg = cfgmod.load(args.config)
    base = args.config.resolve().parent
    clock = SystemClock()
    files: list = []
    sinks: list = []
    emit_aggregates: list[Callable[[Iterable[Mapping[str, Any]]], object]] = []
    sync = None
    if cfg.sync.enabled:
        from firmware.sync.service import SyncService

        sync = SyncService(cfg.sync, clock)
        if cfg.privacy.profile == "tracks":  # quantized tracks leave only in the tracks profile
            sinks.append(sync.sink)
        emit_aggregates.append(sync.outbox.enqueue)
    if cfg.output.tracks_file:
        out = _open_append(cfgmod.resolve_path(cfg.output.tracks_file, base), files)
        sinks.append(JsonlSink(out))
    if cfg.output.aggregates_file:
        agg = _open_append(cfgmod.resolve_path(cfg.output.aggregates_file, base), files)
        emit_aggregates.append(functools.partial(_write_json_lines, agg))
    from trust.devicekey import audit_log_for

    audit = audit_log_for(cfg, base)  # its head signed with the device key when there is one
    analytics = _analytics(cfg, base, emit_aggregates, audit)
    sinks.append(analytics)
    from ota.watchdog import Watchdog

    watchdog = Watchdog()  # systemd's WatchdogSec restarts a loop that stops ticking
    sinks.append(watchdog)
    from firmware.installer.counts import RunCounts
    from firmware.sensing.geometry import Geometry

    counts = RunCounts(Geometry(cfg.geometry))  # for the stop summary and the installer view
    sinks.append(counts)
    emit_aggregates.append(counts.released)
    loop = build_loop(cfg, base, clock, sinks=sinks)
    from firmware.cli.installer import attach_installer

    installer = attach_installer(cfg, args.config, loop, counts, audit, clock)  # [installer], off by default
    from firmware.flows.hook import build_flow_hook

    flows = build_flow_hook(cfg.flowgroups, loop, emit_aggregates, audit)
    if flows is not None:  # [flowgroups]: crops embedded in the frame's scope, group counts per window
        loop.track_hooks.append(flows)
    sampler = _sample_hook(cfg, sync, audit, loop.detector)
    if sampler is not None:
        from firmware.samples.grantstore import sensor_grants

        refresher = sensor_grants(cfg, base, sampler.taker.scheduler, audit, clock.wall())
        loop.frame_hooks.extend([refresher, sampler] if refresher is not None else [sampler])
    if sync is not None:
        loop.sinks.append(sync.status_sink(loop, cfg.privacy.profile))
    from firmware.privacy.frameaudit import FrameAuditSink

    frames = None
    if audit is not None:  # tracks leave the device through the uploader, in the tracks profile only
        frames = FrameAuditSink(loop, audit, tracks_leave=sync is not None and cfg.privacy.profile == "tracks")
    if frames is not None:
        loop.sinks.append(frames)
    watchdog.ready()
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    if sync is not None:
        sync.start()
    ota = _start_ota(cfg, base, loop, sync)
    try:
        stats = loop.run(max_ticks=args.max_frames)
    except KeyboardInterrupt:
        stats = loop.stats
    finally:
        if installer is not None:
            installer.stop()
        if ota is not None:
            ota.stop()
        analytics.close_window()  # the partial window's aggregates, paid for like any other
        if flows is not None:
            flows.close_window(clock.wall())  # the partial window's flow groups
        analytics.accountant.close()
        if frames is not None:
            frames.flush(clock.wall())
        if sync is not None:
            sync.stop()
        for f in files:
            f.close()
    from firmware.cli.summary import stop_summary

    print(stop_summary(stats, counts.snapshot(), cfg.privacy.profile))
    return 0


def _start_ota(cfg, base: Path, loop, sync):
    """With [ota] enabled: a slot on trial gets its health check (commit or roll back), and updates are
    checked on a schedule; outcomes go to the outbox as umbra.ota/1 records."""
    if not cfg.ota.enabled:
        return None
    from firmware import __version__
    from ota import agent

    boot = agent.make_boot(cfg.ota.boot, base)
    def report(rec: dict) -> None:
        if sync is not None:
            sync.outbox.enqueue([rec])
        log.info("ota: %s", rec)

    if boot.state().get("trying") or boot.state().get("trying_now"):
        agent.TrialMonitor(boot, agent.sensor_probes(loop, sync, cfg.loop.detect_hz, cfg.ota.max_restarts),
                           cfg.ota.health_deadline_s, report, __version__, "?").start()
    client = agent.make_client(cfg.ota, cfg.sync.tls, boot, cfg.sync.uploader.device_id or cfg.device.id,
                               __version__)

    def run_check() -> None:
        if agent.check_and_install(client, report):
            boot.boot()  # on a Pi: reboot into the new slot, on trial once

    scheduler = agent.Scheduler(run_check, cfg.ota.check_every_s)
    scheduler.start()
    return scheduler


def _write_json_lines(f: IO[str], records: Iterable[Mapping[str, Any]]) -> None:
    f.writelines(json.dumps(r) + "\n" for r in records)


def _open_append(path: Path, files: list):
    path.parent.mkdir(parents=True, exist_ok=True)
    f = path.open("a", encoding="utf-8")
    files.append(f)
    return f


def _analytics(cfg, base: Path, emit_to: list, audit=None):
    """The aggregates sink: zones and lines from the config, the budget in its own file."""
    from firmware import config as cfgmod
    from firmware.privacy.accountant import Accountant
    from firmware.privacy.analytics import Analytics
    from firmware.sensing.geometry import Geometry

    budget_file = cfgmod.resolve_path(cfg.privacy.budget_file, base)
    accountant = Accountant(budget_file, cfg.privacy.budgets())

    def emit(records: list) -> None:
        for target in emit_to:
            target(records)

    return Analytics(cfg.privacy, Geometry(cfg.geometry), accountant, emit,
                     audit=audit.append if audit is not None else None)


def _sample_hook(cfg, sync, audit, detector=None, rng=None):
    """[samples]: one de-identified sample image an hour at a random instant, from the main stream, into the
    outbox (kept there until uploaded, never past retention_days). Needs sync and a main stream."""
    s = cfg.samples
    if not s.enabled or s.rate_per_hour == 0:
        return None
    if sync is None:
        log.info("samples: sync is off, so no sample images are taken (they may wait only in the outbox)")
        return None
    if not cfg.camera.main_size:
        log.warning("samples: the camera has no main stream, so no sample images are taken")
        return None
    import random

    from firmware.privacy.audit import NoAudit
    from firmware.samples.taking import SampleHook, SampleScheduler, SampleTaker
    from hal.faces import FaceConfig, FaceDetector

    sink = audit if audit is not None else NoAudit()
    finder = None
    if detector is not None and cfg.detector.kind != "scripted":  # a scripted detector replays, it cannot look
        from hal.frame import Frame

        def finder(rgb):  # the re-check on the blurred sample: the loop's detector at its own threshold
            h, w = rgb.shape[:2]
            return detector.detect(Frame(rgb, None, 0, 0, (w, h))).persons(cfg.detector.score_threshold).boxes

    authorizer = None
    if cfg.authorization.customer_public_key:  # customer tokens may raise the rate (firmware.samples.grantstore)
        from firmware.samples.authorization import Authorizer
        from firmware.samples.grantstore import device_id_of

        authorizer = Authorizer(cfg.authorization, device_id_of(cfg), sink)
    scheduler = SampleScheduler(s, rng or random.SystemRandom(), authorizer)
    taker = SampleTaker(s, scheduler, FaceDetector(FaceConfig()),
                        put=lambda record: sync.outbox.enqueue([record]), audit=sink, person_finder=finder)
    return SampleHook(taker, sync.outbox, sink)


def _cmd_bench(args: argparse.Namespace) -> int:
    mod = importlib.import_module(BENCH[args.name])
    return int(mod.main(args.args) or 0)


if __name__ == "__main__":
    sys.exit(main())
