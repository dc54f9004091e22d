"""Motion's OpenCV steps (firmware.sensing.motion: the dilation and the connected components) give the same boxes
in the same order whatever OpenCV's thread count (its labelling may split the image between threads: a Pi 4 has
four cores, this machine two), and write the blobs' numbers into the work buffer that is zeroed, not into a
fresh array."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from firmware.sensing.motion import MotionDetector
from tests.firmware.sensing.test_gate_reference import MOTION, _frames


@pytest.fixture
def threads():
    before = cv2.getNumThreads()
    yield
    cv2.setNumThreads(before)


def _stream(size):
    m = MotionDetector()
    return [m.boxes(img) for img in _frames(size, 40, seed=size[0])]


@pytest.mark.parametrize("size", [s for s, view in MOTION if not view])
def test_the_boxes_do_not_depend_on_opencvs_threads(threads, size):
    cv2.setNumThreads(1)
    one = _stream(size)
    assert sum(len(b) for b in one)  # the stream had motion in it
    for n in (2, 4, 8):
        cv2.setNumThreads(n)
        again = _stream(size)
        assert all(np.array_equal(a, b) for a, b in zip(one, again, strict=True)), n


def test_the_blobs_numbers_go_into_the_buffer_given():
    mask = np.zeros((66, 99), bool)
    mask[3:9, 4:12] = mask[40:50, 60:70] = True
    labels = np.zeros(mask.shape, np.uint16)
    boxes = MotionDetector()._blob_list(mask, labels)
    assert len(boxes) == 2 and set(np.unique(labels)) == {0, 1, 2}
    wrong = np.zeros(mask.shape, np.int16)  # not a type OpenCV labels into: copied over, its own array zeroed
    assert MotionDetector()._blob_list(mask, wrong) == boxes and set(np.unique(wrong)) == {0, 1, 2}
