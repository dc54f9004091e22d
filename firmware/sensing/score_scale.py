"""The detector's own score scale, learned online: a histogram of the scores of detections that confirmed
tracks took (the tracker's evidence of what a true detection scores), forgetting old samples by halving, and
its quantiles. The tracker's score thresholds follow these quantiles, so a detector whose true detections score
0.85 (or 0.4) needs no retuning of thresholds fixed for one that scores 0.68. Pure: no clock, no I/O;
deterministic."""

from __future__ import annotations

import numpy as np

BINS = 200  # score resolution 0.005 on [0, 1]


class ScoreScale:
    """`add(scores)` with each tick's matched scores; `quantile(q)` once `ready`. `window`: about how many
    recent samples count (older ones fade by halving); `min_samples`: how many before the quantiles are
    trusted."""

    def __init__(self, window: int = 2000, min_samples: int = 50) -> None:
        if window < 2 or min_samples < 1:
            raise ValueError("window: at least 2, min_samples: at least 1")
        self.window, self.min_samples = window, min_samples
        self._counts = np.zeros(BINS)
        self._total = 0.0
        self._seen = 0  # samples ever added (not faded): `ready` once min_samples

    @property
    def ready(self) -> bool:
        return self._seen >= self.min_samples

    def add(self, scores: np.ndarray) -> None:
        n = len(scores)
        if not n:
            return
        idx = np.clip((np.asarray(scores, np.float64) * BINS).astype(np.int64), 0, BINS - 1)
        self._counts += np.bincount(idx, minlength=BINS)
        self._total += n
        self._seen += n
        if self._total >= 2 * self.window:
            self._counts *= 0.5
            self._total *= 0.5

    def quantile(self, q: float) -> float:
        """The score below which a share `q` of the (recent) samples lie, interpolated within its bin."""
        if self._total <= 0:
            raise ValueError("no samples yet")
        cum = np.cumsum(self._counts)
        target = min(max(q, 0.0), 1.0) * cum[-1]
        b = int(np.searchsorted(cum, target, side="left"))
        b = min(b, BINS - 1)
        below = cum[b - 1] if b else 0.0
        inside = self._counts[b]
        frac = (target - below) / inside if inside > 0 else 0.0
        return (b + min(max(frac, 0.0), 1.0)) / BINS
