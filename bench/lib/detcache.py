"""Real detections of the shared footage, computed once and cached, so tracker comparisons and the scripted
detector's calibration run on what the real model sees without paying for inference on every run.

What is cached is every tile's person detections before merging (at scores from 0.05), keyed by the model's
sha256, the tiling and overlap, that floor and the video's size; merging and the score threshold are applied
on loading, as the detector applies them. The cache lives under `out/cache/` (never committed).
`python -m bench.lib.detcache [--tiles NX NY] [--overlap F]` fills it and prints the cost."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.lib import data

CACHE = Path("out/cache")
PETS_SIZE = (768, 576)  # vtest.avi's frame size: cached boxes are in its pixels


def pets_detections(
    tiles: tuple[int, int] = (2, 2), score_threshold: float = 0.1, progress: bool = True, overlap: float = 0.15
) -> list[np.ndarray]:
    """Per frame of vtest.avi (PETS09-S2L1), an (N, 5) array of person boxes in pixels (x0, y0, x1, y1) and
    their scores, as `TfliteDetector` with these settings finds them on CPU (or an Edge TPU when present):
    the cached raw tiles merged by the detector's own merge (hal.nms.merge_tiles), so a change of merge
    needs no new inference."""
    per_frame, grid = raw_tiles(tiles, overlap, min(0.05, score_threshold), progress)
    return [merge_raw(d, grid, score_threshold, PETS_SIZE) for d in per_frame]


def merge_raw(raw: np.ndarray, grid: np.ndarray, score_threshold: float, size: tuple[int, int]) -> np.ndarray:
    """One frame's raw tile detections (N, 6) as `TfliteDetector.detect` returns them after merging: (M, 5)
    boxes in pixels of a `size` (width, height) image, and scores."""
    from hal.nms import merge_tiles

    d = raw[raw[:, 4] >= np.float32(score_threshold)]
    if len(grid) > 1 and len(d):
        d = d[merge_tiles(d[:, :4], d[:, 4].astype(np.float32), d[:, 5].astype(np.int64), grid)]
    return np.column_stack((d[:, :4] * np.array([size[0], size[1]] * 2, dtype=np.float64), d[:, 4]))


def detector_detections(dcfg, progress: bool = True) -> list[np.ndarray]:
    """`pets_detections` for a config's `[detector]` section (tiles, overlap, score_threshold)."""
    return pets_detections(tuple(dcfg.tiles), dcfg.score_threshold, progress, dcfg.overlap)


def raw_tiles(tiles: tuple[int, int], overlap: float = 0.15, floor: float = 0.05,
              progress: bool = True) -> tuple[list[np.ndarray], np.ndarray]:
    """Every tile's person detections of vtest.avi before merging, at scores >= `floor`: per frame an (N, 6)
    array (x0, y0, x1, y1 normalized to the frame, score, tile index), and the tile grid. Cached like
    `pets_detections`; any merge and threshold at or above the floor is then a matter of milliseconds."""
    from hal.tflite import tile_grid
    from models import manifest

    video = data.find("video/vtest.avi")
    if video is None:
        raise data.DataMissing(data.missing_message(["video/vtest.avi"]))
    m = manifest("ssd_mobilenet_v1_coco_quant")
    key = (f"pets09raw-{m.sha256[:12]}-{tiles[0]}x{tiles[1]}-o{overlap:.2f}-{floor:.2f}-"
           f"{video.stat().st_size}")
    path = CACHE / f"{key}.npz"
    grid = tile_grid(tiles[0], tiles[1], overlap)
    if path.exists():
        with np.load(path) as z:
            counts, rows = z["counts"], z["rows"]
        return np.split(rows, np.cumsum(counts)[:-1]), grid
    per_frame = _run_raw(video, tiles, overlap, floor, progress)
    CACHE.mkdir(parents=True, exist_ok=True)
    counts = np.array([len(d) for d in per_frame])
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, counts=counts, rows=np.vstack(per_frame) if per_frame else np.zeros((0, 6)))
    tmp.replace(path)
    return per_frame, grid


def _run_raw(video: Path, tiles: tuple[int, int], overlap: float, floor: float,
             progress: bool) -> list[np.ndarray]:
    from tqdm import tqdm

    from hal.clock import SystemClock
    from hal.errors import EndOfStream
    from hal.tflite import TfliteDetector
    from hal.video import VideoCamera

    det = TfliteDetector(tiles=tiles, overlap=overlap, score_threshold=floor)
    h, w = det.manifest.input_shape[1:3]
    size = (w * tiles[0], h * tiles[1])
    cam = VideoCamera(video, clock=SystemClock(), lores_size=size, main_size=None)
    cam.open()
    out: list[np.ndarray] = []
    bar = tqdm(desc=f"detecting vtest.avi, {tiles[0]}x{tiles[1]} tiles", unit="frame", disable=not progress)
    try:
        while True:
            try:
                frame = cam.capture()
            except EndOfStream:
                break
            with frame:
                b, s, _, t = det.detect_tiles(frame)
            out.append(np.column_stack((b, s, t)).astype(np.float64))
            bar.update()
    finally:
        bar.close()
        cam.close()
        det.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lib.detcache", description=__doc__)
    ap.add_argument("--tiles", type=int, nargs=2, default=(2, 2))
    ap.add_argument("--overlap", type=float, default=0.15)
    ap.add_argument("--threshold", type=float, default=0.1)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    dets = pets_detections(tuple(args.tiles), args.threshold, overlap=args.overlap)
    n = sum(len(d) for d in dets)
    print(f"{len(dets)} frames, {n} person detections ({n / max(len(dets), 1):.1f} per frame), "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
