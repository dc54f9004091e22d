"""Images past any camera's size, refused from their header, before OpenCV decodes them (third attacker sweep,
issue 15). `cv2.imread` has no header-only mode: a 16000x12000 first image was decoded whole (about 576 MB)
and only then refused, and a later one too (then refused as a frame of another size). Here every image file
is built as a real header of its format with a picture size past MAX_SIDE (PNG, baseline and progressive
JPEG behind an EXIF block, BMP bottom-up and top-down, each under a name of another format), and the camera
must refuse it without ever handing it to `cv2.imread`. On the old code every case reached `imread`."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hal import video
from hal.clock import FakeClock
from hal.errors import CameraError, CameraUnavailable
from hal.imagehead import ImageHeaderError, image_size
from hal.video import MAX_SIDE, VideoCamera


def png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\0" * 64)
    return (b"\x89PNG\r\n\x1a\n" + chunk + struct.pack(">I", len(idat)) + b"IDAT" + idat
            + struct.pack(">I", zlib.crc32(b"IDAT" + idat)) + b"\0\0\0\0IEND\xaeB`\x82")


def jpeg_header(w: int, h: int, sof: int = 0xC0, exif: int = 0) -> bytes:
    out = b"\xff\xd8"
    if exif:
        out += b"\xff\xe1" + struct.pack(">H", exif + 2) + b"\0" * exif
    out += b"\xff\xdb" + struct.pack(">H", 67) + b"\0" + bytes(range(1, 65))  # a quantisation table
    out += bytes([0xFF, sof]) + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return out + b"\xff\xd9"


def bmp_header(w: int, h: int, top_down: bool = False) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


FORMATS = {"png": lambda w, h: png_header(w, h), "jpeg": lambda w, h: jpeg_header(w, h),
           "progressive jpeg after exif": lambda w, h: jpeg_header(w, h, 0xC2, 60000),
           "bmp": lambda w, h: bmp_header(w, h), "top-down bmp": lambda w, h: bmp_header(w, h, True)}


@pytest.fixture
def imread_spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = cv2.imread

    def spy(path: str, *a: object) -> object:
        seen.append(Path(path).name)
        return real(path, *a)

    monkeypatch.setattr(cv2, "imread", spy)
    return seen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fmt=st.sampled_from(sorted(FORMATS)), name=st.sampled_from(["x.png", "x.jpg", "x.bmp", "x.jpeg"]),
       w=st.integers(1, 65535), h=st.integers(1, 65535), first=st.booleans())
def test_an_image_past_max_side_is_refused_before_it_is_decoded(tmp_path_factory: pytest.TempPathFactory,
                                                                  imread_spy: list[str], fmt: str, name: str,
                                                                  w: int, h: int, first: bool) -> None:
    if max(w, h) <= MAX_SIDE:
        w = MAX_SIDE + 1 + w % 60000
    folder = tmp_path_factory.mktemp("imgs")
    big = ("00-" if first else "01-") + name
    (folder / big).write_bytes(FORMATS[fmt](w, h))
    assert image_size(folder / big) == (w, h)
    cv2.imwrite(str(folder / ("01-ok.png" if first else "00-ok.png")), np.zeros((12, 16, 3), np.uint8))
    imread_spy.clear()
    cam = VideoCamera(folder, clock=FakeClock(), lores_size=(8, 6), main_size=None)
    if first:
        with pytest.raises(CameraUnavailable, match=f"at most {MAX_SIDE}x{MAX_SIDE}"):
            cam.probe()
    else:
        cam.open()
        cam.capture().release()
        with pytest.raises(CameraError, match=f"at most {MAX_SIDE}x{MAX_SIDE}"):
            cam.capture()
        cam.close()
    assert big not in imread_spy, f"{fmt} {w}x{h} named {name} was decoded before it was refused"


@pytest.mark.parametrize("blob", [b"", b"\x89PNG\r\n\x1a\n\0\0", b"\xff\xd8\xff\xe1\xff\xff", b"\xff\xd8\xff\xda",
                                  b"BM" + b"\0" * 20, b"GIF89a" + b"\0" * 20, b"II*\0" + b"\0" * 20])
def test_a_header_that_states_no_size_is_not_decoded(tmp_path: Path, imread_spy: list[str], blob: bytes) -> None:
    (tmp_path / "0.jpg").write_bytes(blob)
    with pytest.raises(ImageHeaderError):
        image_size(tmp_path / "0.jpg")
    with pytest.raises(CameraUnavailable, match="cannot decode"):
        VideoCamera(tmp_path, clock=FakeClock()).probe()
    assert imread_spy == []


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp"])
def test_real_images_read_their_size_from_the_header(tmp_path: Path, ext: str) -> None:
    for w, h in [(1, 1), (640, 480), (17, 4000)]:
        cv2.imwrite(str(tmp_path / f"a{ext}"), np.zeros((h, w, 3), np.uint8))
        assert image_size(tmp_path / f"a{ext}") == (w, h)
    assert video.MAX_SIDE == MAX_SIDE
