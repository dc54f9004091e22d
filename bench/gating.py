"""Inference where people are, measured: PETS09-S2L1 (vtest.avi) through the whole device path with the real
SSD on CPU, once with the fixed 3x2 tiling (six invokes a frame) and once gated (firmware.sensing.gating:
regions around motion and tracked people, a sweep of the tiles every sweep_s), in the same run; and at the
rate and budget a Pi 4's CPU allows (`pi4`: 3 frames a second from a camera that skips what came due
meanwhile, at most 4 invokes a frame). Per row: invokes per frame, detection recall against the gt (IoU 0.5,
at the tracker's score floors), tracking (bench.motscore), and counting: first the device's own counts (the loop's
line counter, written per time bucket as a sensor writes `[output] crossings_file` and read back as `umbra bench
run` reads it), net per line and way and gross (crossings matched one by one, bench.lib.explain); then, as a
secondary figure, the recount from the released records (one per pseudonym per time bucket, each umbra.track/2
record carrying the crossings the line counter confirmed for it there: the same counts bucket by bucket; gross
from records is matched up to a bucket further apart in time). Then an empty
scene (hal.synthetic.SceneCamera), where only the sweeps cost anything.

`python -m bench.gating [--frames N]`"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bench.lib import data
from bench.lib.crossings import compare, count_crossings, count_records, paths_from_gt
from bench.lib.explain import figures
from bench.lib.motscore import load_gt, score
from bench.lib.replay import CONFIG, PETS_START_WALL, DeviceCounts, RecordingTracker, Replay, _Collector
from bench.lib.scenarios import PI4_HZ, PI4_INVOKES, gated, pi4
from firmware.cli.assemble import build_loop
from firmware.config import UmbraConfig, load
from firmware.sensing.tracker import iou_matrix
from hal.clock import FakeClock


@dataclass
class LiveRun:
    """One run of the device path on the video: what it released and tracked (bench.replay.Replay, frames
    numbered as the source's), the detections handed to the tracker per source frame, the invokes."""

    rep: Replay
    dets: dict[int, np.ndarray]  # source frame -> (N, 5) pixel boxes and scores
    invokes: int
    seconds: float
    device: dict[tuple[str, str], int]  # the device's own counts, per line and way, from its crossings file


def live(cfg: UmbraConfig, base: Path, frames: int | None = None) -> LiveRun:
    clock = FakeClock(start_wall=PETS_START_WALL)
    out = Replay([], [])
    collect = _Collector(out)
    folder = tempfile.TemporaryDirectory(prefix="umbra-gating-")
    device = DeviceCounts(Path(folder.name) / "crossings.jsonl", cfg.quantize.time_bucket_s)
    loop = build_loop(cfg, base, clock, sinks=[collect, device])
    collect.pseudonyms = loop.quantizer.pseudonyms
    recorder = RecordingTracker(loop.tracker)
    loop.tracker = recorder
    dets: dict[int, np.ndarray] = {}

    def hook(frame, found, wall) -> None:
        recorder.seq = collect.seq = frame.seq
        if found is not None:
            p = found.persons(cfg.loop.min_score)
            dets[frame.seq] = np.column_stack((p.to_pixels(*frame.source_size), p.scores))

    loop.frame_hooks.append(hook)
    t0 = time.perf_counter()
    stats = loop.run(max_ticks=frames)
    out.frames = max(dets) if dets else 0
    out.rows = recorder.rows
    import json

    out.records = [json.loads(x) for x in collect.stream.getvalue().splitlines() if x.strip()]
    invokes = int(getattr(loop.detector, "invokes", stats.frames))
    with folder:
        counts = device.counts()
    return LiveRun(out, dets, invokes, time.perf_counter() - t0, counts)


def per_frame(dets: dict[int, np.ndarray]) -> list[np.ndarray]:
    """Detections by source frame (index frame - 1); frames the loop never saw (skipped) have none."""
    return [dets.get(f, np.zeros((0, 5))) for f in range(1, max(dets, default=0) + 1)]


def detection_recall(dets: dict[int, np.ndarray], gt: np.ndarray, floor: float) -> float:
    """Share of gt boxes, on the frames detected, that a detection at score >= floor covers at IoU >= 0.5."""
    from scipy.optimize import linear_sum_assignment

    hit = total = 0
    for f, d in dets.items():
        g = gt[gt[:, 0] == f]
        total += len(g)
        d = d[d[:, 4] >= floor]
        if not len(g) or not len(d):
            continue
        iou = iou_matrix(np.column_stack((g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5])), d[:, :4])
        r, c = linear_sum_assignment(-iou)
        hit += int((iou[r, c] >= 0.5).sum())
    return hit / max(total, 1)


