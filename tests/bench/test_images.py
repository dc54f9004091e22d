"""Bench images: an unreadable file or JPEG is a clear, one-line error with exit 1, never a None inside cv2."""

from __future__ import annotations

import pytest

from bench.lib.data import clean_exit
from bench.lib.images import UnreadableImage, decode_rgb, read_rgb


def test_unreadable_file_and_jpeg(tmp_path):
    bad = tmp_path / "frame.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(UnreadableImage, match="frame.jpg"):
        read_rgb(bad)
    with pytest.raises(UnreadableImage, match="sample"):
        decode_rgb(b"garbage", "sample")


def test_clean_exit_reports_one_line(tmp_path, capsys):
    @clean_exit
    def main(argv=None) -> int:
        return int(read_rgb(tmp_path / "missing.png").sum())

    assert main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.png" in err[0]
