"""Line crossings from paths (gt tracks or quantized records) and their comparison with the truth."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from firmware.config.sensing import LineConfig
from firmware.sensing.quantize import cell_centre

Key = tuple[str, str]  # (line name, "+" or "-")


@dataclass(frozen=True, slots=True)
class Crossing:
    """One counted crossing: which path, which line and way, and the path step that completed it."""

    path: int
    line: str
    direction: str  # "+": to the line's left (seen from a to b), "-": to its right
    step: int


def crossing_events(paths: Iterable[np.ndarray], lines: Iterable[LineConfig], band: float = 0.5) -> list[Crossing]:
    """Every crossing of every path, in path order: a path counts when it moves from beyond `band` metres on
    one side of a line to beyond `band` on the other, within the line's length."""
    out: list[Crossing] = []
    lines = list(lines)
    for p, path in enumerate(paths):
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
            for k, (s, ok) in enumerate(zip(signed, inside, strict=True)):
                now = 1 if s > band else (-1 if s < -band else 0)
                if now == 0:
                    continue
                if side and now != side and ok:
                    out.append(Crossing(p, ln.name, "+" if now > 0 else "-", k))
                side = now
    return out


def count_crossings(paths: Iterable[np.ndarray], lines: Iterable[LineConfig], band: float = 0.5) -> dict[Key, int]:
    counts: dict[Key, int] = defaultdict(int)
    for c in crossing_events(paths, lines, band):
        counts[(c.line, c.direction)] += 1
    return dict(counts)


def record_paths(records: Sequence[Mapping]) -> dict[tuple[int, str], list[int]]:
    """Indices of the track records of each (key epoch, pseudonym), in release order."""
    by: dict[tuple[int, str], list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.get("schema") == "umbra.track/1":
            by[(r["epoch"], r["pseudonym"])].append(i)
    return dict(by)


def paths_from_records(records: Iterable[Mapping]) -> list[np.ndarray]:
    """One path per (key epoch, pseudonym), in release order, through cell centres."""
    records = list(records)
    return [np.array([cell_centre(records[i]["cell"], records[i]["grid_m"]) for i in idx])
            for idx in record_paths(records).values()]


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
