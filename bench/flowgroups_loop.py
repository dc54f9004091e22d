"""Customer-flow groups in the running loop: what they cost per tick, as ratios within one run.

    python -m bench.flowgroups_loop [--frames 300] [--rounds 3] [--window-s 60]

PETS09 (vtest.avi at 7 fps, boxes replayed from the gt so the detector costs nothing), the loop as `umbra run`
builds it, on a fake clock (so the cadence guard never defers: every due crop is embedded and the figures are
the whole work). Rounds alternate the loop without and with the flow-group hook:
1. the loop's own CPU per frame (the loop thread, as `umbra bench speed` measures it), median, off vs on;
2. one embedding (the real MobileNet embedder): wall and process CPU (all its threads), median and p95;
3. embeddings per tick (the bound) and per track and window; the window close (hashing, release, and the
   population basis when it is fitted), slowest.
4. `--consistency`: the whole sequence through the live path (tracker boxes, crops from the main stream, the
   basis fitted on the device) with short windows; how often a track seen in two consecutive windows lands
   in the same group both times (the tracker's id standing in for the person), against two different tracks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.lib import data
from firmware.cli.assemble import build_loop
from firmware.config import load
from firmware.config.flows import FlowGroupConfig
from firmware.flows.hook import build_flow_hook
from hal.clock import FakeClock

CONFIG = Path(__file__).parent / "configs" / "pets09.toml"


class TimedEmbedder:
    def __init__(self, real) -> None:  # noqa: ANN001
        self.real = real
        self.wall_ns: list[int] = []
        self.cpu_ns: list[int] = []

    def embed(self, crop: np.ndarray) -> np.ndarray:
        w, c = time.perf_counter_ns(), time.process_time_ns()
        try:
            return self.real.embed(crop)
        finally:
            self.wall_ns.append(time.perf_counter_ns() - w)
            self.cpu_ns.append(time.process_time_ns() - c)


def one_run(cfg, frames: int, embedder: TimedEmbedder | None, seed: int = 0) -> dict:  # noqa: ANN001
    from hal.video import VideoCamera

    clock = FakeClock()
    camera = VideoCamera(Path(cfg.camera.source), clock=clock, lores_size=(300, 300), main_size=(640, 480),
                         fps=7.0)
    loop = build_loop(cfg, CONFIG.parent, clock, camera=camera, sinks=[lambda r: None], profile=True)
    out: dict = {"records": 0, "close_ms": [], "fit_ms": [], "per_tick": [], "hook_ms": []}
    hook = None
    if embedder is not None:
        hook = build_flow_hook(cfg.flowgroups, loop, [lambda recs: None], embedder=embedder,
                               rng=np.random.default_rng(seed))
        assert hook is not None
        close = hook.close_window

        def timed_close(wall: float) -> list:
            basis, t0 = hook._basis, time.perf_counter_ns()
            recs = close(wall)
            out["fit_ms" if hook._basis is not basis else "close_ms"].append((time.perf_counter_ns() - t0) / 1e6)
            out["records"] += len(recs)
            return recs

        hook.close_window = timed_close  # type: ignore[method-assign]
        last = [0]

        def count(_result) -> None:  # noqa: ANN001
            out["per_tick"].append(hook.embedded - last[0])
            last[0] = hook.embedded

        def timed_hook(frame, tracks, wall: float) -> None:  # noqa: ANN001
            t0 = time.thread_time_ns()
            hook(frame, tracks, wall)
            out["hook_ms"].append((time.thread_time_ns() - t0) / 1e6)

        loop.sinks.append(count)
        loop.track_hooks.append(timed_hook)
    stats = loop.run(max_ticks=frames)
    if hook is not None:
        hook.close_window(clock.wall())
        out["embedded"] = hook.embedded
    out["own_ms"] = np.median(stats.own_ns) / 1e6
    return out


def consistency(cfg, embedder, seeds: int = 3) -> None:  # noqa: ANN001
    """Per window, each released track's (zone, group), captured by a recording FlowGroupWindow (bench only)."""
    from firmware.flows import hook as flowhook
    from firmware.flows.groups import FlowGroupWindow

    log: list[tuple[int, dict[int, int]]] = []

    class Recording(FlowGroupWindow):
        def close(self, hasher, rng, zones=()):  # noqa: ANN001, ANN202
            ids = [tid for tid, acc in self._tracks.items() if acc.n and acc.zones]
            real, got = hasher.groups, {}

            def spy(emb, r):  # noqa: ANN001, ANN202
                got["g"] = real(emb, r)
                return got["g"]

            hasher.groups = spy
            try:
                return super().close(hasher, rng, zones)
            finally:
                del hasher.groups
                if "g" in got:
                    log.append((self.window_start, dict(zip(ids, got["g"].tolist(), strict=True))))

    same = chance = pairs = others = 0
    flowhook.FlowGroupWindow = Recording  # type: ignore[misc]
    try:
        for seed in range(seeds):
            log.clear()
            one_run(cfg, 795, embedder, seed=seed)
            by_start = dict(log)
            for start, groups in log:
                nxt = by_start.get(start + cfg.flowgroups.window_s)
                if nxt is None:
                    continue
                for tid, g in groups.items():
                    if tid in nxt:
                        same, pairs = same + (nxt[tid] == g), pairs + 1
                    chance += sum(g == h for t, h in nxt.items() if t != tid)
                    others += sum(1 for t in nxt if t != tid)
    finally:
        flowhook.FlowGroupWindow = FlowGroupWindow  # type: ignore[misc]
    print(f"\n4. live path, whole PETS09 sequence, windows of {cfg.flowgroups.window_s} s, {seeds} seeds: a track in "
          f"two consecutive windows lands in the same group {same / max(pairs, 1):.1%} of the time ({pairs} "
          f"track pairs); two different tracks {chance / max(others, 1):.2%} ({others} pairs)")


