"""How many chains one person forms in a demographics window, and the contribution bound chosen from it.

    python -m bench.demographics_chains [--quick] [--crops N]

The demographics count one per chain (`firmware.demographics.chains`: tracker tracks joined by the line
counter's join rule), not one per person: the device cannot tell people apart across a gap. This bench runs the
device's tracker (its defaults) and the device's `Chains` on the shared sequences with ground-truth tracks and a
fixed camera (MOT15 PETS09-S2L1 and TUD-Campus with their public detections, PETS09-S2L1 with the real SSD as the
bench run tiles it; PETS09, MOT17-02, -04, -09 and MOT20-01 ground truth replayed by both scripted error models,
`hal.scripted` and `hal.crowd`: the rows of `bench.tracking_loso`, from `bench.lib.motrows`; the moving-camera
sequences are left out, the sensor is fixed), at the native rate and at 1/4 (the Pi), the ground plane scaled by
the median person height (`bench.lib.motscenes`). The whole frame is one zone and every chain is taken to get a
face estimate, so the counts are the most the hook could count.

Each tick the tracks (confirmed and coasting, as the hook sees them) are matched to the gt boxes (IoU >= 0.5, one
to one). Per window (windows of 10 s, 60 s and 900 s from the sequence's start; every sequence is shorter than
900 s, so that row is the whole sequence, the longest window measurable here) and gt person seen in it:
`own` = the chains whose frames matched that person most; `crop` = the chains that had that person in one of
their crops, on the hook's crop schedule (first when first seen, then after `crop_gap_s`, each gap doubled, at
most `crops_per_track`, or `--crops`; the per-tick bound and faces not found are left out, so every due crop is
taken); `L1` = how far the person can move the window's histograms: 1 for each chain cropped on them alone (its
count goes with them), 2 for each chain cropped on them and another (an identity switch: their crops may move
its count to another cell). L1 is the figure the release's sensitivity m must cover. What this leaves out: a
person's effect on the tracking of others (the tracker run without them would differ), and re-entries after
longer absences than these sequences hold (a person leaving a shop and coming back 10 minutes later). Printed
per row, rate and window: person-windows, and for each figure the share above 1, the 99th percentile and max.

The bound `max_chains_per_person` m is chosen leave one sequence out (a video counts once: PETS09-S2L1's rows are
one sequence): for each sequence, m is the least that covers at least COVER of the OTHER sequences' person-windows
(L1, both rates, all windows); the left-out sequence's person-windows are then reported against that m (share
with more chains than m, and the largest group-privacy factor m'/m). The rule on every sequence (the shipped
default) is printed only beside the folds."""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.lib.data import clean_exit
from bench.lib.motrows import Row, at_rate, rows
from bench.lib.motscenes import PERSON_M
from firmware.config.demographics import DemographicsConfig
from firmware.config.sensing import GeometryConfig
from firmware.demographics.chains import Chains
from firmware.sensing.tracker import Tracker, iou_matrix

STATIC = ("PETS09-S2L1", "TUD-Campus", "02", "04", "09", "MOT20-01")  # fixed cameras
WINDOWS_S = (10, 60, 900)
RATES = (1, 4)
COVER = 0.99
JOIN_S = GeometryConfig().count_join_s
CROPS, CROP_GAP_S = DemographicsConfig().crops_per_track, DemographicsConfig().crop_gap_s
MAX_M = 20


@dataclass(frozen=True)
class Counts:
    own: np.ndarray  # chains per person-window, the person's own chains
    crop: np.ndarray  # chains that had the person in one of their crops
    l1: np.ndarray  # the most the person moves the histograms: 1 per chain cropped on them alone, 2 per shared


class _Window:
    """One window length's chains, crop schedule (the hook's: first crop when first seen, then after
    `crop_gap_s`, each gap doubled, at most `crops_per_track`) and what they matched."""

    def __init__(self, length_s: int, crops: int = CROPS) -> None:
        self.length_s, self.cur, self.most = length_s, -1, crops
        self.chains = Chains(JOIN_S)
        self.hits: dict[tuple[int, int], Counter] = defaultdict(Counter)  # (window, slot) -> gt id: frames
        self.crops: dict[tuple[int, int], set[int]] = defaultdict(set)  # (window, slot) -> gt ids in its crops
        self.due: dict[tuple[int, int], list[int]] = {}  # (window, slot) -> [crops, due ns, gap ns]
        self.seen: set[tuple[int, int]] = set()

    def tick(self, t_ns: int, ids: list[int], ground: np.ndarray, match: dict[int, int], people: np.ndarray) -> None:
        win = int(t_ns / 1e9 // self.length_s)
        if win != self.cur:
            self.chains.clear()
            self.cur = win
        self.seen.update((win, int(p)) for p in people)
        if not ids:
            return
        done: set[int] = set()
        for i, s in enumerate(self.chains.slots(ids, ground, t_ns)):
            key = (win, s)
            if i in match:
                self.hits[key][match[i]] += 1
            if s in done:
                continue
            done.add(s)
            d = self.due.setdefault(key, [0, t_ns, int(CROP_GAP_S * 1e9)])
            if d[0] < self.most and t_ns >= d[1]:
                d[0], d[1], d[2] = d[0] + 1, t_ns + d[2], d[2] * 2
                if i in match:
                    self.crops[key].add(match[i])

    def counts(self) -> Counts:
        own: Counter = Counter()
        crop: Counter = Counter()
        l1: Counter = Counter()
        for (win, _), c in self.hits.items():
            own[(win, c.most_common(1)[0][0])] += 1
        for (win, _), people in self.crops.items():
            for p in people:
                crop[(win, p)] += 1
                l1[(win, p)] += 1 if len(people) == 1 else 2  # alone: the count goes; shared: it may move cell
        keys = sorted(self.seen)
        return Counts(*(np.array([c[k] for k in keys], np.int64) for c in (own, crop, l1)))


def _match(boxes: np.ndarray, g: np.ndarray) -> dict[int, int]:
    """Track index -> gt id, one to one at IoU >= 0.5."""
    if not len(g) or not len(boxes):
        return {}
    gb = np.column_stack((g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]))
    iou = iou_matrix(boxes, gb)
    return {int(i): int(g[j, 1]) for i, j in zip(*linear_sum_assignment(-iou), strict=True) if iou[i, j] >= 0.5}


