"""bench.lib.privacy_eval.run_seeds (the scene accumulated once, its windows released per seed) gives the very
records and figures of run_scene (the scene fed tick by tick) for every seed, at both window lengths."""

from __future__ import annotations

import numpy as np

from bench.lib.privacy_eval import Scene, run_scene, run_seeds
from firmware.config.sensing import GeometryConfig, LineConfig, ZoneConfig
from firmware.sensing.geometry import Crossing, Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState

GEO = Geometry(GeometryConfig(zones=(ZoneConfig("site", ((-10, -10), (10, -10), (10, 10), (-10, 10))),),
                              lines=(LineConfig("mid", (0, -10), (0, 10)),)))


def synthetic(seconds: int = 200) -> Scene:
    """People walking across the site at 2 Hz, some lingering: 30 of them, one crossing each."""
    rng = np.random.default_rng(3)
    starts, stays = rng.integers(0, seconds - 20, 30), rng.integers(5, 120, 30)
    ticks = []
    for i in range(seconds * 2):
        wall = i * 0.5
        here = [p for p in range(30) if starts[p] <= wall < starts[p] + stays[p]]
        ids = np.array(here, np.int64)
        xy = np.array([[-8 + 16 * (wall - starts[p]) / stays[p], 0.0] for p in here]).reshape(-1, 2)
        cross = [Crossing(p, "mid", "+") for p in here if abs(wall - starts[p] - stays[p] / 2) < 0.25]
        ticks.append(TickResult(wall, [], cross, GroundState(ids, xy, np.zeros_like(xy), np.full(len(ids), 1.7))))
    return Scene("synthetic", ticks, GEO)


def test_run_seeds_is_run_scene_seed_by_seed():
    sc = synthetic()
    for window in (60, 900):
        many: list[dict] = []
        got = run_seeds(sc, 5, 1.0, window, [0, 1, 2], records=many, presence_cap_s=240)
        one: list[dict] = []
        want = [run_scene(sc, 5, 1.0, window, seed, records=one, presence_cap_s=240) for seed in (0, 1, 2)]
        assert got == want
        assert many == one and many
