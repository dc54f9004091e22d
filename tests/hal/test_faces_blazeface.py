"""BlazeFace decoding: MediaPipe's anchor layout, box decoding, weighted NMS, tiles, and the real models."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hal.errors import DetectorError
from hal.faces import (
    FACE,
    FULL_RANGE,
    SHORT_RANGE,
    FaceConfig,
    FaceDetector,
    decode,
    square_tiles,
    ssd_anchors,
    weighted_nms,
)


def test_anchor_layout_matches_the_models() -> None:
    short = ssd_anchors(SHORT_RANGE)
    assert short.shape == (896, 2)
    # stride 8: 16x16 cells x 2 anchors, first cell centre (0.5/16, 0.5/16), twice
    assert np.allclose(short[0], [1 / 32, 1 / 32]) and np.allclose(short[1], short[0])
    assert np.allclose(short[2], [3 / 32, 1 / 32])
    # stride 16 layers merged: 8x8 cells x 6 anchors after the first 512
    assert np.allclose(short[512:518], [1 / 16, 1 / 16]) and np.allclose(short[-1], [15 / 16, 15 / 16])
    full = ssd_anchors(FULL_RANGE)
    assert full.shape == (2304, 2) and np.allclose(full[1], [1.5 / 48, 0.5 / 48])


def test_decode_offsets_from_the_anchor_centre() -> None:
    anchors = np.array([[0.5, 0.5], [0.25, 0.25]], np.float32)
    raw = np.zeros((2, 16), np.float32)
    raw[0, :4] = [12.8, -12.8, 25.6, 51.2]  # dx, dy, w, h in input pixels (input 128)
    boxes, scores = decode(raw, np.array([3.0, -3.0]), anchors, 128, 0.5)
    assert len(boxes) == 1 and scores[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    assert np.allclose(boxes[0], [0.6 - 0.1, 0.4 - 0.2, 0.6 + 0.1, 0.4 + 0.2])


def test_weighted_nms_merges_a_cluster_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    out, scores = weighted_nms(boxes, np.array([0.9, 0.3, 0.8]), 0.3)
    assert len(out) == 2 and list(scores) == [0.9, 0.8]
    assert np.allclose(out[0], (boxes[0] * 0.9 + boxes[1] * 0.3) / 1.2)


def test_square_tiles_cover_the_image() -> None:
    for grid in (1, 2, 3, 4):
        tiles = square_tiles(640, 480, grid)
        covered = np.zeros((480, 640), bool)
        for x, y, s in tiles:
            covered[y:y + s, x:x + s] = True
        assert covered.all()


@pytest.mark.parametrize("variant", ["short_range", "full_range"])
def test_real_model_finds_the_faces_in_face_jpg(shared_data: Path, variant: str) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "face.jpg")), cv2.COLOR_BGR2RGB)
    with FaceDetector(FaceConfig(variant=variant, tiles=(1, 2))) as det:
        faces = det.detect(rgb)
        blank = det.detect(np.full((480, 640, 3), 128, np.uint8))
    assert len(faces) >= 2 and set(faces.classes.tolist()) == {FACE}
    assert len(faces.persons()) == 0  # faces never pass for persons
    centres_x = sorted(((faces.boxes[:, 0] + faces.boxes[:, 2]) / 2).tolist())
    assert centres_x[0] < 0.5 < centres_x[-1]  # the two men side by side
    assert len(blank) == 0


def test_no_copy_of_the_image_outlives_detect(shared_data: Path) -> None:
    rgb = cv2.cvtColor(cv2.imread(str(shared_data / "images" / "face.jpg")), cv2.COLOR_BGR2RGB)
    with FaceDetector(FaceConfig(tiles=(1, 2))) as det:
        det.detect(rgb)
        interp = det._interpreter
        assert not interp.get_tensor(interp.get_input_details()[0]["index"]).any()  # the model's input: zeroed


def test_bad_input_and_bad_config_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="variant"):
        FaceConfig(variant="long").validate()
    with pytest.raises(DetectorError, match="cannot load"):
        FaceDetector(model_path=tmp_path / "missing.tflite")
    det = FaceDetector(FaceConfig(tiles=(1,)))
    with pytest.raises(DetectorError, match="uint8"):
        det.detect(np.zeros((10, 10), np.float32))


def test_scripted_faces_fake_drives_deidentification() -> None:
    from firmware.samples.taking import deidentify, deidentify_regions
    from hal.faces import ScriptedFaces

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    fake = ScriptedFaces(np.array([[0.1, 0.1, 0.2, 0.25]]))
    out, regions = deidentify_regions(img, np.zeros((0, 4)), fake)
    assert fake.calls == 3  # first pass, then the verify passes (the fake always "finds" the face)
    x0, y0, x1, y1 = regions[0]
    assert out[y0:y1, x0:x1].std() < 0.2 * img[y0:y1, x0:x1].std()
    assert np.array_equal(out[300:, 300:], img[300:, 300:])  # nothing else touched
    assert np.array_equal(deidentify(img, np.zeros((0, 4)), ScriptedFaces(np.array([[0.1, 0.1, 0.2, 0.25]]))), out)


def test_fake_embedder_is_deterministic_and_shaped_like_the_real_one() -> None:
    from hal.embedder import FakeEmbedder

    img = np.zeros((100, 100, 3), np.uint8)
    img[:, 50:] = (200, 20, 20)
    e = FakeEmbedder().embed_boxes(img, np.array([[0, 0, 0.5, 1], [0.5, 0, 1, 1], [0.5, 0, 1, 1]]))
    assert e.shape == (3, 1024) and (e >= 0).all()
    assert np.array_equal(e[1], e[2]) and not np.array_equal(e[0], e[1])
