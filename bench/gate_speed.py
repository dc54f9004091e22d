"""The gate's own cost, before and after it was cut, in one run: PETS09-S2L1 (vtest.avi) through the gated
device path with the real SSD on CPU; on every frame both the gate (firmware.sensing.gating) and the
reference it replaced (bench.lib.gate_reference, the code as of 6aa6124) plan the regions from the same frame
and are told the same tracks, in alternating order; the loop detects in the new gate's regions. Prints the
frames whose regions differ (must be none), the invokes of each, and the CPU of each (plan + observe, thread
time) as medians and their ratio.

`python -m bench.gate_speed [--frames N]`"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from bench.lib import data
from bench.lib.gate_reference import ReferenceGate
from bench.lib.scenarios import gated
from firmware.cli.assemble import build_detector, build_loop
from firmware.config import load
from firmware.sensing.gating import Gate
from hal.clock import FakeClock
from hal.video import VideoCamera

from .loop_speed import CONFIG


class Twin:
    """Stands in for the loop's gate: both gates plan every frame; the new one's regions are used."""

    def __init__(self, new: Gate, ref: ReferenceGate) -> None:
        self.new, self.ref = new, ref
        self.ns: dict[str, list[int]] = {"new": [], "reference": []}
        self.differ: list[int] = []
        self._k = 0

    def _both(self, call):
        out = {}
        pair = (("new", self.new), ("reference", self.ref))
        for name, gate in pair if self._k % 2 else pair[::-1]:
            t0 = time.thread_time_ns()
            out[name] = call(gate)
            self.ns[name][-1] += time.thread_time_ns() - t0
        return out

    def plan(self, pixels: np.ndarray, t_s: float) -> np.ndarray:
        self._k += 1
        for v in self.ns.values():
            v.append(0)
        out = self._both(lambda g: g.plan(pixels, t_s))
        if not np.array_equal(out["new"], out["reference"]):
            self.differ.append(self._k)
        return out["new"]

    def observe(self, tracks: Sequence, frame_size: tuple[int, int], t_s: float) -> None:
        self._both(lambda g: g.observe(tracks, frame_size, t_s))  # counted with the frame's plan

    def reset(self) -> None:
        self.new.reset()
        self.ref.reset()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gate_speed", description=__doc__)
    ap.add_argument("--frames", type=int, default=None, help="frames of the video (default: all)")
    args = ap.parse_args(argv)
    try:
        data.ensure(verbose=False)
    except data.DataMissing as e:
        print(e, file=sys.stderr)
        return 1
    video = data.find("video/vtest.avi")
    os.environ.setdefault("UMBRA_DATA_DIR", str(data.data_dir()))
    cfg = gated(load(CONFIG))
    cfg = replace(cfg, camera=replace(cfg.camera, source=str(video)))
    from firmware.cli.assemble import model_input_size

    clock = FakeClock()
    cam = VideoCamera(video, lores_size=model_input_size(cfg), main_size=cfg.camera.main_size,
                      fps=cfg.camera.fps or None, clock=clock)
    det = build_detector(cfg, CONFIG.parent)
    loop = build_loop(cfg, CONFIG.parent, clock, camera=cam, detector=det, sinks=[lambda r: None])
    assert loop.gate is not None
    twin = Twin(loop.gate, ReferenceGate(cfg.detector, loop.gate.grid))
    loop.gate = twin  # type: ignore[assignment]
    stats = loop.run(max_ticks=args.frames)
    new, ref = (np.array(twin.ns[k][5:]) / 1e3 for k in ("new", "reference"))
    print(f"PETS09-S2L1, {stats.frames} frames gated (budget {cfg.detector.max_invokes}), detector "
          f"{det.backend}; load average {os.getloadavg()[0]:.1f}")
    print(f"frames whose regions differ from the reference's: {len(twin.differ)}"
          + (f" (first {twin.differ[:5]})" if twin.differ else ""))
    print(f"invokes: new {twin.new.stats.invokes}, reference {twin.ref.stats.invokes}; frames with motion: new "
          f"{twin.new.stats.motion_frames}, reference {twin.ref.stats.motion_frames}")
    print(f"gate CPU a frame (plan + observe), median: new {np.median(new):.1f} us, reference "
          f"{np.median(ref):.1f} us, ratio {np.median(new) / np.median(ref):.3f}; p99 new "
          f"{np.percentile(new, 99):.1f} us, reference {np.percentile(ref, 99):.1f} us")
    return 0 if not twin.differ else 2


if __name__ == "__main__":
    sys.exit(main())
