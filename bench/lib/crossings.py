"""Line crossings from paths (gt tracks or quantized records) and their comparison with the truth.

A recount from records takes each umbra.track/2 record's own `crossings` (those the device's line counter
confirmed for that pseudonym in that bucket), so it equals the device's counts bucket by bucket; only records
without that field (umbra.track/1) are recounted from the path through their cells' centres."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from firmware.config.sensing import LineConfig
from firmware.sensing.quantize import cell_centre
from firmware.sensing.records import TRACK_SCHEMAS

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
        if r.get("schema") in TRACK_SCHEMAS:
            by[(r["epoch"], r["pseudonym"])].append(i)
    return dict(by)


def record_events(records: Sequence[Mapping], lines: Iterable[LineConfig], band: float = 0.5) -> list[Crossing]:
    """Every crossing in released track records, as `crossing_events` gives them: `path` indexes
    `record_paths(records)`, `step` the record within it that carries (or, for a path of umbra.track/1
    records, completes) the crossing. A record's crossings are counts per line and way: each count is one
    crossing, in the record's order (line, then way)."""
    records = list(records)
    lines = list(lines)
    out: list[Crossing] = []
    for p, idx in enumerate(record_paths(records).values()):
        if all("crossings" in records[i] for i in idx):
            out += [Crossing(p, str(line), str(d), k) for k, i in enumerate(idx)
                    for line, d, n in records[i]["crossings"] for _ in range(int(n))]
            continue
        path = np.array([cell_centre(records[i]["cell"], records[i]["grid_m"]) for i in idx])
        out += [replace(c, path=p) for c in crossing_events([path], lines, band)]
    return out


def count_records(records: Sequence[Mapping], lines: Iterable[LineConfig], band: float = 0.5) -> dict[Key, int]:
    """The recount from released track records, per (line, way): see `record_events`."""
    counts: dict[Key, int] = defaultdict(int)
    for c in record_events(records, lines, band):
        counts[(c.line, c.direction)] += 1
    return dict(counts)


def per_bucket(events: Iterable[tuple[float, str, str]], bucket_s: float) -> dict[tuple[int, str, str], int]:
    """(time, line, way) events as counts per (bucket start, line, way), to compare two sources bucket by
    bucket."""
    counts: dict[tuple[int, str, str], int] = defaultdict(int)
    for t, line, d in events:
        counts[(int(t // bucket_s * bucket_s), line, d)] += 1
    return dict(counts)


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