def row(name: str, run: LiveRun, cfg: UmbraConfig, gt_path: Path) -> tuple[str, list[str]]:
    gt = load_gt(gt_path)
    world = np.loadtxt(gt_path, delimiter=",", ndmin=2)
    seen = np.array(sorted(run.dets))
    s = score(run.rep.rows, gt[np.isin(gt[:, 0], seen)])
    lines = list(cfg.geometry.lines)
    truth = count_crossings(paths_from_gt(gt_path, run.rep.frames), lines)
    recounted = count_records(run.rep.records, lines)
    fps, bucket, dets = cfg.camera.fps or 7.0, cfg.quantize.time_bucket_s, per_frame(run.dets)
    dev = figures(run.rep, world, lines, fps, run.device, truth, dets, "device", bucket)
    rec = figures(run.rep, world, lines, fps, recounted, truth, dets, "records", bucket)
    frames = len(run.dets)
    text = (f"{name:<34} {run.invokes / max(frames, 1):6.2f} {detection_recall(run.dets, gt, 0.5):7.3f} "
            f"{detection_recall(run.dets, gt, 0.1):7.3f} {s['MOTA']:6.3f} {s['IDF1']:6.3f} {s['HOTA']:6.3f} "
            f"{s['recall']:7.3f}   {_err(dev.net, dev.true)}  {_err(dev.gross, dev.true)}   |  "
            f"{_err(rec.net, rec.true)}  {_err(rec.gross, rec.true)}  {frames:4d} {run.seconds:6.1f}")
    table = ["the device's own counts (crossings file):", *compare(run.device, truth, lines)[0].splitlines(),
             f"gross {dev.gross} of {dev.true}: {dev.causes() or 'none'}",
             "secondary, recounted from the released records:", *compare(recounted, truth, lines)[0].splitlines(),
             f"gross {rec.gross} of {rec.true}: {rec.causes() or 'none'}"]
    return text, table


def _err(n: int, true: int) -> str:
    return f"{n:2d}/{true} {n / max(true, 1):5.1%}"


HEADER = (f"{'PETS09-S2L1, real SSD on CPU':<34} {'inv/f':>6} {'rec@.5':>7} {'rec@.1':>7} {'MOTA':>6} {'IDF1':>6} "
          f"{'HOTA':>6} {'trk rec':>7}   {'DEVICE net':>11}  {'DEVICE gross':>12}   |  {'records net':>11}  "
          f"{'records gross':>13}  {'frm':>4} {'wall s':>6}")


def empty_scene(cfg: UmbraConfig, hz: float, seconds: float = 120.0) -> float:
    """Invokes a frame on an empty scene (a still background with sensor noise) through the gated loop."""
    from hal.synthetic import SceneCamera, SceneDetector

    clock = FakeClock()
    nobody = lambda seq: np.zeros((0, 4))  # noqa: E731
    cam = SceneCamera(clock, nobody, lores_size=(450, 300), fps=hz, frames=int(seconds * hz))
    det = SceneDetector(nobody)
    at = replace(cfg, loop=replace(cfg.loop, detect_hz=hz))
    loop = build_loop(at, CONFIG.parent, clock, camera=cam, detector=det)  # type: ignore[arg-type]
    stats = loop.run()
    return det.invokes / max(stats.frames, 1)


@data.clean_exit
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gating", description=__doc__)
    ap.add_argument("--frames", type=int, default=None, help="stop each run after N ticks")
    ap.add_argument("--config", type=Path, default=CONFIG)
    args = ap.parse_args(argv)
    data.ensure_env()
    cfg = load(args.config)
    cfg = replace(cfg, camera=replace(cfg.camera, source=str(data.need("video/vtest.avi"))))
    gt_path = data.need("mot/MOT15/PETS09-S2L1/gt/gt.txt")
    d = cfg.detector
    runs = [(f"tiles {d.tiles[0]}x{d.tiles[1]} (every frame)", cfg),
            (f"gated, budget {d.max_invokes}, sweep {d.sweep_s:g} s", gated(cfg)),
            (f"Pi 4: {PI4_HZ:g} fps, tiles {d.tiles[0]}x{d.tiles[1]}", replace(pi4(cfg), detector=d)),
            (f"Pi 4: {PI4_HZ:g} fps, gated, budget {PI4_INVOKES}", pi4(cfg))]
    print(HEADER)
    tables = []
    for name, c in runs:
        text, table = row(name, live(c, args.config.parent, args.frames), c, gt_path)
        print(text, flush=True)
        tables.append((name, table))
    print("(DEVICE: the headline, the device's own counts (its line counter, [geometry] count_hold_s), as its "
          "crossings file gives them; records: secondary, recounted from the released records' own crossings "
          "(umbra.track/2, one record per pseudonym per time bucket; gross matched a bucket further apart); "
          "net: per line and way, a miss and a false count cancel; "
          "gross: crossings matched one by one, each miss and each false count an error; goals at the Pi rate: "
          "gross <= 10%, net <= 5%; rec@: detections handed to the tracker at score >= .5 / .1 covering a gt box "
          "at IoU 0.5)")
    for name, table in tables:
        print(f"\n{name}:")
        print("\n".join("  " + t for t in table))
    print(f"\nempty scene (synthetic, 120 s), gated: {empty_scene(gated(cfg), 7.0):.3f} invokes a frame at 7 fps, "
          f"{empty_scene(pi4(cfg), PI4_HZ):.3f} at {PI4_HZ:g} fps with budget {PI4_INVOKES} (goal <= 0.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
