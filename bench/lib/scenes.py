"""Ground truth of the privacy bench's scenes: true occupancy and flow per window."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import TickResult


def truth(ticks: Sequence[TickResult], geo: Geometry, window_s: int) -> tuple[dict, dict, dict]:
    """Unbounded true values: mean present per (window, zone) at 1 Hz, crossings per (window, line, dir)."""
    present: dict[tuple[int, str], list[int]] = defaultdict(list)
    seen: dict[tuple[int, str], set[int]] = defaultdict(set)
    samples: dict[int, int] = defaultdict(int)
    flow: dict[tuple[int, str, str], int] = defaultdict(int)
    last_second = None
    for t in ticks:
        w = int(t.wall // window_s) * window_s
        for c in t.crossings:
            flow[(w, c.line, c.direction)] += 1
        if int(t.wall) != last_second:
            last_second = int(t.wall)
            samples[w] += 1
            zones = geo.zone_of(t.ground.xy)
            for z in geo.config.zones:
                present[(w, z.name)].append(sum(1 for x in zones if x == z.name))
            for tid, x in zip(t.ground.track_ids, zones, strict=True):
                if x is not None:
                    seen[(w, x)].add(int(tid))
    occ = {key: float(np.sum(v)) / samples[key[0]] for key, v in present.items()}
    visitors = {key: float(len(v)) for key, v in seen.items()}
    return occ, dict(flow), visitors
