"""Counting scenes beyond PETS09: count lines drawn on MOTChallenge sequences with ground-truth tracks
(static cameras: MOT17-02, MOT17-04, MOT17-09, MOT20-01), the device path run on the scripted detector
(hal.scripted, the real SSD's measured errors), counted by the device's own line counter and recounted from the
quantized records it releases (each umbra.track/2 record carries its pseudonym's confirmed crossings of its
bucket), against the crossings of the gt's own tracks.

These sequences carry no world coordinates, so the ground plane is the image's, scaled to metres by the
median person height (a person is taken as 1.7 m): the homography is diag(s, s, 1) on the foot point
(bottom centre), the same for the records and the gt. Two lines per scene, fixed before any run (no
tuning on the counts): one upright through the middle of the frame, one level at 70% of its height, each
spanning the frame and running a frame's length past its edges (a walker whose feet are below the frame as they
cross still crosses: bench.lib.motscenes.count_lines). The tracker runs on its default settings (none tuned on
these scenes). Rates: the sequence's own, and the Pi 4's (3 frames a second from a camera that skips what came
due meanwhile).

`python -m bench.countscenes [--scenes MOT17-09-FRCNN ...] [--pi4-only]`"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from bench.lib import data
from bench.lib.crossings import count_crossings, count_records, per_bucket
from bench.lib.explain import explain
from bench.lib.motscenes import SCENES, Scene, scene, scene_config
from bench.lib.replay import CONFIG, PETS_START_WALL, RecordingTracker, Replay, _Collector
from bench.lib.scenarios import PI4_HZ
from firmware.config import UmbraConfig, load
from hal.clock import FakeClock


def run_scene(sc: Scene, cfg: UmbraConfig, realtime: bool, crossed: list | None = None) -> Replay:
    """The device path over the scene at `cfg.loop.detect_hz`; frames numbered as the source's. `crossed`,
    when given, gets the loop's own crossings as (wall time, line, way), as its line counter counted them (what
    `[output] crossings_file` holds per bucket)."""
    from firmware.cli.assemble import build_loop
    from hal.scripted import ScriptedDetector
    from hal.synthetic import SyntheticCamera

    clock = FakeClock(start_wall=PETS_START_WALL)
    frames = int(sc.gt[:, 0].max())
    cam = SyntheticCamera(clock, lores_size=(8, 8), main_size=None, source_size=sc.size, fps=sc.fps,
                          frames=frames, realtime=realtime)
    det = ScriptedDetector(sc.gt[:, :6], sc.size)
    out = Replay([], [])
    collect = _Collector(out)

    def keep(r) -> None:  # a TickResult
        if crossed is not None:
            crossed.extend((r.wall, c.line, c.direction) for c in r.crossings)

    loop = build_loop(cfg, CONFIG.parent, clock, camera=cam, detector=det, sinks=[collect, keep])
    collect.pseudonyms = loop.quantizer.pseudonyms
    recorder = RecordingTracker(loop.tracker)
    loop.tracker = recorder

    def seen(frame, dets, wall) -> None:
        recorder.seq = collect.seq = frame.seq

    loop.frame_hooks.append(seen)
    loop.run()
    out.frames, out.rows = frames, recorder.rows
    out.records = [json.loads(x) for x in collect.stream.getvalue().splitlines() if x.strip()]
    return out


def bucket_counts(crossed: list, records: Sequence[Mapping], bucket_s: float) -> tuple[dict, dict]:
    """The device's own crossings and the records' per (bucket start, line, way): equal when each record
    carries its pseudonym's crossings of its bucket (umbra.track/2)."""
    device = per_bucket(crossed, bucket_s)
    recs = per_bucket(((float(r["t"]), str(line), str(d)) for r in records for line, d, n in r.get("crossings", ())
                       for _ in range(int(n))), bucket_s)
    return device, recs


def count_row(sc: Scene, rep: Replay, label: str, crossed: list, bucket_s: float) -> str:
    lines = list(sc.lines)
    truth = count_crossings([sc.gt[sc.gt[:, 1] == i][:, 7:9] for i in np.unique(sc.gt[:, 1])], lines)
    device: Counter[tuple[str, str]] = Counter((line, d) for _, line, d in crossed)
    counted = count_records(rep.records, lines)
    true = sum(truth.values())

    def net_of(c: Mapping[tuple[str, str], int]) -> int:
        return sum(abs(c.get(k, 0) - truth.get(k, 0)) for k in set(c) | set(truth))

    dev_gross = len(explain(rep, sc.gt, lines, sc.fps, source="device")[0])
    findings, _ = explain(rep, sc.gt, lines, sc.fps, source="records", bucket_s=bucket_s)
    per = "  ".join(f"{ln.name}{d} {truth.get((ln.name, d), 0)}/{device.get((ln.name, d), 0)}/"
                    f"{counted.get((ln.name, d), 0)}" for ln in lines for d in "+-")
    gross = len(findings)
    causes = ", ".join(sorted({f"{sum(g.cause == f.cause for g in findings)} {f.cause}" for f in findings}))
    by_dev, by_rec = bucket_counts(crossed, rep.records, bucket_s)
    off = sum(abs(by_dev.get(k, 0) - by_rec.get(k, 0)) for k in set(by_dev) | set(by_rec))
    same = "yes" if off == 0 else f"NO {off}"
    pct = 1 / max(true, 1)
    return (f"{sc.name:<15} {label:<9} {true:5d} {net_of(device):4d} {net_of(device) * pct:6.1%} {dev_gross:5d} "
            f"{dev_gross * pct:6.1%} {net_of(counted):4d} {net_of(counted) * pct:6.1%} {gross:5d} {gross * pct:6.1%} "
            f"{same:>6}   {per}   [records' gross errors: {causes}]")


@data.clean_exit
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.countscenes", description=__doc__)
    ap.add_argument("--scenes", nargs="*", default=list(SCENES))
    args = ap.parse_args(argv)
    data.ensure_env()
    base = load(CONFIG)
    print(f"{'':<25} {'':>5} {'device (line counter)':^24} {'recount from records':^24}")
    print(f"{'scene':<15} {'rate':<9} {'true':>5} {'net':>4} {'net%':>6} {'gross':>5} {'gross%':>6} {'net':>4} "
          f"{'net%':>6} {'gross':>5} {'gross%':>6} {'=/bkt':>6}   per line and way: true/device/records   "
          f"[gross errors by cause]")
    for name in args.scenes:
        sc = scene(name)
        for label, hz, realtime in ((f"{sc.fps:g} fps", sc.fps, False), (f"Pi {PI4_HZ:g} fps", PI4_HZ, True)):
            cfg = scene_config(base, sc, hz)
            crossed: list = []
            rep = run_scene(sc, cfg, realtime, crossed)
            print(count_row(sc, rep, label, crossed, cfg.quantize.time_bucket_s), flush=True)
    print("(goal at the Pi rate: net <= 5%, gross <= 10% of true crossings; net: per line and way, a miss and a "
          "false count cancel; gross: crossings matched one by one, bench.lib.explain (records: timed to their "
          "bucket); device: the loop's own line counter, [geometry] count_band_m and count_hold_s; records: each "
          "umbra.track/2 record's crossings; =/bkt: the records' counts equal the device's in every bucket, line "
          "and way)")
    return 0




if __name__ == "__main__":
    sys.exit(main())
