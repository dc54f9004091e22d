"""The counting scenes beyond PETS09 (MOTChallenge sequences with ground-truth tracks, static cameras): their gt
as MOT15-like rows with a ground plane scaled by the median person height, and two count lines each, fixed
before any run. Shared by bench.countscenes and bench.counting_loso."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bench.lib import data
from firmware.config import UmbraConfig
from firmware.config.sensing import GeometryConfig, LineConfig, TrackerConfig
from firmware.sensing.mot import read_seqinfo

SCENES = {"MOT17-02-FRCNN": "MOT17", "MOT17-04-FRCNN": "MOT17", "MOT17-09-FRCNN": "MOT17", "MOT20-01": "MOT20"}
PERSON_M = 1.7


@dataclass(frozen=True)
class Scene:
    name: str
    gt: np.ndarray  # MOT15-like rows: frame, id, x, y, w, h, 1, world x, world y, 0 (world: scaled foot point)
    fps: float
    size: tuple[int, int]
    scale: float  # metres per pixel
    lines: tuple[LineConfig, ...]


def scene(name: str) -> Scene:
    gt_file = data.find(f"mot/{SCENES[name]}/{name}/gt/gt.txt")
    if gt_file is None:
        raise data.DataMissing(data.missing_message([f"mot/{SCENES[name]}/{name}/gt/gt.txt"]))
    folder = gt_file.parent.parent
    fps, _, size = read_seqinfo(folder / "seqinfo.ini")
    assert size is not None, f"{folder}/seqinfo.ini gives no frame size"
    raw = np.loadtxt(folder / "gt" / "gt.txt", delimiter=",", ndmin=2)
    raw = raw[(raw[:, 6] != 0) & (raw[:, 7] == 1)]  # considered pedestrians
    s = PERSON_M / float(np.median(raw[:, 5]))
    foot = np.column_stack((raw[:, 2] + raw[:, 4] / 2, raw[:, 3] + raw[:, 5])) * s
    gt = np.column_stack((raw[:, :6], np.ones(len(raw)), foot, np.zeros(len(raw))))
    gt = gt[np.lexsort((gt[:, 0], gt[:, 1]))]
    return Scene(name, gt, fps, size, s, count_lines(size, s))


def count_lines(size: tuple[int, int], scale: float) -> tuple[LineConfig, ...]:
    """The scene's two count lines (metres): one upright through the middle of the frame, one level at 70% of its
    height, each running a frame's length past the frame's edges on both sides. A line that ended at the frame's
    edge left out of the truth a walker close to the camera whose foot point is below the frame as they cross (the
    gt's box runs past the edge; the detector's is cut at it, so the device counted them: MOT17-09, two walkers).
    The device's points are the detector's boxes', within the frame: the lines' ends beyond it change the truth."""
    w, h = size
    return (LineConfig("upright", (w / 2 * scale, -h * scale), (w / 2 * scale, 2 * h * scale)),
            LineConfig("level", (-w * scale, 0.7 * h * scale), (2 * w * scale, 0.7 * h * scale)))


def scene_config(base: UmbraConfig, sc: Scene, hz: float) -> UmbraConfig:
    geo = GeometryConfig(homography=((sc.scale, 0.0, 0.0), (0.0, sc.scale, 0.0), (0.0, 0.0, 1.0)), lines=sc.lines)
    return replace(base, geometry=geo, tracker=TrackerConfig(), loop=replace(base.loop, detect_hz=hz),
                   camera=replace(base.camera, fps=sc.fps))
