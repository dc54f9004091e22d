"""A detector that replays MOTChallenge ground truth with the errors a real detector makes: misses that come
in runs (occlusion, not coin flips), box jitter, false positives, and scores drawn like the real ones.

The default error model is fitted to the shared SSD MobileNet as the bench run configures it
(`python -m bench.scripted_calibration --check` compares the two; how it was fitted and its known gaps:
docs/TUNING.md). The replay is seeded and deterministic: the same seed and frame gives the same
detections whatever order frames are asked in.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hal.clock import Clock
from hal.detections import Detections
from hal.errors import DetectorError
from hal.frame import Frame


@dataclass(frozen=True, slots=True)
class DetectorErrors:
    miss_rate: float = 0.068  # share of ground-truth boxes not detected
    miss_run: float = 4.9  # mean length of a run of misses, in frames (misses are correlated in time)
    jitter: float = 0.0975  # std of box edge noise as a share of box width/height
    fp_per_frame: float = 4.74  # mean false positives per frame (Poisson)
    fp_near: float = 0.7  # share of false positives that sit on or beside a person (parts, pairs), not anywhere
    ghost_sites: int = 6  # fixed places (clutter) where the detector keeps seeing a person that is not there
    ghost_rate: float = 0.2  # chance per frame that each site fires
    tp_score: tuple[float, float] = (0.682, 0.085)  # mean and std of a true detection's score
    fp_score: tuple[float, float] = (0.336, 0.051)  # mean and std of a false positive's score

    def validate(self) -> None:
        if not 0.0 <= self.miss_rate < 1.0:
            raise ValueError(f"miss_rate: must be in [0, 1), got {self.miss_rate}")
        if self.miss_run < 1.0:
            raise ValueError(f"miss_run: must be at least 1 frame, got {self.miss_run}")
        if self.jitter < 0 or self.fp_per_frame < 0:
            raise ValueError("jitter, fp_per_frame: must be zero or more")


PERFECT = DetectorErrors(miss_rate=0.0, miss_run=1.0, jitter=0.0, fp_per_frame=0.0, ghost_sites=0, tp_score=(0.9, 0.0))


class ScriptedDetector:
    """Replays `gt` rows (frame, id, x, y, w, h in pixels of a `source_size` image) keyed by `frame.seq`.
    With `loop`, frame numbers past the end wrap around (for long runs on a short sequence)."""

    backend = "scripted"

    def __init__(
        self,
        gt: np.ndarray,
        source_size: tuple[int, int],
        *,
        errors: DetectorErrors = DetectorErrors(),
        seed: int = 0,
        loop: bool = False,
        clock: Clock | None = None,
        cost_s: float = 0.0,
        fail_on: frozenset[int] = frozenset(),
    ) -> None:
        errors.validate()
        gt = np.asarray(gt, np.float64).reshape(-1, 6)
        self.source_size = source_size
        self.errors = errors
        self.seed = seed
        self.loop = loop
        self.clock = clock
        self.cost_s = cost_s
        self.fail_on = fail_on
        self.calls = 0
        self.frames = int(gt[:, 0].max()) if len(gt) else 0
        order = np.argsort(gt[:, 0], kind="stable")
        gt = gt[order]
        self._rows = gt
        self._starts = np.searchsorted(gt[:, 0], np.arange(1, self.frames + 2))
        self._missed = self._miss_pattern(gt)
        site_rng = np.random.default_rng([seed, 3])
        ref = gt[:, 4:6].mean(axis=0) if len(gt) else np.array([30.0, 80.0])
        wh = ref * np.exp(site_rng.normal(0, 0.2, (errors.ghost_sites, 2)))
        xy = site_rng.random((errors.ghost_sites, 2)) * (np.array(source_size) - wh)
        self._ghosts = np.hstack((xy, wh))
        self._ghost_score = np.clip(site_rng.normal(errors.fp_score[0] + 0.25, 0.05, errors.ghost_sites), 0.05, 0.99)

    @classmethod
    def from_mot(cls, gt_path: Path, source_size: tuple[int, int] | None = None, **kw) -> ScriptedDetector:
        """From a MOTChallenge gt.txt (only rows marked as pedestrians considered, when the file says)."""
        path = Path(gt_path)
        try:
            raw = np.loadtxt(path, delimiter=",", ndmin=2)
        except (OSError, ValueError) as e:
            raise DetectorError(f"{path}: not a readable MOTChallenge gt.txt ({e})") from e
        if raw.shape[1] == 9:  # MOT16+: column 7 is 'consider', column 8 the class (1 = pedestrian); MOT15 has 10
            raw = raw[(raw[:, 6] != 0) & np.isin(raw[:, 7], (1, -1))]
        if source_size is None:
            source_size = _seqinfo_size(path.parent.parent / "seqinfo.ini")
        return cls(raw[:, :6], source_size, **kw)

    def _miss_pattern(self, gt: np.ndarray) -> np.ndarray:
        """Per gt row: missed or not, from a two-state Markov chain per identity, so misses come in runs of
        mean `miss_run` with overall rate `miss_rate`."""
        e = self.errors
        missed = np.zeros(len(gt), bool)
        if e.miss_rate == 0.0 or not len(gt):
            return missed
        rng = np.random.default_rng([self.seed, 1])
        leave_miss = 1.0 / e.miss_run
        enter_miss = e.miss_rate * leave_miss / (1.0 - e.miss_rate)
        for ident in np.unique(gt[:, 1]):
            rows = np.flatnonzero(gt[:, 1] == ident)
            u = rng.random(len(rows))
            state = u[0] < e.miss_rate
            for k, r in enumerate(rows):
                if k:
                    state = (u[k] >= leave_miss) if state else (u[k] < enter_miss)
                missed[r] = state
        return missed

    def detect(self, frame: Frame) -> Detections:
        self.calls += 1
        if self.clock is not None and self.cost_s:
            self.clock.sleep_until_ns(self.clock.monotonic_ns() + int(self.cost_s * 1e9))
        _ = frame.pixels[0, 0, 0]  # a released frame raises, as a real detector reading it would
        if frame.seq in self.fail_on:
            raise DetectorError(f"scripted failure on frame {frame.seq}")
        n = frame.seq
        if self.loop and self.frames:
            n = (n - 1) % self.frames + 1
        if not 1 <= n <= self.frames:
            return Detections.empty()
        lo, hi = self._starts[n - 1], self._starts[n]
        rows = self._rows[lo:hi][~self._missed[lo:hi]]
        rng = np.random.default_rng([self.seed, 2, frame.seq])
        e = self.errors
        xywh = rows[:, 2:6].copy()
        if e.jitter:
            xywh[:, :2] += rng.normal(0, e.jitter, (len(rows), 2)) * xywh[:, 2:4]
            xywh[:, 2:4] *= np.exp(rng.normal(0, e.jitter, (len(rows), 2)))
        scores = np.clip(rng.normal(*e.tp_score, len(rows)), 0.05, 0.99)
        n_fp = rng.poisson(e.fp_per_frame) if e.fp_per_frame else 0
        if n_fp:
            ref = rows[:, 4:6].mean(axis=0) if len(rows) else np.array([30.0, 80.0])
            wh = ref * np.exp(rng.normal(0, 0.3, (n_fp, 2)))
            xy = rng.random((n_fp, 2)) * (np.array(self.source_size) - wh)
            if len(rows):
                near = rng.random(n_fp) < e.fp_near
                who = rows[rng.integers(0, len(rows), n_fp)]
                shift = rng.normal(0, 0.6, (n_fp, 2)) * who[:, 4:6]
                wh[near] = who[near, 4:6] * np.exp(rng.normal(0, 0.4, (int(near.sum()), 2)))
                xy[near] = who[near, 2:4] + shift[near]
            xywh = np.vstack((xywh, np.hstack((xy, wh))))
            scores = np.concatenate((scores, np.clip(rng.normal(*e.fp_score, n_fp), 0.05, 0.99)))
        fire = rng.random(len(self._ghosts)) < e.ghost_rate
        if fire.any():
            ghosts = self._ghosts[fire]
            scale = np.tile(ghosts[:, 2:4], (1, 2))  # w, h, w, h
            xywh = np.vstack((xywh, ghosts + rng.normal(0, 0.03, ghosts.shape) * scale))
            g_scores = self._ghost_score[fire] + rng.normal(0, 0.05, len(ghosts))
            scores = np.concatenate((scores, np.clip(g_scores, 0.05, 0.99)))
        w, h = self.source_size
        boxes = np.column_stack((xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]))
        boxes = np.clip(boxes / np.array([w, h, w, h]), 0.0, 1.0).astype(np.float32)
        return Detections(boxes, scores.astype(np.float32), np.zeros(len(boxes), np.int32))

    def close(self) -> None:
        pass


def _seqinfo_size(path: Path) -> tuple[int, int]:

    cp = configparser.ConfigParser()
    if not cp.read(path) or "Sequence" not in cp:
        raise DetectorError(f"{path}: no seqinfo.ini beside the gt; pass source_size=(width, height)")
    return int(cp["Sequence"]["imWidth"]), int(cp["Sequence"]["imHeight"])