def main(argv: Sequence[str] | None = None) -> int:
    from hal.embedder import Embedder, EmbedderConfig

    ap = argparse.ArgumentParser(prog="python -m bench.flowgroups_loop", description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--window-s", type=int, default=60)
    ap.add_argument("--consistency", action="store_true", help="also 4. (the whole sequence, 10 s windows)")
    args = ap.parse_args(argv)
    root = data.data_dir()
    base = load(CONFIG)
    flow = FlowGroupConfig(enabled=True, window_s=args.window_s, basis_min=50)
    cfg = replace(base, camera=replace(base.camera, source=str(root / "video/vtest.avi")),
                  detector=replace(base.detector, kind="scripted",
                                   ground_truth=str(root / "mot/MOT15/PETS09-S2L1/gt/gt.txt")),
                  flowgroups=flow)
    with Embedder(EmbedderConfig(edgetpu=flow.edgetpu, threads=flow.threads)) as real:
        timed = TimedEmbedder(real)
        print(f"embedder backend {real.backend}; {args.rounds} rounds of {args.frames} frames, flow groups off "
              f"then on (window {args.window_s} s, {flow.crops_per_track} crops per track, at most "
              f"{flow.max_embeds_per_tick} per tick)")
        offs, ons, per_tick, closes, fits, hook_ms, embedded, records = [], [], [], [], [], [], 0, 0
        for r in range(args.rounds):
            off = one_run(cfg, args.frames, None)
            on = one_run(cfg, args.frames, timed)
            offs.append(off["own_ms"])
            ons.append(on["own_ms"])
            per_tick += on["per_tick"]
            closes += on["close_ms"]
            fits += on["fit_ms"]
            hook_ms += on["hook_ms"]
            embedded += on["embedded"]
            records += on["records"]
            print(f"  round {r + 1}: loop's own CPU per frame off {off['own_ms']:.3f} ms, on {on['own_ms']:.3f} ms")
        if args.consistency:
            consistency(replace(cfg, flowgroups=replace(flow, window_s=10)), TimedEmbedder(real))
    wall = np.array(timed.wall_ns) / 1e6
    cpu = np.array(timed.cpu_ns) / 1e6
    pt = np.array(per_tick)
    print(f"\nloop's own CPU per frame, median of rounds: off {np.median(offs):.3f} ms, on {np.median(ons):.3f} ms "
          f"(the loop thread only; the embedder's worker threads are in 2.)")
    print(f"the hook's own CPU per tick (loop thread): median {np.median(hook_ms):.3f} ms, "
          f"mean {np.mean(hook_ms):.3f} ms")
    print(f"one embedding: wall median {np.median(wall):.1f} ms (p95 {np.percentile(wall, 95):.1f}), process CPU "
          f"median {np.median(cpu):.1f} ms (p95 {np.percentile(cpu, 95):.1f}), {len(wall)} crops")
    print(f"embeddings per tick: max {pt.max()}, mean {pt.mean():.2f}; ticks with one: {np.mean(pt > 0):.0%}")
    print(f"window closes: {len(closes)} without a basis fit, slowest {max(closes, default=0):.1f} ms; "
          f"{len(fits)} fitting the basis (provisional, once per run here), slowest {max(fits, default=0):.0f} ms; "
          f"{records} records released")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
