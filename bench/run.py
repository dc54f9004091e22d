"""The bench run: PETS09-S2L1 (vtest.avi) through the mock camera, the real model on CPU (or an Edge TPU when
one is plugged in), the real tracker, quantized records out (one per pseudonym per time bucket); then a summary
a person reads at a glance, with accuracy against the ground truth. Counting is the device's own (the loop's line
counter, written per bucket to crossings.jsonl, the file `umbra audit-counts --crossings` reads); a recount
from the released records follows as a secondary figure (each umbra.track/2 record carries the crossings the
line counter confirmed for its pseudonym in its bucket, so the net is the device's; crossing by crossing the
records' crossings are timed to their bucket).

`umbra bench run [--frames N] [--out DIR]`"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.lib import data
from bench.lib.crossings import compare, count_crossings, count_records, paths_from_gt
from bench.lib.explain import WINDOW_S
from bench.lib.motscore import load_gt, score
from bench.lib.replay import CONFIG, PETS_START_WALL, RecordingTracker, Replay, _Collector
from bench.lib.scenarios import gated, pi4
from firmware.cli.assemble import JsonlSink, build_loop
from firmware.config import load
from firmware.installer.countaudit import LineCountSink, read_line_counts, tally
from firmware.privacy.audit import AuditLog, verify
from firmware.privacy.frameaudit import FrameAuditSink
from hal.clock import FakeClock


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="umbra bench run", description=__doc__)
    ap.add_argument("--frames", type=int, default=None, help="stop after N frames (default: the whole video)")
    ap.add_argument("--out", type=Path, default=Path("out/bench"))
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-cloud", action="store_true", help="skip the reference cloud and the uploader")
    ap.add_argument("--gated", action="store_true", help="inference where people are (bench.gating), native rate")
    ap.add_argument("--pi4", action="store_true", help="the Pi 4 CPU scenario: a camera that skips what came due "
                    "while the loop was busy, 3 frames a second, gated at 4 invokes a frame (bench.gating.pi4)")
    return ap.parse_args(argv)


@data.clean_exit
def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    data.ensure_env()
    cfg = load(args.config)
    cfg = replace(cfg, camera=replace(cfg.camera, source=str(data.need("video/vtest.avi"))))
    cfg = pi4(cfg) if args.pi4 else (gated(cfg) if args.gated else cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    records_path, crossings_path = args.out / "tracks.jsonl", args.out / "crossings.jsonl"  # the latter: device counts
    clock = FakeClock(start_wall=PETS_START_WALL)
    total = args.frames or 795
    sync = None if args.no_cloud else BenchSync(args.out / "sync", clock)
    aggregates: list[dict] = []
    audit = _audit(args.out, sync.tls.key_file if sync else "")
    analytics = _analytics(cfg, args.out, [aggregates.extend] + ([sync.enqueue] if sync else []), audit)
    with records_path.open("w", encoding="utf-8") as out, crossings_path.open("w", encoding="utf-8") as counts:
        rep = Replay([], [])  # bench-side: which track each record came from, for matching crossings one by one
        collect = _Collector(rep)
        sinks = [JsonlSink(out), LineCountSink(counts, cfg.quantize.time_bucket_s), analytics, collect]
        loop = build_loop(cfg, args.config.parent, clock, sinks=sinks + _upload(sync), profile=True)
        collect.pseudonyms = loop.quantizer.pseudonyms
        frames_audit = FrameAuditSink(loop, audit, release=sync.enqueue if sync else None)  # tracks: audited first
        loop.sinks.append(frames_audit)
        recorder = RecordingTracker(loop.tracker)
        loop.tracker = recorder
        bar = _progress(total, args.no_progress)
        seqs: list[int] = []
        found: dict[int, np.ndarray] = {}

        def seen(frame, dets, wall) -> None:  # frames numbered as the source's (a Pi-rate camera skips some)
            recorder.seq = collect.seq = frame.seq
            seqs.append(frame.seq)
            if dets is not None:  # bench-side, for naming each counting error's cause
                p = dets.persons(cfg.loop.min_score)
                found[frame.seq] = np.column_stack((p.to_pixels(*frame.source_size), p.scores))
            bar.update(1)

        loop.frame_hooks.append(seen)
        t0 = time.perf_counter()
        try:
            stats = loop.run(max_ticks=args.frames)
            elapsed = time.perf_counter() - t0
        finally:
            bar.close()
            analytics.close_window()
            analytics.accountant.close()
            frames_audit.flush(clock.wall())
            cloud_line = sync.finish() if sync else "  cloud: not run (--no-cloud)"
    print(summary(cfg, loop, stats, recorder, elapsed, records_path, rep, seqs, found, crossings_path))
    return _report_release(cfg, aggregates, cloud_line, audit, sync)


def _upload(sync) -> list:
    return [sync.sink] if sync else []


def _report_release(cfg, aggregates: list[dict], cloud_line: str, audit: AuditLog, sync) -> int:
    """What was released, what the cloud holds, and the audit log's check; 0 when the log verifies."""
    from firmware.privacy.analytics import release_counts

    print(f"  aggregates ({cfg.privacy.window_s} s windows, k={cfg.privacy.k}, epsilon {cfg.privacy.epsilon} per "
          f"release): {release_counts(aggregates)}")
    print(cloud_line)
    checked = verify(audit.path, cert=sync.tls.cert_file if sync else None)
    signed = ("head signed by the device key, checked against its certificate" if sync else
              "head unsigned (--no-cloud: no device key)")
    print(f"  privacy audit log {audit.path}: {checked.entries} entries, chain "
          f"{'verified' if checked.ok else 'BROKEN: ' + '; '.join(checked.problems)}; {signed}")
    return 0 if checked.ok else 1


