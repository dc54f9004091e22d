"""Counting errors crossing by crossing: the bench run's device path is replayed on cached real detections
(bench.lib.replay), every true crossing (ground-truth world paths) is matched to a counted one on the same line
and way, close in time, and each one left unmatched is given its cause. Counted crossings are the device's own
(`source="device"`: the loop's line counter, on exact ground points at the detect rate, with its hold) or, as a
secondary figure, a recount from the released records (`source="records"`: one record per pseudonym per time
bucket, so a crossing is timed to its bucket's start and matched up to a bucket further apart in time):

- missed true crossings: `detector miss` (no track covers the person on one side of the crossing, and the
  detector missed them most of that time), `no track` (the same, though the detector found them: a track
  started late or ended early), `fragmentation`
  (the person's track changes id across the line, so neither piece crosses), `ID swap` (the track that had
  the person before the line follows someone else after it), `grazing` (one track follows the person across,
  but its path never gets `band` beyond both sides: box/homography error or a crossing near the line's end),
  `quantization` (the track's exact 7 Hz ground path crosses, its released grid-cell path, one cell per bucket,
  does not; for the device's own counts: `hold`, the exact path crosses but the count was held back, the track
  seen back on the old side within [geometry] count_hold_s, or not seen long enough);
- false counted crossings: `false track` (the track follows no one), `ID swap` (it follows one person before
  the line and another after), `double count` (its person crossed about then, and that crossing was counted
  by another track too), `jitter` (its person does not cross here then: the track's position strays, e.g. a
  box stretched over a neighbour in a group), `time` (its person crosses this way about then, but further
  apart in time than the matching window).

`python -m bench.counting --explain [--tiles NX NY] [--overlap F]` prints it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from bench.lib.crossings import Crossing, crossing_events, record_events, record_paths
from bench.lib.replay import Replay
from firmware.config.sensing import LineConfig
from firmware.sensing.tracker import iou_matrix

Key = tuple[str, str]  # (line name, "+" or "-")

WINDOW_S = 4.0  # a counted crossing matches a true one on the same line and way at most this far apart
SIDE_S = 3.0  # who a track follows is read over this long on each side of a crossing


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # "missed" or "false"
    line: str
    direction: str
    frame: int
    cause: str
    detail: str


class Identity:
    """Per frame, which gt person each track box covers (IoU >= 0.5, optimal assignment), both ways."""

    def __init__(self, rows: list, gt: np.ndarray, dets: list[np.ndarray] | None = None) -> None:
        self.person_of: dict[tuple[int, int], int] = {}  # (frame, track id) -> gt id
        self.track_of: dict[tuple[int, int], int] = {}  # (frame, gt id) -> track id
        self.detected: set[tuple[int, int]] = set()  # (frame, gt id) with a detection at IoU >= 0.5
        res = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
        for f in np.unique(gt[:, 0]).astype(int):
            g = gt[gt[:, 0] == f]
            gb = np.column_stack((g[:, 2], g[:, 3], g[:, 2] + g[:, 4], g[:, 3] + g[:, 5]))
            r = res[res[:, 0] == f]
            for gi, ri in _pairs(gb, np.column_stack((r[:, 2], r[:, 3], r[:, 2] + r[:, 4], r[:, 3] + r[:, 5]))):
                self.person_of[(f, int(r[ri, 1]))] = int(g[gi, 1])
                self.track_of[(f, int(g[gi, 1]))] = int(r[ri, 1])
            if dets is not None and f <= len(dets):
                for gi, _ in _pairs(gb, dets[f - 1][:, :4]):
                    self.detected.add((f, int(g[gi, 1])))

    def follows(self, track: int, frames: range) -> int | None:
        """The gt person a track covers most often over `frames` (None: no one)."""
        seen = Counter(self.person_of[(f, track)] for f in frames if (f, track) in self.person_of)
        return seen.most_common(1)[0][0] if seen else None

    def tracks(self, person: int, frames: range) -> Counter:
        return Counter(self.track_of[(f, person)] for f in frames if (f, person) in self.track_of)


def _pairs(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    iou = iou_matrix(a, b)
    if not iou.size:
        return []
    r, c = linear_sum_assignment(-iou)
    return [(int(i), int(j)) for i, j in zip(r, c, strict=True) if iou[i, j] >= 0.5]


def counted_crossings(rep: Replay, lines: list[LineConfig], fps: float, band: float = 0.5, source: str = "device",
                      bucket_s: float = 5.0) -> tuple[list[Crossing], list[int], list[int]]:
    """The counted crossings (line and way), the frame each is timed at and the track behind each: the device's
    own (its line counter's, on the tick it counted) or recounted from the released records (at the start of the
    bucket whose record completed it)."""
    if source == "device":
        counted = [Crossing(-1, line, d, -1) for _, _, line, d in rep.crossings]
        return counted, [f for f, _, _, _ in rep.crossings], [tid for _, tid, _, _ in rep.crossings]
    if source != "records":
        raise ValueError(f"source {source!r}: 'device' or 'records'")
    keys = list(record_paths(rep.records))
    idx = list(record_paths(rep.records).values())
    counted = record_events(rep.records, lines, band)  # each record's own crossings (umbra.track/2)
    frames = [max(1, int(round((rep.records[idx[c.path][c.step]]["t"] - rep.start_wall) * fps)) + 1) for c in counted]
    return counted, frames, [rep.pseudonym_of[keys[c.path]] for c in counted]


def explain(rep: Replay, gt: np.ndarray, lines: list[LineConfig], fps: float, band: float = 0.5,
            dets: list[np.ndarray] | None = None, source: str = "device",
            bucket_s: float = 5.0) -> tuple[list[Finding], int]:
    """Findings for every unmatched crossing, and the number of matched ones. `source`: the device's own counts
    or the recount from records (see the module's docstring)."""
    gt = gt[gt[:, 0] <= rep.frames]
    gt = gt[np.lexsort((gt[:, 0], gt[:, 1]))]
    gids = [int(i) for i in np.unique(gt[:, 1])]
    gframes = [gt[gt[:, 1] == i][:, 0].astype(int) for i in gids]
    true = crossing_events([gt[gt[:, 1] == i][:, 7:9] for i in gids], lines, band)
    counted, c_frame, c_track = counted_crossings(rep, lines, fps, band, source, bucket_s)
    window = WINDOW_S + (bucket_s if source == "records" else 0.0)  # a record's time is known to a bucket
    t_frame = [int(gframes[c.path][c.step]) for c in true]
    ident = Identity(rep.rows, gt, dets)
    side = int(round(SIDE_S * fps))
    cost = np.full((len(true), len(counted)), 1e6)
    for i, t in enumerate(true):
        for j, c in enumerate(counted):
            dt = abs(t_frame[i] - c_frame[j]) / fps
            if (t.line, t.direction) == (c.line, c.direction) and dt <= window:
                who = ident.follows(c_track[j], range(c_frame[j] - side, c_frame[j] + side + 1))
                cost[i, j] = dt + (0.0 if who == gids[t.path] else window)
    rows, cols = linear_sum_assignment(cost) if cost.size else (np.zeros(0, int), np.zeros(0, int))
    ok = [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if cost[i, j] < 1e6]
    hit_t, hit_c = {i for i, _ in ok}, {j for _, j in ok}
    ctx = _Context(rep, ident, lines, band, side, fps, gt, "hold" if source == "device" else "quantization")
    findings = [ctx.missed(true[i], gids[true[i].path], t_frame[i]) for i in range(len(true)) if i not in hit_t]
    matched_people = {(gids[true[i].path], true[i].line, true[i].direction) for i in hit_t}
    findings += [ctx.false(counted[j], c_track[j], c_frame[j], gt, gids, true, t_frame, matched_people)
                 for j in range(len(counted)) if j not in hit_c]
    return sorted(findings, key=lambda f: (f.kind, f.line, f.frame)), len(ok)


@dataclass(frozen=True)
class CountFigures:
    """One source's counting figures against the gt: `net`, per line and way (a miss and a false count cancel),
    and `gross`, crossings matched one by one (`explain`: each miss and each false count an error)."""

    true: int  # true crossings: matched ones and missed ones
    net: int
    findings: list[Finding]

    @property
    def gross(self) -> int:
        return len(self.findings)

    def causes(self) -> str:
        """The gross errors by cause, most common first: "3 ID swap, 1 jitter"."""
        return ", ".join(f"{n} {c}" for c, n in Counter(f.cause for f in self.findings).most_common())


def figures(rep: Replay, gt: np.ndarray, lines: list[LineConfig], fps: float, counted: Mapping[Key, int],
            truth: Mapping[Key, int], dets: list[np.ndarray] | None = None, source: str = "device",
            bucket_s: float = 5.0) -> CountFigures:
    """Net and gross counting error of `counted` (what `source` counted, per line and way: the device's own
    counts as its crossings file gives them, or the recount from records) against `truth`, the gt's."""
    findings, matched = explain(rep, gt, lines, fps, dets=dets, source=source, bucket_s=bucket_s)
    net = sum(abs(counted.get(k, 0) - truth.get(k, 0)) for k in set(counted) | set(truth))
    return CountFigures(matched + sum(f.kind == "missed" for f in findings), net, findings)


class _Context:
    def __init__(self, rep: Replay, ident: Identity, lines: list[LineConfig], band: float, side: int,
                 fps: float, gt: np.ndarray, lost: str = "quantization") -> None:
        self.rep, self.ident, self.band, self.side, self.fps, self.gt = rep, ident, band, side, fps, gt
        self.lost = lost  # what it is called when the exact path crosses and the count does not
        self.lines = {ln.name: ln for ln in lines}

    def _crosses(self, path: np.ndarray, line: str, direction: str) -> bool:
        return any(c.direction == direction for c in crossing_events([path], [self.lines[line]], self.band))

    def _signed(self, line: str, xy: np.ndarray) -> np.ndarray:
        ln = self.lines[line]
        a, b = np.asarray(ln.a, float), np.asarray(ln.b, float)
        d = (b - a) / np.hypot(*(b - a))
        return d[0] * (xy[:, 1] - a[1]) - d[1] * (xy[:, 0] - a[0])

    def _track_near(self, person: int, frame: int, step: int) -> int | None:
        """The track covering a person at `frame`, or the nearest frame within a second going `step`-wards."""
        for k in range(int(self.fps) + 1):
            tid = self.ident.track_of.get((frame + k * step, person))
            if tid is not None:
                return tid
        return None

    def missed(self, t: Crossing, person: int, frame: int) -> Finding:
        """Who had the person when they were last beyond the band on the side they left (`start`), and when
        the crossing was complete (`frame`)."""
        g = self.gt[self.gt[:, 1] == person]
        gf = g[:, 0].astype(int)
        old_side = -1.0 if t.direction == "+" else 1.0
        was = np.flatnonzero((gf < frame) & (self._signed(t.line, g[:, 7:9]) * old_side > self.band))
        start = int(gf[was[-1]]) if len(was) else frame - self.side
        span = range(start, frame + 1)
        shown = sum((f, person) in self.ident.detected for f in span)
        where = f"gt {person}, frames {start}-{frame}; detected in {shown}/{len(span)} of them"
        tb, ta = self._track_near(person, start, -1), self._track_near(person, frame, +1)
        if tb is None or ta is None:
            gap = range(start - int(self.fps), start + 1) if tb is None else range(frame, frame + int(self.fps) + 1)
            seen = sum((f, person) in self.ident.detected for f in gap)
            cause = "detector miss" if seen < len(gap) / 2 else "no track"
            return Finding("missed", t.line, t.direction, frame, cause,
                           f"{where}; track {tb} on the side left, {ta} on the side reached")
        if tb != ta:
            later = self.ident.follows(tb, range(frame, frame + self.side + 1))
            cause = "ID swap" if later not in (None, person) else "fragmentation"
            return Finding("missed", t.line, t.direction, frame, cause,
                           f"{where}; track {tb} on the side left, {ta} on the side reached (track {tb} then "
                           f"follows {later})")
        exact = np.array([(x, y) for f, x, y in self.rep.ground.get(tb, []) if start - self.side <= f <= frame
                          + self.side])
        if len(exact) > 1 and self._crosses(exact, t.line, t.direction):
            why = "its released cells do not" if self.lost == "quantization" else "the line counter held it back"
            return Finding("missed", t.line, t.direction, frame, self.lost,
                           f"{where}; track {tb}: its exact path crosses then, {why}")
        return Finding("missed", t.line, t.direction, frame, "grazing",
                       f"{where}; track {tb} follows it, but never gets {self.band} m beyond both sides")

    def false(self, c: Crossing, track: int, frame: int, gt: np.ndarray, gids: list[int], true: list[Crossing],
              t_frame: list[int], matched_people: set) -> Finding:
        before = self.ident.follows(track, range(frame - self.side, frame))
        after = self.ident.follows(track, range(frame, frame + self.side + 1))
        where = f"track {track} at frame {frame}, follows gt {before} before, {after} after"
        if before is None and after is None:
            return Finding("false", c.line, c.direction, frame, "false track", where)
        if before is not None and after is not None and before != after:
            return Finding("false", c.line, c.direction, frame, "ID swap", where)
        person = before if before is not None else after
        same = [t_frame[i] for i, t in enumerate(true)
                if gids[t.path] == person and (t.line, t.direction) == (c.line, c.direction)]
        near = [f for f in same if abs(f - frame) <= 2 * WINDOW_S * self.fps]
        if near and (person, c.line, c.direction) in matched_people:
            return Finding("false", c.line, c.direction, frame, "double count",
                           f"{where}; gt {person} crosses at frames {near}, counted by another track")
        if near:
            return Finding("false", c.line, c.direction, frame, "time", f"{where}; gt {person} crosses at {near}")
        g = gt[gt[:, 1] == person]
        ln = self.lines[c.line]
        a, b = np.asarray(ln.a, float), np.asarray(ln.b, float)
        d = (b - a) / np.hypot(*(b - a))
        dist = np.abs(d[0] * (g[:, 8] - a[1]) - d[1] * (g[:, 7] - a[0]))
        window = (g[:, 0] >= frame - self.side) & (g[:, 0] <= frame + self.side)
        closest = float(dist[window].min()) if window.any() else float(dist.min())
        return Finding("false", c.line, c.direction, frame, "jitter",
                       f"{where}; gt {person} comes within {closest:.2f} m of the line around then")


def report(findings: list[Finding], matched: int) -> str:
    rows = [f"{matched} crossings matched; {sum(f.kind == 'missed' for f in findings)} true crossings missed, "
            f"{sum(f.kind == 'false' for f in findings)} false ones counted"]
    for kind in ("missed", "false"):
        causes = Counter(f.cause for f in findings if f.kind == kind)
        rows.append(f"  {kind}: " + ", ".join(f"{n} {c}" for c, n in causes.most_common()))
    for f in findings:
        rows.append(f"  {f.kind:6s} {f.line:<12s} {f.direction} frame {f.frame:4d}  {f.cause:14s} {f.detail}")
    return "\n".join(rows)


def run(config: Path, band: float = 0.5, tiles: tuple[int, int] | None = None, overlap: float | None = None) -> str:
    """Replay the bench run on the config's detector settings (cached detections) and explain its counting."""
    from dataclasses import replace

    from bench.lib import data
    from bench.lib.detcache import detector_detections
    from bench.lib.replay import pets_config, replay

    cfg = pets_config(config)
    if tiles is not None:
        cfg = replace(cfg, detector=replace(cfg.detector, tiles=(int(tiles[0]), int(tiles[1]))))
    if overlap is not None:
        cfg = replace(cfg, detector=replace(cfg.detector, overlap=overlap))
    dets = detector_detections(cfg.detector, progress=False)
    rep = replay(dets, cfg, config.parent)
    gt_path = data.find("mot/MOT15/PETS09-S2L1/gt/gt.txt")
    if gt_path is None:
        return data.missing_message(["mot/MOT15/PETS09-S2L1/gt/gt.txt"])
    gt = np.loadtxt(gt_path, delimiter=",", ndmin=2)
    lines, fps, bucket = list(cfg.geometry.lines), cfg.loop.detect_hz, cfg.quantize.time_bucket_s
    out = ["the device's own counts (its line counter, [geometry] count_hold_s):"]
    out.append(report(*explain(rep, gt, lines, fps, band, dets)))
    out.append(f"secondary: recounted from the released records ({bucket} s buckets, one record per pseudonym "
               f"per bucket; matched up to {WINDOW_S + bucket:g} s apart):")
    out.append(report(*explain(rep, gt, lines, fps, band, dets, source="records", bucket_s=bucket)))
    return "\n".join(out)
