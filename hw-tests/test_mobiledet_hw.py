"""Coral's SSDLite MobileDet (320x320 input) by its manifest: a golden image through the Edge TPU build, and
through its CPU twin. Skips, saying why, without a TPU or without the model files (they cannot be fetched
on the bench machine: put them in $UMBRA_MODEL_DIR from the manifests' URLs). Coral publishes no sha256 for
them, so the manifests pin none: these tests print the file's hash, to be checked and pinned."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from hal.clock import SystemClock
from hal.tflite import TfliteDetector
from hal.video import VideoCamera
from models import find_local, manifest

TPU = "ssdlite_mobiledet_coco_qat_postprocess_edgetpu"
CPU = "ssdlite_mobiledet_coco_qat_postprocess"


def _model(name: str) -> Path:
    m = manifest(name)
    path = find_local(m)
    if path is None:
        pytest.skip(f"{m.file} is not in $UMBRA_MODEL_DIR or the bench data: download it from {m.url}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if m.sha256 and digest != m.sha256:
        pytest.fail(f"{path}: sha256 {digest} is not the manifest's {m.sha256}")
    print(f"{path.name}: sha256 {digest}" + ("" if m.sha256 else " (manifest pins none: check it and pin it)"))
    return path


def _person(name: str, edgetpu: bool, shared_data: Path, tmp_path: Path):
    det = TfliteDetector(name, model_path=_model(name), edgetpu=edgetpu, score_threshold=0.5)
    assert det._in_hw == (320, 320)  # read from the model itself
    (tmp_path / "grace_hopper.bmp").symlink_to(shared_data / "images" / "grace_hopper.bmp")
    with VideoCamera(tmp_path, clock=SystemClock(), lores_size=(320, 320), main_size=None) as cam:
        with cam.capture() as frame:
            found = det.detect(frame)
    backend = det.backend
    det.close()
    return found, backend


def _check_portrait(found) -> None:
    assert len(found) >= 1, "one person in grace_hopper.bmp"
    best = int(np.argmax(found.scores))
    cx = float(found.boxes[best, 0] + found.boxes[best, 2]) / 2
    assert 0.3 <= cx <= 0.7 and float(found.scores[best]) >= 0.6
    assert float(found.boxes[best, 3] - found.boxes[best, 1]) >= 0.5  # a portrait: the person fills the height


def test_mobiledet_on_the_edge_tpu(edgetpu_present, shared_data, tmp_path):
    found, backend = _person(TPU, True, shared_data, tmp_path)
    assert backend == "edgetpu"
    _check_portrait(found)


def test_mobiledet_cpu_twin(shared_data, tmp_path):
    found, backend = _person(CPU, False, shared_data, tmp_path)
    assert backend == "cpu"
    _check_portrait(found)
