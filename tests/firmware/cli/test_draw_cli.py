"""`umbra draw`: the installer overlay on a de-identified snapshot of the config's own camera (PETS09 video,
the scripted detector replaying its gt so no model runs), written as PNG."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from firmware.cli.main import main

ROOT = Path(__file__).resolve().parents[3]


def test_draw_writes_the_overlay_on_a_deidentified_snapshot(shared_data: Path, tmp_path: Path, capsys) -> None:
    text = (ROOT / "bench/configs/pets09.toml").read_text()
    gt = shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt"
    text = text.replace('kind = "tflite"', f'kind = "scripted"\nground_truth = "{gt}"')
    text = text.replace("$UMBRA_DATA_DIR", str(shared_data))
    cfg = tmp_path / "pets.toml"
    cfg.write_text(text)
    out = tmp_path / "view.png"
    assert main(["draw", "--config", str(cfg), "--out", str(out), "--frames", "12"]) == 0
    said = capsys.readouterr().out
    assert "2 zones, 2 lines" in said and " 0 tracks" not in said
    img = cv2.imread(str(out))
    assert img.shape == (480, 640, 3)
    bgr = img.reshape(-1, 3).astype(int)
    magenta = ((bgr[:, 0] > 200) & (bgr[:, 1] < 60) & (bgr[:, 2] > 200)).sum()  # zones
    yellow = ((bgr[:, 0] < 60) & (bgr[:, 1] > 170) & (bgr[:, 2] > 220)).sum()  # tracks
    assert magenta > 200 and yellow > 100
    assert not np.array_equal(img[0:60, 0:200], np.zeros((60, 200, 3)))  # the counts' text


def test_draw_says_clearly_when_the_config_cannot_load(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[installer]\nbind = \"0.0.0.0\"\n")
    assert main(["draw", "--config", str(bad), "--out", str(tmp_path / "x.png")]) == 2
    assert "neither loopback" in capsys.readouterr().err
