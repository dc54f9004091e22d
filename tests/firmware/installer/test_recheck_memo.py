"""The view's person re-check runs the model again only on tiles whose pixels changed since the last check,
and finds exactly what the detector finds on the whole image (the real SSD on PETS09 frames, with the view's
blur of a region between two checks, as a view's checks go)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from firmware.cli.installer import PERSON_RECHECK_SCORE, TileMemo, make_view, person_recheck
from firmware.config import UmbraConfig
from firmware.installer.counts import RunCounts
from firmware.installer.view import VIEW_SIZE, flatten_region
from firmware.samples.taking import blur_region
from firmware.sensing.geometry import Geometry
from hal.clock import FakeClock
from hal.faces import FaceConfig
from hal.frame import Frame


@pytest.fixture(scope="module")
def frames(shared_data):
    cap = cv2.VideoCapture(str(shared_data / "video/vtest.avi"))
    out = []
    for i in range(60):
        ok, bgr = cap.read()
        assert ok
        if i % 20 == 0:
            out.append(np.ascontiguousarray(cv2.resize(bgr, VIEW_SIZE, interpolation=cv2.INTER_AREA)[:, :, ::-1]))
    cap.release()
    return out


def _whole(memo: TileMemo, rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    return memo.det.detect(Frame(rgb, None, 0, 0, (w, h))).persons(PERSON_RECHECK_SCORE).boxes


def _jpeg(rgb: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def test_the_tile_memo_finds_what_the_whole_detector_finds_and_reruns_only_changed_tiles(frames) -> None:
    memo = person_recheck(replace(UmbraConfig()))
    assert isinstance(memo, TileMemo) and len(memo.grid) == 4
    for rgb in frames:
        first = _jpeg(rgb)
        runs = memo.runs
        assert np.array_equal(memo(first), _whole(memo, first))
        assert memo.runs == runs + 4  # a new frame: every tile
        work = rgb.copy()  # as the view: its own image blurred further, encoded afresh for each check
        blur_region(work, 20, 20, 120, 200, min_block_px=24)  # the top left corner: one tile of four
        second = _jpeg(work)
        runs, reused = memo.runs, memo.reused
        assert np.array_equal(memo(second), _whole(memo, second))
        assert memo.reused - reused >= 1 and memo.runs - runs <= 3
        flatten_region(work, 300, 200, 340, 300)  # the middle: every tile
        third = _jpeg(work)
        assert np.array_equal(memo(third), _whole(memo, third))
        assert np.array_equal(memo(third), _whole(memo, third))  # the same image again: nothing rerun
    assert memo.reused >= 4 + len(frames)


def test_the_memo_refuses_an_image_it_would_have_to_copy(frames) -> None:
    memo = person_recheck(UmbraConfig())
    with pytest.raises(ValueError, match="C-contiguous"):
        memo(frames[0][:, ::-1])


def test_the_worker_s_models_run_on_its_own_thread_only() -> None:
    """No pool thread of the re-check's models runs at the loop's priority: one thread each, the worker's."""
    cfg = UmbraConfig()
    assert cfg.detector.threads > 1
    view = make_view(cfg, RunCounts(Geometry(cfg.geometry)), FakeClock())
    assert view.persons.det.num_threads == 1
    assert view.recheck_faces is not view.faces and view.recheck_faces.config.threads == 1
    assert view.faces.config.threads == FaceConfig().threads  # the tick's BlazeFace as before
