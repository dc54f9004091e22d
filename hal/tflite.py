"""TfliteDetector: an SSD with TFLite_Detection_PostProcess outputs (the shared COCO SSD, Coral's SSDs) run
through LiteRT on the Edge TPU or the CPU, optionally tiled (the SSD returns at most 10 detections per call)
with results merged by NMS after dropping the pieces of people cut by a tile edge (hal.nms.merge_tiles)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hal.detections import PERSON, Detections
from hal.errors import DetectorError
from hal.frame import Frame
from hal.litert import DelegateLoader, Runtime, load_interpreter
from hal.nms import merge_tiles
from models import ModelError, manifest, resolve

log = logging.getLogger(__name__)


def tile_grid(nx: int, ny: int, overlap: float) -> np.ndarray:
    """(nx*ny, 4) tiles [x0, y0, x1, y1] normalized, each overlapping its neighbours by `overlap` of a tile."""
    def spans(n: int) -> list[tuple[float, float]]:
        size = 1.0 / (n - (n - 1) * overlap)
        return [(i * size * (1 - overlap), min(1.0, i * size * (1 - overlap) + size)) for i in range(n)]

    return np.array([(x0, y0, x1, y1) for (y0, y1) in spans(ny) for (x0, x1) in spans(nx)], dtype=np.float64)


class TfliteDetector:
    """`detect(frame)` reads `frame.pixels` (uint8 RGB), keeps no reference to it, and zeroes the model's
    input tensor before returning, so no copy of the frame outlives the call. Raises DetectorError."""

    def __init__(
        self,
        manifest_name: str = "ssd_mobilenet_v1_coco_quant",
        *,
        edgetpu: bool | None = None,
        tiles: tuple[int, int] = (1, 1),
        overlap: float = 0.15,
        score_threshold: float = 0.3,
        iou_threshold: float = 0.45,
        drop_fragments: bool = True,
        num_threads: int = 2,
        classes: tuple[int, ...] = (PERSON,),
        model_path: Path | None = None,
        delegate_loader: DelegateLoader | None = None,
        rt: Runtime | None = None,
    ) -> None:
        import cv2  # noqa: F401  (fail here, not mid-run, if OpenCV is missing)


        try:
            self.manifest = manifest(manifest_name)
            self.model_path = model_path or resolve(manifest_name)
        except ModelError as e:
            raise DetectorError(str(e)) from e
        if self.manifest.box_order != "ymin,xmin,ymax,xmax" or len(self.manifest.outputs) < 3:
            raise DetectorError(f"{manifest_name}: not an SSD with postprocess outputs; cannot detect with it")
        self.tiles = np.array(tiles_checked(tiles), dtype=np.int64)
        self._grid = tile_grid(int(tiles[0]), int(tiles[1]), overlap)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.drop_fragments = drop_fragments  # tiled: pieces of a person cut by a tile edge (hal.nms.merge_tiles)
        self.classes = np.array(classes, dtype=np.int32)
        self.num_threads = num_threads
        self.fallbacks = 0
        self.invokes = 0  # model invokes so far (one per tile or region)
        self._delegate_loader = delegate_loader
        self._rt = rt
        self._load(edgetpu)

    def _load(self, edgetpu: bool | None) -> None:
        self._interp, self.backend = load_interpreter(
            self.model_path, edgetpu=edgetpu, num_threads=self.num_threads, delegate_loader=self._delegate_loader,
            rt=self._rt,
        )
        inp = self._interp.get_input_details()[0]
        self._in_idx = inp["index"]
        self._in_hw = (int(inp["shape"][1]), int(inp["shape"][2]))  # the model's own (300x300, 320x320, ...)
        stated = tuple(int(v) for v in self.manifest.input_shape[1:3])
        if stated != self._in_hw:
            raise DetectorError(f"{self.model_path.name}: the model takes {self._in_hw[1]}x{self._in_hw[0]} input, "
                                f"its manifest says {stated[1]}x{stated[0]}: fix models/manifests/"
                                f"{self.manifest.name}.toml")
        if inp["dtype"] != np.uint8:
            raise DetectorError(f"{self.model_path.name}: input is {inp['dtype']}, this detector feeds uint8")
        outs = self._interp.get_output_details()
        order = {name: outs[i]["index"] for i, name in enumerate(self.manifest.outputs)}
        self._out = (order["boxes"], order["classes"], order["scores"])

    def detect(self, frame: Frame, regions: np.ndarray | None = None) -> Detections:
        """Detections in the whole frame by the fixed tiling, or, given `regions` ((R, 4) [x0, y0, x1, y1]
        normalized; firmware.sensing.gating chooses them), in those regions only: one invoke each, merged
        as tiles are. No regions: no invoke, no detections."""
        grid = self._grid if regions is None else regions_checked(regions)
        boxes, scores, classes, tile_of = self.detect_tiles(frame, grid)
        self.invokes += len(grid)
        if len(grid) == 1:
            return Detections(boxes.astype(np.float32), scores, classes)
        keep = merge_tiles(boxes, scores, tile_of, grid, self.iou_threshold, self.drop_fragments)
        return Detections(boxes[keep].astype(np.float32), scores[keep], classes[keep])

    @property
    def grid(self) -> np.ndarray:
        """The fixed tiling's tiles, (T, 4) normalized."""
        return self._grid.copy()

    def detect_tiles(self, frame: Frame, grid: np.ndarray | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every tile's (or region's) detections before merging: boxes (N, 4) normalized to the frame, scores,
        classes and the index of the tile each came from."""
        import cv2

        img = frame.pixels
        h, w = img.shape[:2]
        boxes, scores, classes, tile_of = [], [], [], []
        try:
            for t, tile in enumerate(self._grid if grid is None else grid):
                x0, y0 = int(round(tile[0] * w)), int(round(tile[1] * h))
                x1, y1 = int(round(tile[2] * w)), int(round(tile[3] * h))
                view = img[y0:y1, x0:x1]
                dst = self._interp.tensor(self._in_idx)()[0]
                if view.shape[:2] == self._in_hw:
                    dst[...] = view
                else:
                    cv2.resize(view, (self._in_hw[1], self._in_hw[0]), dst=dst, interpolation=cv2.INTER_AREA)
                del dst, view
                self._invoke()
                b, c, s = (self._interp.get_tensor(i)[0] for i in self._out)
                keep = (s >= self.score_threshold) & np.isin(c.astype(np.int32), self.classes)
                if keep.any():
                    bb = b[keep].astype(np.float64)  # ymin, xmin, ymax, xmax in the tile
                    tw, th = tile[2] - tile[0], tile[3] - tile[1]
                    boxes.append(np.column_stack((tile[0] + bb[:, 1] * tw, tile[1] + bb[:, 0] * th,
                                                  tile[0] + bb[:, 3] * tw, tile[1] + bb[:, 2] * th)))
                    scores.append(s[keep])
                    classes.append(c[keep].astype(np.int32))
                    tile_of.append(np.full(int(keep.sum()), t, dtype=np.int64))
        finally:
            self._interp.tensor(self._in_idx)()[...] = 0  # no copy of the frame stays in the model's input
        if not boxes:
            return np.zeros((0, 4)), np.zeros(0, np.float32), np.zeros(0, np.int32), np.zeros(0, np.int64)
        return (np.clip(np.concatenate(boxes), 0.0, 1.0), np.concatenate(scores).astype(np.float32),
                np.concatenate(classes), np.concatenate(tile_of))

    def _invoke(self) -> None:
        try:
            self._interp.invoke()
            return
        except (RuntimeError, ValueError) as e:
            if self.backend != "edgetpu":
                raise DetectorError(f"inference failed: {e}") from e
            failure = e
        # the Edge TPU vanished (unplugged, reset): carry on on the CPU and say so once
        self.fallbacks += 1
        log.warning("Edge TPU failed mid-run (%s); reloading %s on the CPU", failure, self.model_path.name)
        pending = self._interp.tensor(self._in_idx)().copy()
        self._load(False)
        self._interp.tensor(self._in_idx)()[...] = pending
        pending.fill(0)
        try:
            self._interp.invoke()
        except (RuntimeError, ValueError) as e:
            raise DetectorError(f"inference failed on the CPU too: {e}") from e

    def close(self) -> None:
        self._interp = None


def regions_checked(regions: np.ndarray) -> np.ndarray:
    """Regions as (R, 4) float64 inside [0, 1], each at least a pixel's worth wide and high."""
    r = np.asarray(regions, dtype=np.float64).reshape(-1, 4)
    if not np.all(np.isfinite(r)):
        raise DetectorError("regions must be finite [x0, y0, x1, y1] in [0, 1]")
    r = np.clip(r, 0.0, 1.0)
    ok = (r[:, 2] - r[:, 0] > 1e-2) & (r[:, 3] - r[:, 1] > 1e-2)
    return r[ok]


def tiles_checked(tiles: tuple[int, int]) -> tuple[int, int]:
    nx, ny = int(tiles[0]), int(tiles[1])
    if not (1 <= nx <= 8 and 1 <= ny <= 8):
        raise DetectorError(f"tiles must be 1..8 by 1..8, not {tiles}")
    return nx, ny
