"""The count audit, the industry's site check: an installer's hand counts against the device's counts over
the same period, per count line and direction, with net (+ minus -) and gross (+ plus -) per line and the
in/out balance over all lines.

The device's counts are its own: the loop's line counter (firmware.sensing.geometry.LineCounter, on exact
ground positions at the detect rate, with [geometry] count_hold_s), the counts it releases, noised, as line-flow
aggregates. `LineCountSink` writes them, per time bucket, line and direction, to `[output] crossings_file`;
`read_line_counts` reads that file back, and the bench run (bench.run) counts from the same file.

A recount from the released track records (`record_crossings`) is the cloud's view: an umbra.track/2 record
carries the crossings the device's line counter confirmed for its pseudonym in its bucket, so the recount
equals the device's own counts bucket by bucket. Records of the older umbra.track/1 carry none and are
recounted from one path per (key epoch, pseudonym) through the cells' centres, one point per time bucket, a
crossing counting when a path moves from beyond `band` metres on one side of a line to beyond `band` on the
other, within the line's length. A crossing's time, either way, is its time bucket's start.

Hand counts are a CSV: either one row per crossing, `time,line,direction`, or tallies, `start,end,line,
direction,count`; times in Unix seconds or ISO 8601 (with a zone); direction `+`/`-` (or `in`/`out`)."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import numpy as np

from firmware.config.sensing import LineConfig
from firmware.errors import InstallerError
from firmware.sensing.loop import EndsRun, RunEnd, TickResult
from firmware.sensing.quantize import cell_centre
from firmware.sensing.records import TRACK_SCHEMAS

Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Crossing:
    t: float
    line: str
    direction: str


@dataclass(frozen=True, slots=True)
class HandCounts:
    """Counts per (line, direction) and the periods they cover ([start, end) pairs)."""

    counts: dict[Key, int]
    periods: tuple[tuple[float, float], ...]
    kind: str  # "crossings" or "tallies"


class LineCountSink(EndsRun):
    """A loop sink writing the loop's own line counts as JSON lines, one per (time bucket, line, direction):
    `{"t": bucket start, "bucket_s", "line", "direction", "count"}`, a bucket's lines written once it has ended
    (and the last one when the loop stops), sorted by line and direction: nothing finer than the bucket."""

    def __init__(self, stream: IO[str], bucket_s: int) -> None:
        self.stream = stream
        self.bucket_s = int(bucket_s)
        self._t: int | None = None
        self._held: Counter[Key] = Counter()
        self.count = 0

    def __call__(self, result: TickResult) -> None:
        t = int(result.wall // self.bucket_s) * self.bucket_s
        if self._t is not None and t != self._t:
            self._write()
        self._t = t
        for c in result.crossings:
            self._held[(c.line, c.direction)] += 1

    def end_run(self, end: RunEnd) -> None:
        """The loop stopped: the last bucket's lines are written."""
        self._write()

    def _write(self) -> None:
        for (line, d), n in sorted(self._held.items()):
            self.stream.write(json.dumps({"t": self._t, "bucket_s": self.bucket_s, "line": line, "direction": d,
                                          "count": n}, separators=(",", ":")) + "\n")
            self.count += n
        self._held.clear()
        self.stream.flush()


def read_line_counts(path: Path) -> list[Crossing]:
    """The device's crossings from a `LineCountSink` file, each at its bucket's start."""
    out: list[Crossing] = []
    try:
        with Path(path).open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    t, ln, d, count = float(r["t"]), str(r["line"]), str(r["direction"]), int(r["count"])
                except (ValueError, KeyError, TypeError) as e:
                    raise InstallerError(f"{path}:{n}: not a line count ({e})") from None
                if d not in ("+", "-") or count < 0:
                    raise InstallerError(f"{path}:{n}: direction {d!r} or count {count} is wrong")
                out += [Crossing(t, ln, d)] * count
    except OSError as e:
        raise InstallerError(f"cannot read line counts {path}: {e}") from None
    return out


def tally(crossings: Iterable[Crossing]) -> dict[Key, int]:
    return dict(Counter((c.line, c.direction) for c in crossings))


def path_crossings(times: np.ndarray, path: np.ndarray, lines: Iterable[LineConfig], band: float,
                   hold: float = 0.0) -> list[Crossing]:
    """The device's rule (firmware.sensing.geometry.LineCounter) on one path: a crossing is due when the path
    is beyond `band` on the other side, within the line's length, and counts once the path has held that side
    for `hold` seconds (a point beyond the band back on the old side within `hold` cancels it); a crossing
    still due where the path ends counts (nothing took it back). Its time is its first point on the new side."""
    out: list[Crossing] = []
    if len(path) < 2:
        return out
    for ln in lines:
        out += _line_crossings(times, path, ln, band, hold)
    return sorted(out, key=lambda c: c.t) if hold > 0 else out


