"""The detector on regions (the gate's choice) and on a model whose input is not 300x300 (MobileDet, 320x320)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hal.clock import FakeClock
from hal.errors import DetectorError
from hal.tflite import TfliteDetector
from hal.video import VideoCamera


@pytest.fixture(scope="module")
def pets_frame(shared_data):
    cam = VideoCamera(shared_data / "video/vtest.avi", clock=FakeClock(), lores_size=(900, 600), main_size=None)
    cam.open()
    frame = cam.capture()
    yield frame
    frame.release()
    cam.close()


def test_the_grid_as_regions_is_the_tiling_and_no_regions_cost_nothing(pets_frame):
    det = TfliteDetector(tiles=(3, 2), overlap=0.3, edgetpu=False, score_threshold=0.1)
    tiled = det.detect(pets_frame)
    as_regions = det.detect(pets_frame, det.grid)
    assert len(tiled) >= 3
    np.testing.assert_array_equal(tiled.boxes, as_regions.boxes)
    assert det.invokes == 12
    none = det.detect(pets_frame, np.zeros((0, 4)))
    assert len(none) == 0 and det.invokes == 12
    left = det.detect(pets_frame, det.grid[:1])
    assert det.invokes == 13 and len(left) and np.all(left.boxes[:, 2] <= det.grid[0, 2] + 1e-6)
    assert not det._interp.tensor(det._in_idx)().any()


def test_bad_regions_are_refused(pets_frame):
    det = TfliteDetector(edgetpu=False)
    with pytest.raises(DetectorError, match="finite"):
        det.detect(pets_frame, np.array([[0.0, 0.0, np.nan, 1.0]]))


class _Interp320:
    """A stand-in interpreter for a 320x320 SSD with postprocess outputs: it reports one person in the middle
    of whatever it is shown, and remembers what it was fed."""

    def __init__(self, model_path: str, **_kw) -> None:
        self.input = np.zeros((1, 320, 320, 3), np.uint8)
        self.fed: list[np.ndarray] = []
        self.out = {1: np.array([[[0.25, 0.25, 0.75, 0.75]]], np.float32), 2: np.zeros((1, 1), np.float32),
                    3: np.array([[0.9]], np.float32), 4: np.array([1.0], np.float32)}

    def allocate_tensors(self) -> None:
        pass

    def get_input_details(self):
        return [{"index": 0, "shape": np.array([1, 320, 320, 3]), "dtype": np.uint8}]

    def get_output_details(self):
        return [{"index": i} for i in (1, 2, 3, 4)]

    def tensor(self, idx):
        return lambda: self.input

    def invoke(self) -> None:
        self.fed.append(self.input[0].copy())

    def get_tensor(self, idx):
        return self.out[idx]


def test_a_320_input_model_is_fed_at_its_own_size(pets_frame, tmp_path: Path):
    model = tmp_path / "mobiledet.tflite"
    model.write_bytes(b"stand-in")
    det = TfliteDetector("ssdlite_mobiledet_coco_qat_postprocess", model_path=model, edgetpu=False,
                         tiles=(3, 2), overlap=0.3, rt=(_Interp320, lambda lib: None))
    found = det.detect(pets_frame, det.grid[:2])
    fed = det._interp.fed
    assert len(fed) == 2 and fed[0].shape == (320, 320, 3) and fed[0].any()  # each region resized to 320x320
    assert len(found) == 2  # one per region, merged by NMS across them
    assert not det._interp.input.any()


def test_a_manifest_that_misstates_the_input_size_is_refused(tmp_path: Path):
    model = tmp_path / "ssd.tflite"
    model.write_bytes(b"stand-in")
    with pytest.raises(DetectorError, match="320x320 input, its manifest says 300x300"):
        TfliteDetector("ssd_mobilenet_v1_coco_quant", model_path=model, edgetpu=False,
                       rt=(_Interp320, lambda lib: None))
