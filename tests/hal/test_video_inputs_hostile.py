"""Inputs that are not what they say, at the video camera: an image folder whose frames change size mid-stream
(resized, each would have moved every zone the homography places: now a counted camera fault per frame, the
frames of the source's size still delivered), a first image far past any camera's size (refused before a
frame buffer of it is made), a device file or a fifo named as the video (refused as not a regular file, not
"not found", and not opened: a fifo would block). The first two passed silently or ran out of time on the old
code."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from hal.clock import FakeClock
from hal.errors import CameraError, CameraUnavailable
from hal.video import MAX_SIDE, VideoCamera


def _frame(w: int, h: int, level: int) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


def test_a_frame_of_another_size_mid_stream_is_a_counted_fault_not_a_resize(tmp_path: Path) -> None:
    for i in range(6):
        w, h = (320, 320) if i in (2, 4) else (160, 120)
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), _frame(w, h, 10 * (i + 1)))
    cam = VideoCamera(tmp_path, clock=FakeClock(), lores_size=(80, 60), main_size=None)
    cam.open()
    got, faults = [], []
    for _ in range(6):
        try:
            frame = cam.capture()
            got.append(int(frame.pixels[0, 0, 0]))
            frame.release()
        except CameraError as e:
            faults.append(str(e))
    cam.close()
    assert len(faults) == 2 and all("320x320" in f and "160x120" in f for f in faults), faults
    assert got == [10, 20, 40, 60]  # the frames of the source's size, in order, none lost


def test_a_source_past_any_camera_size_is_refused(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "0.png"), np.zeros((16, MAX_SIDE + 1, 3), np.uint8))
    with pytest.raises(CameraUnavailable, match=f"at most {MAX_SIDE}x{MAX_SIDE}"):
        VideoCamera(tmp_path, clock=FakeClock()).probe()


@pytest.mark.parametrize("kind", ["device", "fifo", "folder of no images", "dangling symlink"])
def test_a_source_that_is_not_a_video_file_is_named(tmp_path: Path, kind: str) -> None:
    src = {"device": Path("/dev/zero"), "fifo": tmp_path / "f.avi", "folder of no images": tmp_path / "d",
           "dangling symlink": tmp_path / "l.avi"}[kind]
    if kind == "fifo":
        os.mkfifo(src)
    elif kind == "folder of no images":
        src.mkdir()
        (src / "notes.txt").write_text("x")
    elif kind == "dangling symlink":
        src.symlink_to(tmp_path / "gone.avi")
    want = {"device": "not a regular file", "fifo": "not a regular file", "folder of no images": "holds no images",
            "dangling symlink": "not found"}[kind]
    with pytest.raises(CameraUnavailable, match=want):
        VideoCamera(src, clock=FakeClock()).probe()
