"""The tracking benchmarks' rows (bench.tracking_loso, bench.demographics_chains): every shared sequence with ground
truth and the detections it is run on (public, the real SSD, or the gt replayed by a scripted error model), cached
under out/cache/, at the native rate or as a k times slower detector sees it."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from bench.lib import data
from bench.lib.detcache import CACHE
from bench.lib.motscore import load_gt
from bench.lib.sequences import MOT15, Size, every, public_detections, seqinfo_of

MOT_SEQ = ("02", "04", "05", "09", "10")


class Row(NamedTuple):
    group: str  # the video: rows of one group are left out together
    name: str
    kind: str  # public | ssd | scripted | crowd
    gt_rel: str  # the gt.txt under the data folder


def rows(mot16: bool = False) -> list[Row]:
    """The rows; MOT16's are the same five videos as MOT17's (with older gt): only with `mot16`."""
    out = [Row(s, f"{s} MOT15 public", "public", f"mot/MOT15/{s}/gt/gt.txt") for s in MOT15]
    pets = "mot/MOT15/PETS09-S2L1/gt/gt.txt"
    out.append(Row("PETS09-S2L1", "PETS09-S2L1 real SSD 3x2", "ssd", pets))
    seqs = [("PETS09-S2L1", "PETS09-S2L1", pets)]
    if mot16:
        seqs += [(s, f"MOT16-{s}", f"mot/MOT16/MOT16-{s}/gt/gt.txt") for s in MOT_SEQ]
    seqs += [(s, f"MOT17-{s}", f"mot/MOT17/MOT17-{s}-FRCNN/gt/gt.txt") for s in MOT_SEQ]
    seqs.append(("MOT20-01", "MOT20-01", "mot/MOT20/MOT20-01/gt/gt.txt"))
    for kind in ("scripted", "crowd"):
        out += [Row(g, f"{n} {kind}", kind, p) for g, n, p in seqs]
    return out


def _cached(name: str, make) -> list[np.ndarray]:
    path = CACHE / f"loso-{name}.npz"
    if path.exists():
        with np.load(path) as z:
            counts, flat = z["counts"], z["rows"]
        return np.split(flat, np.cumsum(counts)[:-1])
    dets = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, counts=np.array([len(d) for d in dets]), rows=np.vstack(dets).reshape(-1, 5))
    tmp.replace(path)
    return dets


@lru_cache(maxsize=4)
def load(row: Row) -> tuple[list[np.ndarray], np.ndarray, float, Size]:
    """(per-frame detections (N, 5) xyxy+score, gt, frame rate, frame size) of a row at its native rate."""
    from hal.crowd import CrowdErrors
    from hal.scripted import DetectorErrors

    gt_path = data.need(row.gt_rel)
    gt = load_gt(gt_path)
    fps, size = seqinfo_of(gt_path)
    frames = int(gt[:, 0].max())
    if row.kind == "public":
        return public_detections(gt_path.parent.parent / "det" / "det.txt", frames), gt, fps, size
    if row.kind == "ssd":
        from bench.lib.detcache import pets_detections

        return pets_detections((3, 2), 0.1, False, 0.3), gt, fps, size  # as the bench run configures it
    errors = DetectorErrors() if row.kind == "scripted" else CrowdErrors()
    key = hashlib.sha256(f"{row.gt_rel}{errors!r}{gt_path.stat().st_size}".encode()).hexdigest()[:12]
    return _cached(f"{row.kind}-{key}", lambda: _replay(row.kind, gt_path, frames, fps, size)), gt, fps, size


def _replay(kind: str, gt_path, frames: int, fps: float, size: Size) -> list[np.ndarray]:
    from bench.lib.scripted import scripted_detections

    if kind == "scripted":
        return scripted_detections(gt_path, frames)
    from hal.crowd import CrowdDetector
    from hal.frame import Frame

    assert size is not None
    det = CrowdDetector.from_mot(gt_path, size, fps)
    buf = np.zeros((1, 1, 3), np.uint8)
    out = []
    for f in range(1, frames + 1):
        d = det.detect(Frame(buf, None, 0, f, size))
        out.append(np.hstack((d.to_pixels(*size), d.scores[:, None])))
    return out


def at_rate(row: Row, k: int) -> tuple[list[np.ndarray], np.ndarray, float, Size]:
    dets, gt, fps, size = load(row)
    if k > 1:
        dets, gt, fps = every(dets, gt, fps, k)
    return dets, gt, fps, size
