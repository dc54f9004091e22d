"""The tracking bench's sequences: MOTChallenge gt with public, real-SSD or scripted detections, and a
sequence as a slower detector sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.lib import data
from bench.lib.motscore import load_gt
from firmware.sensing.mot import read_seqinfo

Size = tuple[int, int] | None  # a sequence's frame (width, height); None: its seqinfo.ini does not say


def fps_of(gt: Path) -> float:
    return seqinfo_of(gt)[0]


def seqinfo_of(gt: Path) -> tuple[float, Size]:
    """(frame rate, frame size) from the seqinfo.ini beside a gt folder, as `umbra track` reads it."""
    fps, _, size = read_seqinfo(gt.parent.parent / "seqinfo.ini")
    return fps, size


MOT15 = ("PETS09-S2L1", "ETH-Sunnyday", "KITTI-13", "TUD-Campus")


def public_detections(det_txt: Path, frames: int) -> list[np.ndarray]:
    """A MOTChallenge det.txt as per-frame (N, 5) xyxy+score arrays. MOT15's public detections (ACF) carry
    unbounded scores; each becomes its rank in the sequence, 0..1, so one set of thresholds serves all."""
    raw = np.loadtxt(det_txt, delimiter=",", ndmin=2)
    s = raw[:, 6]
    if s.max() > 1.0 or s.min() < 0.0:
        s = np.argsort(np.argsort(s)) / max(len(s) - 1, 1)  # ACF scores run about -1..140: their rank, 0..1
    rows = np.column_stack((raw[:, 2], raw[:, 3], raw[:, 2] + raw[:, 4], raw[:, 3] + raw[:, 5], s))
    by = [rows[raw[:, 0] == f] for f in range(1, frames + 1)]
    return by


def sequences(names: list[str]) -> list[tuple[str, list[np.ndarray], np.ndarray, float, Size]]:
    """(name, per-frame detections, gt, frame rate, frame size) for each sequence named."""
    from bench.lib.scripted import scripted_detections

    out = []
    for name in names:
        if name == "PETS09":
            from bench.lib.detcache import pets_detections
            from bench.lib.replay import CONFIG
            from firmware.config import load

            dcfg = load(CONFIG).detector  # tiled as the bench run tiles; scores down to 0.1 for every tracker
            gt_path = data.need("mot/MOT15/PETS09-S2L1/gt/gt.txt")
            gt = load_gt(gt_path)
            real = pets_detections(dcfg.tiles, 0.1, False, dcfg.overlap)
            size = seqinfo_of(gt_path)[1]
            out.append((f"PETS09-S2L1 real SSD {dcfg.tiles[0]}x{dcfg.tiles[1]}", real, gt, 7.0, size))
            out.append(("PETS09-S2L1 scripted", scripted_detections(gt_path, len(real)), gt, 7.0, size))
        elif name == "MOT15":
            for seq in MOT15:
                gt_path = data.need(f"mot/MOT15/{seq}/gt/gt.txt")
                gt = load_gt(gt_path)
                frames = int(gt[:, 0].max())
                dets = public_detections(gt_path.parent.parent / "det" / "det.txt", frames)
                out.append((f"{seq} MOT15 public", dets, gt, *seqinfo_of(gt_path)))
        else:
            gt_path = data.need(f"mot/MOT17/{name}/gt/gt.txt")
            gt = load_gt(gt_path)
            frames = int(gt[:, 0].max())
            out.append((f"{name} scripted", scripted_detections(gt_path, frames), gt, *seqinfo_of(gt_path)))
    return out


def every(dets: list[np.ndarray], gt: np.ndarray, fps: float, k: int) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Frames 1, 1 + k, 1 + 2k, ... renumbered 1, 2, 3, ...: the sequence as a detector k times slower sees it."""
    keep = gt[(gt[:, 0] - 1) % k == 0].copy()
    keep[:, 0] = (keep[:, 0] - 1) // k + 1
    return dets[::k], keep, fps / k
