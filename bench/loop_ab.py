"""The loop's own CPU per frame, this tree's code against another revision's, in one process (issue 17 point 4).

On a machine shared with other work, runs of `umbra bench speed` minutes apart differ by more than a few
percent, so a cut of a few percent shows only as a ratio measured within one run. This loads the other
revision's `firmware` and `hal` (from `git archive`, into a temporary folder) beside this tree's, builds the
PETS09 loop from each (gated by default, `--tiled` for the fixed tiling), each with its own video camera and
one shared real detector, and ticks them alternately, frame by frame, which one goes first alternating. Prints
each side's median own CPU per frame (not decoding, not inference), their ratio and the median of the per-frame
ratios, the machine's load average, and whether the two loops' tick results (crossings, ground states to the
bit, records without their pseudonyms, whose keys are random per run) and the regions the gate planned differ
on any frame: a change meant to save CPU must change neither.

`python -m bench.loop_ab [--base main] [--frames 300] [--tiled]`"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bench.lib import data
from bench.lib.replay import pets_video_config
from bench.lib.scenarios import gated

CONFIG = Path(__file__).parent / "configs" / "pets09.toml"
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("firmware", "hal")


def load_revision(rev: str, into: Path) -> tuple[ModuleType, ModuleType, ModuleType]:
    """`firmware.cli.assemble`, `hal.clock` and `hal.video` of revision `rev`, imported from a copy of its
    packages in `into` and then taken out of `sys.modules`, so this tree's import afresh beside them."""
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *PACKAGES], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    ours = {k: v for k, v in sys.modules.items() if k.split(".")[0] in PACKAGES}
    for k in ours:
        del sys.modules[k]
    sys.path.insert(0, str(into))
    try:
        import firmware.cli.assemble as asm
        import hal.clock as clock
        import hal.video as video
    finally:
        sys.path.remove(str(into))
        for k in [k for k in sys.modules if k.split(".")[0] in PACKAGES]:
            del sys.modules[k]
        sys.modules.update(ours)
    return asm, clock, video


def _digest(tick: Any) -> tuple:
    g = tick.ground
    records = sorted(repr((r.epoch, r.t, r.cell, r.grid_m, r.size, r.heading, r.zone, r.crossings))
                     for r in tick.records)
    return (tick.wall, [(c.track_id, c.line, c.direction) for c in tick.crossings], g.track_ids.tobytes(),
            g.xy.tobytes(), g.velocity.tobytes(), g.height_m.tobytes(), records)


@data.clean_exit
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.loop_ab", description=__doc__)
    ap.add_argument("--base", default="main", help="the revision to compare against (git)")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--tiled", action="store_true", help="the fixed tiling instead of the gate")
    args = ap.parse_args(argv)
    import firmware.cli.assemble as new_asm
    import hal.clock as new_clock
    import hal.video as new_video

    cfg, video = pets_video_config()
    cfg = cfg if args.tiled else gated(cfg)
    detector = new_asm.build_detector(cfg, CONFIG.parent)
    regions: dict[str, list[bytes]] = {"base": [], "this": []}
    ticks: dict[str, list[tuple]] = {"base": [], "this": []}
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"base": load_revision(args.base, Path(tmp)), "this": (new_asm, new_clock, new_video)}
        loops = {}
        for name, (asm, clock_mod, video_mod) in sides.items():
            clock = clock_mod.FakeClock()
            cam = video_mod.VideoCamera(video, lores_size=new_asm.model_input_size(cfg), main_size=cfg.camera.main_size,
                                        fps=cfg.camera.fps or None, clock=clock)
            loop = asm.build_loop(cfg, CONFIG.parent, clock, camera=cam, detector=detector, profile=True,
                                  sinks=[lambda t, n=name: ticks[n].append(_digest(t))])
            loops[name] = (loop, clock, clock.monotonic_ns())
        detect: Any = detector.detect  # (a region detector's: regions as a second argument)
        print(f"{'tiled' if args.tiled else 'gated'} loop, {args.base} against this tree, {args.frames} frames each, "
              f"ticked alternately; load average {os.getloadavg()[0]:.1f}", flush=True)
        own: dict[str, list[int]] = {"base": [], "this": []}
        for k in range(args.frames):
            for name in ("base", "this") if k % 2 == 0 else ("this", "base"):
                loop, clock, start = loops[name]

                def logged(frame: Any, r: np.ndarray | None = None, name: str = name) -> Any:
                    regions[name].append(b"" if r is None else np.asarray(r).tobytes())
                    return detect(frame) if r is None else detect(frame, r)

                detector.detect = logged  # type: ignore[method-assign]
                clock.sleep_until_ns(start + k * loop._period_ns)
                if not loop.tick():
                    raise SystemExit(f"the video ended after {k} frames")
                if k >= 5:
                    own[name].append(loop.stats.own_ns[-1])
        del detector.detect
    base, this = np.array(own["base"]) / 1e6, np.array(own["this"]) / 1e6
    print(f"loop's own CPU per frame, median: {args.base} {np.median(base):.3f} ms, "
          f"this tree {np.median(this):.3f} ms, "
          f"ratio {np.median(this) / np.median(base):.3f} (median of per-frame ratios {np.median(this / base):.3f}; "
          f"p90 {np.percentile(base, 90):.3f} / {np.percentile(this, 90):.3f} ms; {len(base)} frames)")
    differ = sum(a != b for a, b in zip(ticks["base"], ticks["this"], strict=True))
    planned = sum(a != b for a, b in zip(regions["base"], regions["this"], strict=True))
    print(f"ticks whose results differ: {differ} of {len(ticks['this'])}; frames whose regions differ: {planned} of "
          f"{len(regions['this'])}; load average at the end {os.getloadavg()[0]:.1f}")
    return 1 if differ or planned else 0


if __name__ == "__main__":
    sys.exit(main())
