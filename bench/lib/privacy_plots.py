"""Pictures for the privacy bench: occupancy over time (released against true, 1-minute windows) and the
activity heatmap (released against true people-seconds), at k=5 and epsilon 1, as PNG."""

from __future__ import annotations

import random
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from firmware.config.privacy import PrivacyConfig
from firmware.privacy.accountant import Accountant
from firmware.privacy.analytics import Analytics


def _release(sc, window: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PrivacyConfig(window_s=window, k=5, epsilon=1.0, daily_epsilon=10_000.0,
                            budget_file=str(Path(tmp) / "b.sqlite"), heat_min_s=2)
        out: list[dict] = []
        acc = Accountant(cfg.budget_file, cfg.budgets())
        an = Analytics(cfg, sc.geometry, acc, out.extend, rng=random.Random(0))
        for t in sc.ticks:
            an(t)
        an.close_window()
        acc.close()
    return out


def draw(sc, folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bench.lib.scenes import truth

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    true_occ, true_flow, _ = truth(sc.ticks, sc.geometry, 60)
    rel = _release(sc, 60)
    got = {(r["window_start"], r["zone"]): r["values"][1] for r in rel if r["metric"] == "occupancy"}
    keys = sorted(true_occ)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot([k[0] / 60 for k in keys], [true_occ[k] for k in keys], "k-", label="true mean present")
    ax.plot([k[0] / 60 for k in keys], [got.get(k, 0.0) for k in keys], "o--", label="released (k=5, eps=1)")
    ax.set_xlabel("minute")
    ax.set_ylabel("people present (mean over the minute)")
    ax.set_title(f"{sc.name}: occupancy, released against true")
    ax.legend()
    fig.tight_layout()
    paths.append(folder / f"{sc.name}-occupancy.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    whole = int(sc.ticks[-1].wall) + 60
    whole = max(60, min(86_400, whole))
    cells_rel = {tuple(map(int, r["zone"].split(","))): r["values"][0] for r in _release(sc, whole)
                 if r["metric"] == "heatmap"}
    cells_true: dict[tuple[int, int], int] = defaultdict(int)
    last = None
    for t in sc.ticks:
        if int(t.wall) != last:
            last = int(t.wall)
            for x, y in np.floor(t.ground.xy / 2.0).astype(int):
                cells_true[(int(x), int(y))] += 1
    xs = [c[0] for c in cells_true]
    ys = [c[1] for c in cells_true]
    x0, y0 = min(xs), min(ys)
    grids = []
    for cells in (cells_true, cells_rel):
        g = np.zeros((max(ys) - y0 + 1, max(xs) - x0 + 1))
        for (x, y), v in cells.items():
            if y0 <= y <= max(ys) and x0 <= x <= max(xs):
                g[y - y0, x - x0] = max(v, 0)
        grids.append(g)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, g, title in zip(axes, grids, ("true people-seconds", "released (k=5, eps=1)"), strict=True):
        im = ax.imshow(g, origin="lower", cmap="magma")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"{sc.name}: activity heatmap, 2 m cells, whole scene")
    fig.tight_layout()
    paths.append(folder / f"{sc.name}-heatmap.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths
