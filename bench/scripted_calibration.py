"""Measure the real detector's errors on PETS09-S2L1 against the ground truth, in the terms of
`hal.scripted.DetectorErrors`: miss rate, mean length of a run of misses, box jitter, false positives per frame
and the score distributions of true and false detections. The defaults in hal/scripted.py copy what this
prints; `--check` also replays the scripted detector and prints its own figures measured the same way.

The real detector runs as the bench run configures it (`bench/configs/pets09.toml` [detector]).

`python -m bench.scripted_calibration [--threshold 0.3] [--check]`"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.lib import data
from bench.lib.scripted import scripted_detections
from firmware.sensing.tracker import iou_matrix


def measure(dets: list[np.ndarray], gt: np.ndarray, threshold: float) -> dict[str, float]:
    """Match detections (score >= threshold) to gt boxes per frame at IoU >= 0.5 and summarize the errors."""
    hit_by_id: dict[int, list[bool]] = {}
    jitter: list[np.ndarray] = []
    tp_scores: list[float] = []
    fp_scores: list[float] = []
    for f, d in enumerate(dets, 1):
        d = d[d[:, 4] >= threshold]
        g = gt[gt[:, 0] == f]
        gb = np.column_stack((g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]))
        iou = iou_matrix(gb, d[:, :4])
        matched_g, matched_d = set(), set()
        if iou.size:
            r, c = linear_sum_assignment(-iou)
            for i, j in zip(r, c, strict=True):
                if iou[i, j] >= 0.5:
                    matched_g.add(i)
                    matched_d.add(j)
                    w, h = g[i, 4], g[i, 5]
                    jitter.append((d[j, :4] - gb[i]) / np.array([w, h, w, h]))
                    tp_scores.append(d[j, 4])
        for i in range(len(g)):
            hit_by_id.setdefault(int(g[i, 1]), []).append(i in matched_g)
        fp_scores.extend(d[j, 4] for j in range(len(d)) if j not in matched_d)
    misses = [not h for seq in hit_by_id.values() for h in seq]
    runs = [len(r) for seq in hit_by_id.values() for r in _runs([not h for h in seq])]
    jit = np.vstack(jitter) if jitter else np.zeros((0, 4))
    return {
        "miss_rate": float(np.mean(misses)),
        "miss_run": float(np.mean(runs)) if runs else 1.0,
        "jitter": float(np.std(jit)) if len(jit) else 0.0,
        "fp_per_frame": len(fp_scores) / max(len(dets), 1),
        "tp_score_mean": float(np.mean(tp_scores)),
        "tp_score_std": float(np.std(tp_scores)),
        "fp_score_mean": float(np.mean(fp_scores)) if fp_scores else 0.0,
        "fp_score_std": float(np.std(fp_scores)) if fp_scores else 0.0,
    }


def _runs(flags: list[bool]) -> list[list[bool]]:
    out: list[list[bool]] = []
    cur: list[bool] = []
    for x in flags:
        if x:
            cur.append(x)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.lib.detcache import detector_detections
    from bench.lib.replay import CONFIG
    from firmware.config import load

    ap = argparse.ArgumentParser(prog="python -m bench.scripted_calibration", description=__doc__)
    ap.add_argument("--threshold", type=float, default=0.3, help="score threshold for a detection to count")
    ap.add_argument("--check", action="store_true", help="also measure the scripted detector the same way")
    args = ap.parse_args(argv)
    gt_path = data.need("mot/MOT15/PETS09-S2L1/gt/gt.txt")
    gt = np.loadtxt(gt_path, delimiter=",", ndmin=2)
    dcfg = load(CONFIG).detector  # the detector as the bench run configures it (tiles, overlap)
    dets = detector_detections(dcfg)
    real = measure(dets, gt, args.threshold)
    rows = [(f"real SSD, {dcfg.tiles[0]}x{dcfg.tiles[1]} tiles", real)]
    if args.check:
        rows.append(("scripted (defaults)", measure(scripted_detections(gt_path, len(dets)), gt, args.threshold)))
    keys = list(real)
    print(f"{'detector':22s} " + " ".join(f"{k:>13s}" for k in keys))
    for name, m in rows:
        print(f"{name:22s} " + " ".join(f"{m[k]:13.3f}" for k in keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