def _line_crossings(times: np.ndarray, path: np.ndarray, ln: LineConfig, band: float, hold: float) -> list[Crossing]:
    out: list[Crossing] = []
    a, b = np.asarray(ln.a, float), np.asarray(ln.b, float)
    d = b - a
    length = float(np.hypot(*d))
    signed = (d[0] * (path[:, 1] - a[1]) - d[1] * (path[:, 0] - a[0])) / length  # > 0: left of a -> b
    along = ((path[:, 0] - a[0]) * d[0] + (path[:, 1] - a[1]) * d[1]) / length
    side, due, since = 0, 0, 0.0
    for k in range(len(path)):
        t = float(times[k])
        if due and t - since >= hold:
            out.append(Crossing(since, ln.name, "+" if due > 0 else "-"))
            side, due = due, 0
        now = 1 if signed[k] > band else (-1 if signed[k] < -band else 0)
        if now == 0 or due:
            due = 0 if now == side else due  # back on the old side within the hold: not a crossing
            continue
        if side and now != side and 0 <= along[k] <= length:
            if hold > 0:
                due, since = now, t
                continue
            out.append(Crossing(t, ln.name, "+" if now > 0 else "-"))
        side = now
    if due:
        out.append(Crossing(since, ln.name, "+" if due > 0 else "-"))
    return out


def record_crossings(records: Iterable[Mapping], lines: Sequence[LineConfig], band: float = 0.5,
                     hold: float = 0.0) -> list[Crossing]:
    """Crossings in released track records (the cloud's recount), each at its record's bucket start. An
    umbra.track/2 record carries the crossings the device's line counter confirmed for it in its bucket
    (`crossings`: counts per line and way), so this equals the device's own counts bucket by bucket. Records
    without them (umbra.track/1) are recounted from one path per (epoch, pseudonym) in release order, one point
    per time bucket; no hold by default: a hold shorter than the bucket cannot be judged on records; the device
    judges it on exact times ([geometry] count_hold_s)."""
    by: dict[tuple[int, str], list[Mapping]] = defaultdict(list)
    out: list[Crossing] = []
    for r in records:
        if r.get("schema") in TRACK_SCHEMAS and "crossings" in r:
            out += [Crossing(float(r["t"]), str(line), str(d)) for line, d, n in r["crossings"] for _ in range(int(n))]
        elif r.get("schema") in TRACK_SCHEMAS:
            by[(r["epoch"], r["pseudonym"])].append(r)
    for recs in by.values():
        xy = np.array([cell_centre(r["cell"], r["grid_m"]) for r in recs], dtype=np.float64)
        out += path_crossings(np.array([r["t"] for r in recs], dtype=np.float64), xy, lines, band, hold)
    return out