def _audit(out: Path, key_file: str) -> AuditLog:
    """A fresh privacy audit log per bench run, its head signed with the bench device's key when it has one."""
    from trust.devicekey import device_signer

    for stale in out.glob("audit.jsonl*"):
        stale.unlink()
    return AuditLog(out / "audit.jsonl", signer=device_signer(key_file, out / "audit.jsonl") if key_file else None)


def _analytics(cfg, out: Path, targets: list, audit: AuditLog):
    """Aggregates beside the tracks, with a fresh budget file per bench run."""
    from firmware.privacy.accountant import Accountant
    from firmware.privacy.analytics import Analytics
    from firmware.sensing.geometry import Geometry

    budget = out / "privacy-budget.sqlite"
    for stale in out.glob("privacy-budget.sqlite*"):
        stale.unlink()

    def emit(recs: list[dict[str, Any]]) -> None:
        for t in targets:
            t(recs)

    return Analytics(cfg.privacy, Geometry(cfg.geometry), Accountant(budget, cfg.privacy.budgets(), ledger=audit),
                     emit, audit=audit.append)


class BenchSync:
    """The reference cloud on 127.0.0.1 (its own thread, dev PKI made on first start) and the device side of
    sync: the outbox (track records reach it through the frame audit, behind their audit entry; aggregates as
    released) and the uploader, which cycles every 30 s of the bench's clock over mutual
    TLS with pinned keys and signed batches, as on a device."""

    def __init__(self, folder: Path, clock: FakeClock) -> None:
        import asyncio
        import random
        import shutil

        from cloud.harness import CloudThread, device_setup
        from firmware.config.sync import OutboxConfig
        from firmware.sync.outbox import Outbox
        from firmware.sync.uploader import Uploader

        shutil.rmtree(folder, ignore_errors=True)  # each bench run starts from a fresh cloud and device
        self.clock = clock
        self.cloud = CloudThread(folder / "cloud", clock)
        dev = device_setup(self.cloud.cloud, folder / "device", self.cloud.port)
        self.device_id = dev.uploader.device_id
        self.tls = dev.tls  # the bench device's key signs the audit head, its certificate checks it
        self.outbox = Outbox(OutboxConfig(path=dev.outbox_path))
        self.events = asyncio.new_event_loop()
        self.uploader = Uploader(dev.uploader, dev.tls, self.outbox, clock, random.Random(0))
        self.next_upload = clock.wall() + dev.uploader.period_s
        self.cycles = 0
        self.released = 0
        self.errors: list[str] = []

    def sink(self, tick) -> None:
        """The upload schedule on the bench's clock (records come in through `enqueue`)."""
        if self.clock.wall() >= self.next_upload:
            self._cycle()

    def enqueue(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Aggregates as the analytics release them, track records as the frame audit does."""
        self.outbox.enqueue(records)
        self.released += len(records)

    def _cycle(self):
        res = self.events.run_until_complete(self.uploader.cycle())
        self.cycles += 1
        if res.error:
            self.errors.append(res.error)
        self.next_upload = self.clock.wall() + self.uploader.next_delay(res)
        return res

    def finish(self) -> str:
        try:
            self._cycle()  # what the last 30 s released
            pending = len(self.outbox)
            held = len(self.cloud.cloud.store.bodies(self.device_id))
        finally:
            self.events.run_until_complete(self.uploader.close())
            self.events.close()
            self.outbox.close()
            self.cloud.close()
        verdict = "exactly what was released" if held == self.released and not pending else "MISMATCH"
        errors = f", errors: {self.errors[:3]}" if self.errors else ""
        return (f"  reference cloud on 127.0.0.1:{self.cloud.port} (mutual TLS, pinned SPKI, signed batches): "
                f"{self.cycles} uploads, holds {held} of {self.released} released records ({verdict}), "
                f"{pending} left in the outbox{errors}")


def summary(cfg, loop, stats, recorder, elapsed: float, records_path: Path, rep: Replay | None = None,
            seqs: list[int] | None = None, found: dict[int, np.ndarray] | None = None,
            crossings_path: Path | None = None) -> str:
    gt = data.find("mot/MOT15/PETS09-S2L1/gt/gt.txt")
    with records_path.open(encoding="utf-8") as f:
        records = [json.loads(x) for x in f if x.strip()]
    pseudonyms = {(r["epoch"], r["pseudonym"]) for r in records}
    own = np.array(stats.own_ns) / 1e6 if stats.own_ns else np.zeros(1)
    lines = [
        "",
        "Umbra bench run: PETS09-S2L1 (vtest.avi), mock camera, real model, real tracker",
        f"  frames {stats.frames}  ticks {stats.ticks}  overruns {stats.overruns}  detector errors "
        f"{stats.detector_errors}  camera stalls {stats.camera_stalls}",
        f"  detector backend {loop.detector.backend}  tiles {cfg.detector.tiles}  gating {cfg.detector.gating}  "
        f"{_invokes(loop, stats)}  {stats.frames / elapsed:.1f} frames/s wall ({elapsed:.1f} s)",
        f"  detect_hz {cfg.loop.detect_hz:g}, camera {'realtime' if cfg.camera.realtime else 'as fast as asked'}: "
        f"{getattr(loop.camera, 'skipped', 0)} source frames came due while the loop was busy and were skipped",
        f"  loop's own CPU per frame: median {np.median(own):.3f} ms, p99 {np.percentile(own, 99):.3f} ms "
        f"(excluding decode and inference; here it shares the cores with the model and the cloud: "
        f"`umbra bench speed` measures it on its own)",
        f"  released {len(records)} track records ({len(pseudonyms)} pseudonyms; at most one per pseudonym per "
        f"{cfg.quantize.time_bucket_s} s bucket) -> {records_path}",
    ]
    if gt is not None:
        lines += _accuracy(cfg, gt, recorder, records, rep, seqs or list(range(1, stats.frames + 1)), found or {},
                           crossings_path)
    return "\n".join(lines)


def _invokes(loop, stats) -> str:
    n = getattr(loop.detector, "invokes", None)
    return f"{n / max(stats.frames, 1):.2f} invokes a frame" if n is not None else ""


def _accuracy(cfg, gt: Path, recorder, records: list, rep: Replay | None, seqs: list[int],
              found: dict[int, np.ndarray], crossings_path: Path | None = None) -> list[str]:
    """Tracking scored on the frames the loop saw; counting, net per line and way and crossing by crossing:
    first the device's own counts (crossings.jsonl, as `umbra audit-counts --crossings` reads them), then, as a
    secondary figure, a recount from the released records."""
    truth = load_gt(gt)
    s = score(recorder.rows, truth[np.isin(truth[:, 0], seqs)])  # a partial or Pi-rate run: its own frames
    out = [f"  tracking vs gt: MOTA {s['MOTA']:.3f}  IDF1 {s['IDF1']:.3f}  HOTA {s['HOTA']:.3f}  ID switches "
           f"{int(s['IDSW'])}  recall {s['recall']:.3f}  precision {s['precision']:.3f}"]
    lines_cfg = cfg.geometry.lines
    true = count_crossings(paths_from_gt(gt, max(seqs)), lines_cfg)
    bucket = cfg.quantize.time_bucket_s
    if crossings_path is not None:
        table, _ = compare(device_counts(crossings_path), true, lines_cfg)
        out.append(f"  COUNTING (the device's own: its line counter, hold {cfg.geometry.count_hold_s:g} s, "
                   f"{crossings_path}) vs gt crossings, net per line and way (a miss and a false count cancel):")
        out += ["    " + row for row in table.splitlines()]
    if rep is not None:
        out += _one_by_one(cfg, gt, rep, recorder, records, seqs, found, "device",
                           "  the device's own counts crossing by crossing (matched one by one, bench.countexplain)")
    table, _ = compare(count_records(records, lines_cfg), true, lines_cfg)
    out.append(f"  secondary: recounted from the released records' own crossings ({bucket} s buckets, one "
               f"record per pseudonym per bucket: the cloud's view), net per line and way:")
    out += ["    " + row for row in table.splitlines()]
    if rep is not None:
        out += _one_by_one(cfg, gt, rep, recorder, records, seqs, found, "records",
                           f"  secondary: recounted from records crossing by crossing (timed to the bucket, "
                           f"matched up to {WINDOW_S + bucket:g} s apart)")
    return out


def device_counts(crossings_path: Path) -> dict[tuple[str, str], int]:
    """The bench run's counting figure: the device's own line counts, as `umbra audit-counts --crossings` reads
    them (the same file, the same reader)."""
    return tally(read_line_counts(crossings_path))


def _one_by_one(cfg, gt: Path, rep: Replay, recorder, records: list, seqs: list[int], found: dict[int, np.ndarray],
                source: str, title: str) -> list[str]:
    from bench.lib.explain import explain, report

    rep.frames, rep.rows = max(seqs), recorder.rows
    rep.records = records
    dets = [found.get(f, np.zeros((0, 5))) for f in range(1, max(seqs) + 1)]  # none on frames skipped
    findings, matched = explain(rep, np.loadtxt(gt, delimiter=",", ndmin=2), list(cfg.geometry.lines),
                                cfg.camera.fps or 7.0, dets=dets, source=source,
                                bucket_s=cfg.quantize.time_bucket_s)
    true = matched + sum(f.kind == "missed" for f in findings)
    out = [f"{title}: gross error {len(findings)} of {true} true crossings = {len(findings) / max(true, 1):.1%}"
           + (" (goal <= 10%)" if source == "device" else "")]
    return out + ["    " + r for r in report(findings, matched).splitlines()]


def _progress(total: int, disabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="bench run", disable=disabled or not sys.stderr.isatty())


if __name__ == "__main__":
    sys.exit(main())
