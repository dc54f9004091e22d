"""The real detector on the real model: tiling, zeroed input tensor, Edge TPU loss and absence."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from hal.clock import FakeClock
from hal.errors import CameraError, DelegateError, DetectorError, EndOfStream
from hal.faults import VanishingEdgeTpu
from hal.nms import nms
from hal.tflite import TfliteDetector, tiles_checked
from hal.video import VideoCamera


@pytest.fixture(scope="module")
def pets_frames(shared_data):
    """The first frames of vtest.avi at the 2x2 tiled lores size."""
    cam = VideoCamera(shared_data / "video/vtest.avi", clock=FakeClock(), lores_size=(600, 600), main_size=None)
    cam.open()
    frames = [cam.capture() for _ in range(2)]
    yield frames
    for f in frames:
        f.release()
    cam.close()


def test_tiles_find_more_people_than_one_pass_and_leave_no_pixels_in_the_model(pets_frames):
    one = TfliteDetector(tiles=(1, 1), edgetpu=False)
    four = TfliteDetector(tiles=(2, 2), edgetpu=False)
    d1, d4 = one.detect(pets_frames[0]), four.detect(pets_frames[0])
    assert len(d1) <= 10  # the SSD returns at most 10 per call
    assert len(d4) > len(d1)
    assert np.all((d4.boxes >= 0) & (d4.boxes <= 1))
    assert (d4.classes == 0).all()
    for det in (one, four):
        assert not det._interp.tensor(det._in_idx)().any()  # input tensor zeroed after detect


def test_a_missing_edge_tpu_falls_back_to_cpu_with_a_warning_unless_required(pets_frames, caplog):
    gone = VanishingEdgeTpu()
    gone.unplug()
    with caplog.at_level(logging.WARNING):
        det = TfliteDetector(edgetpu=None, rt=gone.rt)
    assert det.backend == "cpu"
    assert "no Edge TPU" in caplog.text
    assert len(det.detect(pets_frames[0])) > 0
    with pytest.raises(DelegateError, match="libedgetpu"):
        TfliteDetector(edgetpu=True, rt=gone.rt)


def test_an_edge_tpu_that_vanishes_mid_run_is_replaced_by_the_cpu(pets_frames, caplog):
    tpu = VanishingEdgeTpu(fail_after=5)  # 2x2 tiles: the second frame's first tile loses the device
    det = TfliteDetector(tiles=(2, 2), edgetpu=None, rt=tpu.rt)
    assert det.backend == "edgetpu"
    before = det.detect(pets_frames[0])
    with caplog.at_level(logging.WARNING):
        after = det.detect(pets_frames[1])
    assert det.backend == "cpu" and det.fallbacks == 1
    assert "Edge TPU failed mid-run" in caplog.text
    assert len(after) > 0 and len(before) > 0
    # the CPU finishes the frame that was in flight: same answers as a CPU detector from the start
    ref = TfliteDetector(tiles=(2, 2), edgetpu=False).detect(pets_frames[1])
    np.testing.assert_allclose(np.sort(after.scores), np.sort(ref.scores), atol=1e-6)


def test_bad_settings_and_models_are_refused(tmp_path):
    with pytest.raises(DetectorError, match="tiles"):
        tiles_checked((0, 2))
    bad = tmp_path / "detect.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="cannot load model"):
        TfliteDetector(edgetpu=False, model_path=bad)
    with pytest.raises(DetectorError, match="blazeface"):
        TfliteDetector("blazeface_short_range", edgetpu=False)


def test_pieces_of_people_cut_by_tile_edges_are_dropped_on_real_footage(shared_data):
    """vtest.avi frame 9 on 3x2 tiles overlapping by 0.3 (the bench config): plain NMS keeps two boxes cut by
    an inner tile edge that match no one in the ground truth; the detector drops them and nothing else."""
    from firmware.sensing.tracker import iou_matrix

    cam = VideoCamera(shared_data / "video/vtest.avi", clock=FakeClock(), lores_size=(900, 600), main_size=None)
    cam.open()
    for _ in range(8):
        cam.capture().release()
    frame = cam.capture()
    on = TfliteDetector(tiles=(3, 2), overlap=0.3, score_threshold=0.1, edgetpu=False)
    off = TfliteDetector(tiles=(3, 2), overlap=0.3, score_threshold=0.1, edgetpu=False, drop_fragments=False)
    with frame:
        kept, plain = on.detect(frame).to_pixels(768, 576), off.detect(frame).to_pixels(768, 576)
    cam.close()
    gone = np.array([b for b in plain if not any(np.allclose(b, k) for k in kept)])
    assert len(kept) == len(plain) - 2 and len(gone) == 2
    gt = np.loadtxt(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt", delimiter=",")
    gt = gt[gt[:, 0] == 9]
    people = np.column_stack((gt[:, 2], gt[:, 3], gt[:, 2] + gt[:, 4], gt[:, 3] + gt[:, 5]))
    assert iou_matrix(gone, people).max() < 0.5
    assert not on._interp.tensor(on._in_idx)().any()


def test_the_detection_cache_merges_raw_tiles_as_the_detector_does(shared_data):
    """bench.lib.detcache keeps every tile's boxes before merging and merges on loading: on real frames that
    gives exactly what `detect` gives."""
    from bench.lib.detcache import merge_raw

    det = TfliteDetector(tiles=(3, 2), overlap=0.3, score_threshold=0.1, edgetpu=False)
    raw = TfliteDetector(tiles=(3, 2), overlap=0.3, score_threshold=0.05, edgetpu=False)
    cam = VideoCamera(shared_data / "video/vtest.avi", clock=FakeClock(), lores_size=(900, 600), main_size=None)
    cam.open()
    for _ in range(8):
        cam.capture().release()
    for _ in range(3):  # frames 9-11, where tile-edge pieces are dropped
        with cam.capture() as frame:
            live = det.detect(frame)
            b, s, _, t = raw.detect_tiles(frame)
        cached = merge_raw(np.column_stack((b, s, t)), raw._grid, 0.1, (768, 576))
        assert 3 <= len(live) < int((s >= np.float32(0.1)).sum())
        np.testing.assert_allclose(cached[:, :4], live.to_pixels(768, 576), atol=1e-3)
        np.testing.assert_allclose(cached[:, 4], live.scores, atol=1e-6)
    cam.close()


def test_nms_merges_tile_duplicates_and_contained_boxes():
    boxes = np.array([[0.1, 0.1, 0.3, 0.5], [0.11, 0.1, 0.31, 0.5], [0.12, 0.15, 0.28, 0.45], [0.6, 0.6, 0.7, 0.9]])
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert sorted(nms(boxes, scores, 0.45).tolist()) == [0, 3]


def test_video_camera_faults_corrupt_frames_and_the_end(tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    img = np.full((120, 160, 3), 200, np.uint8)
    cv2.imwrite(str(folder / "0001.png"), img)
    (folder / "0002.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # a corrupt frame
    cv2.imwrite(str(folder / "0003.png"), img)
    cam = VideoCamera(folder, clock=FakeClock(), lores_size=(80, 60), main_size=(160, 120), pool_size=2)
    cam.open()
    with cam.capture() as f:
        assert f.pixels.shape == (60, 80, 3) and f.pixels.mean() > 150
    with pytest.raises(CameraError, match="0002|corrupt|decode"):
        cam.capture()
    with cam.capture() as f:  # the pool got its buffers back after the bad frame
        bufs = f.buffers()
    assert all(not b.any() for b in bufs)
    with pytest.raises(EndOfStream):
        cam.capture()
    cam.close()
    assert not cam._decode.any()