def gt_crossings(gt_path: Path, lines: Sequence[LineConfig], fps: float, start_wall: float, band: float = 0.5,
                 max_frame: int | None = None) -> list[Crossing]:
    """The bench's hand counts: crossings of MOT15 gt world paths (columns 8-9), frame n at
    start_wall + (n - 1) / fps."""
    try:
        gt = np.loadtxt(gt_path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as e:
        raise InstallerError(f"cannot read {gt_path} as MOTChallenge gt: {e}") from None
    if gt.shape[1] < 10:
        raise InstallerError(f"{gt_path}: no world coordinates (MOT15 gt has 10 columns, this has {gt.shape[1]})")
    if max_frame is not None:
        gt = gt[gt[:, 0] <= max_frame]
    gt = gt[np.lexsort((gt[:, 0], gt[:, 1]))]
    out: list[Crossing] = []
    for i in np.unique(gt[:, 1]):
        g = gt[gt[:, 1] == i]
        out += path_crossings(start_wall + (g[:, 0] - 1) / fps, g[:, 7:9], lines, band)
    return out


def _time(s: str, where: str) -> float:
    s = s.strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise InstallerError(f"{where}: {s!r} is neither Unix seconds nor an ISO 8601 time") from None
    if dt.tzinfo is None:
        raise InstallerError(f"{where}: {s!r} has no time zone (add Z or +01:00)")
    return dt.timestamp()


def _direction(s: str, where: str) -> str:
    d = {"+": "+", "-": "-", "in": "+", "out": "-"}.get(s.strip().lower())
    if d is None:
        raise InstallerError(f"{where}: direction {s!r} is not +, -, in or out")
    return d


def _rows(path: Path) -> tuple[str, list[list[str]]]:
    """The file's kind ("crossings" or "tallies", from its header) and its rows, comments left out."""
    try:
        rows = [r for r in csv.reader(Path(path).read_text(encoding="utf-8").splitlines())
                if r and not r[0].lstrip().startswith("#")]
    except (OSError, UnicodeDecodeError) as e:
        raise InstallerError(f"cannot read hand counts {path}: {e}") from None
    if not rows:
        raise InstallerError(f"{path}: no hand counts in it")
    head = [c.strip().lower() for c in rows[0]]
    if head == ["time", "line", "direction"]:
        return "crossings", rows
    if head == ["start", "end", "line", "direction", "count"]:
        return "tallies", rows
    raise InstallerError(f"{path}: the first row must be 'time,line,direction' (one row per crossing) or "
                         f"'start,end,line,direction,count' (tallies), not {','.join(rows[0])!r}")


def read_hand_counts(path: Path, lines: Sequence[LineConfig]) -> HandCounts:
    names = {ln.name for ln in lines}
    kind, rows = _rows(path)
    head = rows[0]
    counts: Counter[Key] = Counter()
    periods: list[tuple[float, float]] = []
    times: list[float] = []
    for n, r in enumerate(rows[1:], 2):
        where = f"{path}:{n}"
        if len(r) != len(head):
            raise InstallerError(f"{where}: {len(r)} columns, the header has {len(head)}")
        line = (r[1] if kind == "crossings" else r[2]).strip()
        if line not in names:
            raise InstallerError(f"{where}: no count line {line!r} in the config (lines: {', '.join(sorted(names))})")
        if kind == "crossings":
            times.append(_time(r[0], where))
            counts[(line, _direction(r[2], where))] += 1
        else:
            start, end = _time(r[0], where), _time(r[1], where)
            if end <= start:
                raise InstallerError(f"{where}: end is not after start")
            try:
                counts[(line, _direction(r[3], where))] += int(r[4])
            except ValueError:
                raise InstallerError(f"{where}: count {r[4]!r} is not a whole number") from None
            periods.append((start, end))
    if kind == "crossings":
        periods = [(min(times), max(times) + 1)] if times else []
    return HandCounts(dict(counts), tuple(sorted(set(periods))), kind)


def within(crossings: Iterable[Crossing], periods: Sequence[tuple[float, float]]) -> dict[Key, int]:
    c: Counter[Key] = Counter()
    for x in crossings:
        if any(a <= x.t < b for a, b in periods):
            c[(x.line, x.direction)] += 1
    return dict(c)


def report(hand: Mapping[Key, int], device: Mapping[Key, int], lines: Sequence[LineConfig],
           hand_name: str = "hand") -> tuple[str, dict]:
    """The audit table and its figures: per line and direction, net and gross per line, the in/out
    balance, and the total absolute error over the hand-counted crossings."""
    rows = [f"{'line':<16} {'dir':>3} {hand_name:>6} {'device':>7} {'diff':>5} {'accuracy':>9}"]
    err = total = 0
    for ln in lines:
        for d in "+-":
            h, v = hand.get((ln.name, d), 0), device.get((ln.name, d), 0)
            err, total = err + abs(v - h), total + h
            acc = f"{1 - abs(v - h) / h:9.1%}" if h else f"{'-':>9}"
            rows.append(f"{ln.name:<16} {d:>3} {h:6d} {v:7d} {v - h:+5d} {acc}")
    rows.append(f"{'line':<16} {'net ' + hand_name:>10} {'net device':>10} {'gross ' + hand_name:>12} "
                f"{'gross device':>12}")
    per_line = {}
    for ln in lines:
        hp, hm = hand.get((ln.name, "+"), 0), hand.get((ln.name, "-"), 0)
        dp, dm = device.get((ln.name, "+"), 0), device.get((ln.name, "-"), 0)
        per_line[ln.name] = {"net": (hp - hm, dp - dm), "gross": (hp + hm, dp + dm)}
        rows.append(f"{ln.name:<16} {hp - hm:+10d} {dp - dm:+10d} {hp + hm:12d} {dp + dm:12d}")
    h_in, h_out = sum(n for (_, d), n in hand.items() if d == "+"), sum(n for (_, d), n in hand.items() if d == "-")
    d_in = sum(n for (_, d), n in device.items() if d == "+")
    d_out = sum(n for (_, d), n in device.items() if d == "-")
    rows.append(f"in/out balance over all lines (+ in, - out): {hand_name} {h_in} in, {h_out} out "
                f"({h_in - h_out:+d}); device {d_in} in, {d_out} out ({d_in - d_out:+d})")
    rel = err / total if total else 0.0
    rows.append(f"total absolute error {err} of {total} {hand_name}-counted crossings = {rel:.1%}")
    return "\n".join(rows), {"per_line": per_line, "abs_error": err, "total": total,
                             "balance": ((h_in, h_out), (d_in, d_out))}
