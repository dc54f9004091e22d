"""The check before a sample leaves (firmware.samples.gate), with the real person model and both BlazeFace
variants: a frame's sample is either sent and then free of persons and faces for the independent check of
bench.deid (tilings and thresholds the gate never runs), or dropped, audited and never put in the outbox."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.deid import detect_persons, independent_check, person_detector
from firmware.config import parse
from firmware.config.samples import SamplesConfig
from firmware.errors import ConfigError
from firmware.privacy.audit import AuditLog, verify
from firmware.samples.gate import grid_person_finder, sample_faces, sample_persons
from firmware.samples.taking import SampleScheduler, SampleTaker
from hal.tflite import TfliteDetector

HOUR = 1_700_002_800


@pytest.fixture(scope="module")
def models():
    cfg = SamplesConfig()
    return person_detector(), (sample_faces(cfg), sample_persons(cfg, "ssd_mobilenet_v1_coco_quant")), \
        independent_check()


def test_the_gate_refuses_a_detector_that_drops_scores_it_must_see() -> None:
    with pytest.raises(ValueError, match="drops scores below 0.3"):
        grid_person_finder(TfliteDetector(score_threshold=0.3), (1, 2), 0.3, 0.2)


@pytest.mark.parametrize("bad", ["check_grids = []", "check_grids = [9]", "check_score = 0", "check_overlap = 0.5"])
def test_a_bad_gate_setting_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="check_"):
        parse(f"[samples]\n{bad}\n")


def test_the_gate_searches_finer_than_one_look(shared_data: Path, models) -> None:
    """On the kite beach (people a few pixels tall) the grids find more persons than the whole image does."""
    persons, (_, gate_persons), _ = models
    rgb = cv2.cvtColor(cv2.imread(str(shared_data / "images/kite_and_cold.jpg")), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_AREA)
    assert len(gate_persons(rgb)) > len(detect_persons(persons, rgb)) >= 1


def _frames(shared_data: Path) -> dict[str, np.ndarray]:
    """One frame of three kinds of footage: a dense MOT17 street, the PETS09 plaza, a shared photo."""
    mot = shared_data / "mot/MOT17-frames/MOT17-04-FRCNN/img1"
    cap = cv2.VideoCapture(str(shared_data / "video/vtest.avi"))
    ok, pets = cap.read()
    cap.release()
    assert ok
    bgr = {"MOT17-04": cv2.imread(str(sorted(mot.glob("*.jpg"))[0])), "PETS09": pets,
           "squat": cv2.imread(str(shared_data / "images/squat.bmp"))}
    return {k: cv2.cvtColor(v, cv2.COLOR_BGR2RGB) for k, v in bgr.items()}


@pytest.mark.parametrize("name", ["MOT17-04", "PETS09", "squat"])
def test_a_sample_is_sent_person_free_or_dropped_and_audited(tmp_path: Path, shared_data: Path, models,
                                                              name: str) -> None:
    persons, (faces, finder), (check_persons, check_faces) = models
    rgb = _frames(shared_data)[name]
    sent: list[dict] = []
    log = AuditLog(tmp_path / "audit.jsonl")
    cfg = SamplesConfig()
    taker = SampleTaker(cfg, SampleScheduler(cfg, random.Random(1)), faces, sent.append, log, person_finder=finder)
    boxes = detect_persons(persons, rgb).boxes
    assert len(boxes) >= 1
    for t in range(HOUR, HOUR + 3600, 60):
        if taker.maybe_take(rgb, boxes, t) is not None:
            break
    events = [json.loads(x)["event"] for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert verify(tmp_path / "audit.jsonl").ok
    if not sent:
        assert events == ["sample_dropped"]
        return
    assert events == ["sample_taken"] and len(sent) == 1
    jpeg = np.frombuffer(base64.b64decode(sent[0]["jpeg_b64"]), np.uint8)
    img = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert img.shape == (480, 640, 3)
    assert (check_persons(img), len(check_faces.detect(img))) == (0, 0)
