"""Counting accuracy: line crossings counted from the quantized track records a device released (the cloud's
view) against crossings in the ground-truth tracks, per line and direction. Both sides go through the same
counter: a crossing counts when a path moves from beyond `band` metres on one side of the line to beyond
`band` on the other (hysteresis, so a path hovering on the line counts once, not on every wobble).

`python -m bench.counting --records tracks.jsonl [--gt gt.txt] [--config pets09.toml]`."""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from firmware.geometry import LineConfig
from firmware.quantize import cell_centre

Key = tuple[str, str]  # (line name, "+" or "-")


def count_crossings(paths: Iterable[np.ndarray], lines: Iterable[LineConfig], band: float = 0.5) -> dict[Key, int]:
    counts: dict[Key, int] = defaultdict(int)
    lines = list(lines)
    for path in paths:
        if len(path) < 2:
            continue
        for ln in lines:
            a, b = np.asarray(ln.a, float), np.asarray(ln.b, float)
            d = b - a
            length = float(np.hypot(*d))
            signed = (d[0] * (path[:, 1] - a[1]) - d[1] * (path[:, 0] - a[0])) / length  # >0: left
            along = ((path[:, 0] - a[0]) * d[0] + (path[:, 1] - a[1]) * d[1]) / length
            inside = (along >= 0) & (along <= length)
            side = 0
            for s, ok in zip(signed, inside, strict=True):
                now = 1 if s > band else (-1 if s < -band else 0)
                if now == 0:
                    continue
                if side and now != side and ok:
                    counts[(ln.name, "+" if now > 0 else "-")] += 1
                side = now
    return dict(counts)


def paths_from_records(records: Iterable[Mapping]) -> list[np.ndarray]:
    """One path per (key epoch, pseudonym), in release order, through cell centres."""
    by: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for r in records:
        if r.get("schema") != "umbra.track/1":
            continue
        by[(r["epoch"], r["pseudonym"])].append(cell_centre(r["cell"], r["grid_m"]))
    return [np.array(p) for p in by.values()]


def paths_from_gt(gt_path: Path, max_frame: int | None = None) -> list[np.ndarray]:
    """MOT15 gt world coordinates (columns 8-9), one path per id in frame order (up to `max_frame`)."""
    gt = np.loadtxt(gt_path, delimiter=",", ndmin=2)
    if max_frame is not None:
        gt = gt[gt[:, 0] <= max_frame]
    gt = gt[np.lexsort((gt[:, 0], gt[:, 1]))]
    return [gt[gt[:, 1] == i][:, 7:9] for i in np.unique(gt[:, 1])]


def compare(found: Mapping[Key, int], truth: Mapping[Key, int], lines: Iterable[LineConfig]) -> tuple[str, float]:
    rows = ["line           dir  true  counted  error"]
    total_true = total_err = 0
    for ln in lines:
        for direction in "+-":
            t, c = truth.get((ln.name, direction), 0), found.get((ln.name, direction), 0)
            total_true += t
            total_err += abs(c - t)
            rows.append(f"{ln.name:<14} {direction:>3} {t:5d} {c:8d} {c - t:+6d}")
    rel = total_err / total_true if total_true else 0.0
    rows.append(f"total absolute error {total_err} of {total_true} true crossings = {rel:.1%} (goal <= 5%)")
    return "\n".join(rows), rel


def main(argv: list[str] | None = None) -> int:
    from firmware.config import load

    ap = argparse.ArgumentParser(prog="umbra bench counting", description=__doc__)
    ap.add_argument("--records", type=Path, required=True, help="JSON lines of released track records")
    ap.add_argument("--gt", type=Path, help="MOT15 gt.txt with world coordinates (default: PETS09-S2L1)")
    ap.add_argument("--config", type=Path, default=Path(__file__).parent / "configs" / "pets09.toml")
    ap.add_argument("--band", type=float, default=0.5)
    args = ap.parse_args(argv)
    from bench import data

    gt = args.gt or data.find("mot/MOT15/PETS09-S2L1/gt/gt.txt")
    if gt is None:
        print(data.missing_message(["mot/MOT15/PETS09-S2L1/gt/gt.txt"]), file=sys.stderr)
        return 1
    lines = load(args.config).geometry.lines
    with args.records.open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    table, _ = compare(count_crossings(paths_from_records(records), lines, args.band),
                       count_crossings(paths_from_gt(gt), lines, args.band), lines)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
