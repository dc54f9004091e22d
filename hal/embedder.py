"""Appearance embeddings: Coral's MobileNet v1 feature extractor (1,024 values per image crop), on the
Edge TPU (its `_edgetpu` twin, through the `libedgetpu.so.1` delegate) or on CPU.

Input: a crop resized to 224x224 uint8 RGB (the model's quantization, scale 1/128 and zero point 128, maps
raw pixels to [-1, 1], so pixels go in as they are). Output: uint8 (1, 1, 1, 1024), dequantized here in
int64 then float32 as `scale * (q - zero_point)`. Used only by customer-flow groups; embeddings never leave
the device, only the group they hash to does. No pixels outlive a call: the resized tensor and the model's
input tensor are zeroed after each embedding, and `embed_boxes` zeroes the crops it cuts; the caller owns
(and zeroes) the crop it passes to `embed`.

Raises `DetectorError` (model missing or failing) and `DelegateError` (Edge TPU asked for, not present).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hal.errors import DelegateError, DetectorError
from hal.litert import edgetpu_library_present, load_interpreter
from models import ModelError, resolve

log = logging.getLogger(__name__)

MODEL = "mobilenet_v1_embedding"
MODEL_TPU = "mobilenet_v1_embedding_edgetpu"
DIM = 1024
SIZE = 224


@dataclass(frozen=True, slots=True)
class EmbedderConfig:
    """`edgetpu`: "auto" (use the TPU when its delegate loads, else CPU and say so), "on", "off"."""

    edgetpu: str = "auto"
    threads: int = 2

    def validate(self) -> None:
        if self.edgetpu not in ("auto", "on", "off"):
            raise ValueError('edgetpu: one of "auto", "on", "off"')
        if not 1 <= self.threads <= 8:
            raise ValueError("threads: 1 to 8")


def _load(config: EmbedderConfig, model_path: Path | None) -> tuple[Any, str]:
    """The Edge TPU twin through the delegate when asked for or (auto) usable, else the CPU model; both found
    and hash-checked by models.resolve, loaded through hal.litert."""

    want_tpu = {"auto": None, "on": True, "off": False}[config.edgetpu]
    try:
        if model_path is None and (want_tpu or (want_tpu is None and edgetpu_library_present())):
            try:  # the compiled twin runs only with the delegate: ask for it outright
                return load_interpreter(resolve(MODEL_TPU), edgetpu=True, num_threads=config.threads)
            except DelegateError:
                if want_tpu:
                    raise
                log.info("embedder: no Edge TPU; running on the CPU")
        return load_interpreter(model_path or resolve(MODEL), edgetpu=False, num_threads=config.threads)
    except ModelError as e:
        raise DetectorError(f"cannot load the embedding model: {e}") from e


def cut(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A copy (the caller zeroes it) of the pixels inside a normalized xyxy box, at least 2 x 2."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    xa, ya = int(np.clip(x0 * w, 0, w - 2)), int(np.clip(y0 * h, 0, h - 2))
    xb, yb = int(np.clip(np.ceil(x1 * w), xa + 2, w)), int(np.clip(np.ceil(y1 * h), ya + 2, h))
    return np.array(rgb[ya:yb, xa:xb], order="C", copy=True)


class Embedder:
    """`embed(crop)` -> (1024,) float32; `embed_boxes(rgb, boxes)` -> (N, 1024) for normalized xyxy boxes.
    `backend` is "edgetpu" or "cpu"."""

    def __init__(self, config: EmbedderConfig | None = None, *, model_path: Path | None = None) -> None:
        self.config = config or EmbedderConfig()
        self.config.validate()
        self._it, self.backend = _load(self.config, model_path)
        inp = self._it.get_input_details()[0]
        out = self._it.get_output_details()[0]
        if tuple(inp["shape"]) != (1, SIZE, SIZE, 3) or int(np.prod(out["shape"])) != DIM:
            raise DetectorError(f"embedding model has input {inp['shape']} / output {out['shape']}, "
                                f"expected (1, {SIZE}, {SIZE}, 3) / {DIM} values")
        self._in, self._out = inp["index"], out["index"]
        self._scale, self._zero = (float(out["quantization"][0]) or 1.0), int(out["quantization"][1])
        self._blank = np.zeros((1, SIZE, SIZE, 3), np.uint8)
        self._scrub()  # a fresh input tensor holds whatever memory it was given

    def embed(self, crop: np.ndarray) -> np.ndarray:
        import cv2

        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or min(crop.shape[:2]) < 2:
            raise DetectorError(f"an embedding crop is HxWx3 uint8 (at least 2x2), got {crop.shape} {crop.dtype}")
        tensor = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)[None]
        try:
            self._it.set_tensor(self._in, tensor)
            self._it.invoke()
            q = self._it.get_tensor(self._out).reshape(DIM)
        except Exception as e:  # noqa: BLE001
            raise DetectorError(f"embedding model failed: {e}") from e
        finally:
            tensor.fill(0)
            self._scrub()
        return (self._scale * (q.astype(np.int64) - self._zero)).astype(np.float32)

    def _scrub(self) -> None:
        """The model's input tensor (a copy of the last crop) overwritten with zeros."""
        try:
            self._it.set_tensor(self._in, self._blank)
        except Exception as e:  # noqa: BLE001
            raise DetectorError(f"cannot clear the embedding model's input: {e}") from e

    def input_is_blank(self) -> bool:
        """True when the model's input tensor holds no pixels (for tests)."""
        return not self._it.get_tensor(self._in).any()

    def embed_boxes(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        out = np.zeros((len(boxes), DIM), np.float32)
        for i, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
            crop = cut(rgb, box)
            try:
                out[i] = self.embed(crop)
            finally:
                crop.fill(0)
        return out

    def close(self) -> None:
        self._it = None

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FakeEmbedder:
    """The fake beside Embedder: a deterministic 1,024-value vector from the crop's colour histogram (so
    crops of the same clothes embed alike), non-negative like the real one. No model needed."""

    backend = "fake"

    def embed(self, crop: np.ndarray) -> np.ndarray:
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or min(crop.shape[:2]) < 2:
            raise DetectorError(f"an embedding crop is HxWx3 uint8 (at least 2x2), got {crop.shape} {crop.dtype}")
        q = (crop.reshape(-1, 3) // 32).astype(np.int64)  # 8 levels per channel: 512 colour bins
        hist = np.bincount(q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2], minlength=512).astype(np.float32)
        hist /= max(hist.sum(), 1.0)
        return np.concatenate([hist, np.sqrt(hist)]).astype(np.float32)

    def embed_boxes(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return Embedder.embed_boxes(self, rgb, boxes)  # type: ignore[arg-type]

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeEmbedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