def measure(dets: list[np.ndarray], gt: np.ndarray, fps: float, size, window_s: Sequence[int],
            crops: int = CROPS) -> dict[int, Counts]:
    """Per window length: the chains of every person-window (persons seen in the window)."""
    scale = PERSON_M / float(np.median(gt[:, 5]))
    tracker = Tracker()
    wins = [_Window(w, crops) for w in window_s]
    by_frame = {int(f): gt[gt[:, 0] == f] for f in np.unique(gt[:, 0])}
    for f, d in enumerate(dets, 1):
        tracks = tracker.update(d[:, :4], d[:, 4], 1.0 / fps, size)
        g = by_frame.get(f, np.zeros((0, 6)))
        boxes = np.array([t.box for t in tracks], np.float64).reshape(-1, 4)
        ground = np.column_stack(((boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3])) * scale
        match = _match(boxes, g)
        for w in wins:
            w.tick(int((f - 1) / fps * 1e9), [t.track_id for t in tracks], ground, match, g[:, 1])
    return {w.length_s: w.counts() for w in wins}


def least_m(counts: np.ndarray, cover: float = COVER) -> int:
    """The least m with at least `cover` of the person-windows at m chains or fewer."""
    for m in range(1, MAX_M + 1):
        if np.mean(counts <= m) >= cover:
            return m
    return MAX_M


def _stats(c: np.ndarray) -> str:
    return (f"{np.mean(c > 1):>7.1%}{np.percentile(c, 99):>6.0f}{c.max():>5d}" if len(c)
            else f"{'-':>7}{'-':>6}{'-':>5}")


@clean_exit
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.demographics_chains")
    ap.add_argument("--quick", action="store_true", help="the scripted rows only")
    ap.add_argument("--crops", type=int, default=DemographicsConfig().crops_per_track,
                    help="crops per chain and window (the config's crops_per_track)")
    args = ap.parse_args(argv)
    if not 1 <= args.crops <= 20:
        ap.error("--crops: use 1 to 20")
    todo: list[Row] = [r for r in rows() if r.group in STATIC and (not args.quick or r.kind == "scripted")]
    per: dict[str, list[np.ndarray]] = defaultdict(list)  # sequence -> L1 per person-window, by row, rate, window
    print(f"crops per chain and window: {args.crops}")
    print("chains per person-window (own: the person's chains; crop: the chains with them in a crop; L1: what they"
          " move); share > 1, p99, max")
    print(f"{'row':<28}{'rate':>5}{'window':>7}{'persons':>8}{'own >1':>7}{'p99':>6}{'max':>5}"
          f"{'crop>1':>7}{'p99':>6}{'max':>5}{'L1 >1':>7}{'p99':>6}{'max':>5}")
    for row in todo:
        for k in RATES:
            dets, gt, fps, size = at_rate(row, k)
            res = measure(dets, gt, fps, size, WINDOWS_S, args.crops)
            for w, c in res.items():
                per[row.group].append(c.l1)
                print(f"{row.name:<28}{'1/' + str(k):>5}{w:>6}s{len(c.own):>8}{_stats(c.own)}{_stats(c.crop)}"
                      f"{_stats(c.l1)}", flush=True)
    print(f"\nleave one sequence out: m = the least covering {COVER:.0%} of the other sequences' person-windows"
          " (L1, both rates, all windows)")
    print(f"{'left out':<14}{'m':>3}{'persons':>9}{'> m':>8}{'most m/m':>10}")
    for group in per:
        others = np.concatenate([np.concatenate(v) for g, v in per.items() if g != group])
        mine = np.concatenate(per[group])
        m = least_m(others)
        print(f"{group:<14}{m:>3}{len(mine):>9}{np.mean(mine > m):>8.2%}{mine.max() / m:>10.2f}")
    every = np.concatenate([np.concatenate(v) for v in per.values()])
    m = least_m(every)
    print(f"\non every sequence (the shipped default, beside the folds): m = {m}; {np.mean(every > m):.2%} of "
          f"{len(every)} person-windows above it, the largest L1 {every.max()} (factor {every.max() / m:.2f})")
    print(f"noise per cell: discrete Laplace of scale m/epsilon; at epsilon 1: {m}, its std "
          f"{math.sqrt(2 * math.exp(-1 / m)) / (1 - math.exp(-1 / m)):.2f} (m = 1: "
          f"{math.sqrt(2 * math.exp(-1)) / (1 - math.exp(-1)):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
