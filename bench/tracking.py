"""Tracker accuracy and cost: Umbra's tracker against ByteTrack, OC-SORT and SORT as Roboflow's `trackers`
package ships them, and Norfair (the tracker Frigate uses), on the same detections in the same run, scored
with TrackEval's metrics (MOTA, IDF1, HOTA; bench.lib.motscore) against the ground truth. The step time is the
tracker's own update per frame (with its adapter), as CPU time of the thread, measured in the same run: the
least over passes that take turns between the trackers, for every tracker alike.

Detections: the real SSD on PETS09-S2L1 (cached by bench.lib.detcache); the MOT15 public detections shipped with
the shared sequences; and the scripted detector replaying ground truth with the real detector's measured
errors (PETS09 and MOT17 sequences), which also shows how faithful a stand-in the scripted detector is.

Beside the scores, the breakdown: false boxes (FP), missed ones (FN), fragmentations (Frag), ids issued, and
HOTA's detection and association accuracy (DetA, AssA): an ID switch shows in IDsw and AssA, a track lost and
started again in Frag and ids.

`python -m bench.tracking [--sequences PETS09 MOT15 MOT17-04-FRCNN ...] [--every K]`"""

from __future__ import annotations

import argparse

from bench.lib.sequences import every, sequences
from bench.lib.trackers import TRACKERS, evaluate_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.tracking", description=__doc__)
    ap.add_argument("--sequences", nargs="+", default=["PETS09", "MOT15", "MOT17-04-FRCNN", "MOT17-09-FRCNN"])
    ap.add_argument("--every", type=int, default=1, metavar="K",
                    help="every K-th frame only, at 1/K of the frame rate (how the trackers stand a slower detector)")
    args = ap.parse_args(argv)
    if args.every < 1:
        ap.error("--every: 1 or more")
    print(f"{'sequence':28s} {'tracker':21s} {'MOTA':>6s} {'IDF1':>6s} {'HOTA':>6s} {'IDsw':>5s} {'recall':>6s} "
          f"{'prec':>6s} {'ms/frame':>8s} {'FP':>6s} {'FN':>6s} {'Frag':>5s} {'ids':>5s} {'DetA':>6s} {'AssA':>6s}")
    verdicts = []
    for name, dets, gt, fps, size in sequences(args.sequences):
        if args.every > 1:
            name = f"{name} /{args.every}"
            dets, gt, fps = every(dets, gt, fps, args.every)
        results = evaluate_all(TRACKERS, dets, gt, fps, size)
        for tname, s in results.items():
            print(f"{name:28s} {tname:21s} {s['MOTA']:6.3f} {s['IDF1']:6.3f} {s['HOTA']:6.3f} {int(s['IDSW']):5d} "
                  f"{s['recall']:6.3f} {s['precision']:6.3f} {s['ms_per_frame']:8.3f} {int(s['FP']):6d} "
                  f"{int(s['FN']):6d} {int(s['Frag']):5d} {int(s['ids']):5d} {s['DetA']:6.3f} {s['AssA']:6.3f}")
        ours = results.pop("umbra")
        best_idf1 = max(r["IDF1"] for r in results.values())
        best_hota = max(r["HOTA"] for r in results.values())
        fastest = min(r["ms_per_frame"] for r in results.values())
        verdicts.append((name, ours["IDF1"] - best_idf1, ours["HOTA"] - best_hota,
                         ours["ms_per_frame"] / fastest))
    print("\ngoal: umbra's IDF1 and HOTA >= the best of the others; step time <= 0.5 x the fastest other")
    print("  (beside each verdict: umbra's margin over the best other, negative when short of it)")
    for name, idf1_margin, hota_margin, ratio in verdicts:
        print(f"  {name:28s} IDF1 {'met' if idf1_margin >= 0 else 'NOT met':7s} {idf1_margin:+.3f}  "
              f"HOTA {'met' if hota_margin >= 0 else 'NOT met':7s} {hota_margin:+.3f}"
              f"  step time {ratio:.2f} x fastest ({'met' if ratio <= 0.5 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
