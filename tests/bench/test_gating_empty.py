"""bench.gating's empty scene runs through the gated loop as the device builds it (it crashed once the loop
needed a quantizer, and nothing ran it) and spends almost nothing on a still scene."""

from __future__ import annotations

from bench.gating import empty_scene
from bench.lib.replay import pets_config
from bench.lib.scenarios import gated


def test_the_empty_scene_runs_and_the_gate_rests() -> None:
    invokes = empty_scene(gated(pets_config()), hz=7.0, seconds=10.0)
    assert 0 < invokes <= 0.5  # the sweep still looks now and then; motion finds nothing
