"""A sample is sent only when, as it will be sent, no person and no face is found on it: what the first
passes leave is blurred harder, and a sample that still shows something is dropped, audited, and never
reaches the outbox. The main image keeps its aspect ratio (fitted whole into 640x480, never stretched)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from firmware.config.samples import SamplesConfig
from firmware.config.sync import OutboxConfig
from firmware.privacy.audit import AuditLog, verify
from firmware.samples.taking import SampleScheduler, SampleTaker, clean_sample, letterbox
from firmware.sync.outbox import Outbox
from hal.detections import Detections
from hal.frame import letterbox_rect

HOUR = 1_700_002_800
BOX = np.array([[0.3, 0.2, 0.6, 0.9]])


class NoFaces:
    def detect(self, rgb):
        return Detections.empty()


def _events(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _take_hour(taker: SampleTaker, main: np.ndarray) -> list[dict]:
    return [r for t in range(HOUR, HOUR + 3600, 20) if (r := taker.maybe_take(main, BOX, t))]


def test_a_sample_that_cannot_be_cleaned_is_dropped_audited_and_never_enqueued(tmp_path: Path) -> None:
    outbox = Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite")))
    log = AuditLog(tmp_path / "audit.jsonl")
    calls: list[int] = []

    def always_a_person(rgb):  # whatever the blur does, the detector still reads a person there
        calls.append(1)
        return BOX

    cfg = SamplesConfig()
    taker = SampleTaker(cfg, SampleScheduler(cfg, random.Random(3)), NoFaces(),
                        lambda rec: outbox.enqueue([rec]), log, person_finder=always_a_person)
    main = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert _take_hour(taker, main) == []
    assert outbox.take_batch() is None  # nothing reached the outbox
    dropped = [e["fields"] for e in _events(tmp_path / "audit.jsonl") if e["event"] == "sample_dropped"]
    assert len(dropped) == 1 and dropped[0]["reason"] == "not-clean" and dropped[0]["still_found"] == 1
    assert not [e for e in _events(tmp_path / "audit.jsonl") if e["event"] == "sample_taken"]
    assert len(calls) == cfg.verify_passes + 2  # every pass, the check, the check after the harder blur
    assert verify(tmp_path / "audit.jsonl").ok


def test_what_the_passes_leave_is_blurred_harder_then_sent(tmp_path: Path) -> None:
    seen: list[int] = []

    missed = np.array([[0.7, 0.1, 0.9, 0.5]])  # a person the loop's detection did not box

    def finds_until_flat(rgb):  # "finds a person" there while it still has detail
        x0, y0, x1, y1 = (missed[0] * [640, 480, 640, 480]).astype(int)
        patch = rgb[y0:y1, x0:x1].astype(float)
        seen.append(int(patch.std() > 3.0))
        return missed if patch.std() > 3.0 else np.zeros((0, 4))

    put: list[dict] = []
    cfg = SamplesConfig(verify_passes=0)
    log = AuditLog(tmp_path / "audit.jsonl")
    taker = SampleTaker(cfg, SampleScheduler(cfg, random.Random(3)), NoFaces(), put.append, log,
                        person_finder=finds_until_flat)
    main = np.random.default_rng(1).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert len(_take_hour(taker, main)) == 1 and len(put) == 1
    taken = [e["fields"] for e in _events(tmp_path / "audit.jsonl") if e["event"] == "sample_taken"]
    assert seen == [1, 0] and taken[0]["blurred_harder"] == 1 and taken[0]["checked"] == ["faces", "persons"]


def test_clean_sample_zeroes_what_it_could_not_clean() -> None:
    main = np.full((480, 640, 3), 200, np.uint8)
    out = clean_sample(main, BOX, NoFaces(), lambda rgb: BOX)
    assert out.image is None and out.left == 1 and main.min() == 200  # the input is left as it was


@pytest.mark.parametrize(("src", "rect"), [((1920, 1080), (0, 60, 640, 360)), ((768, 576), (0, 0, 640, 480)),
                                           ((480, 640), (140, 0, 360, 480))])
def test_letterbox_keeps_the_aspect_ratio(src, rect) -> None:
    assert letterbox_rect(src, (640, 480)) == rect


def test_a_wide_view_is_padded_not_squashed_and_its_boxes_follow() -> None:
    wide = np.zeros((720, 1280, 3), np.uint8)
    wide[180:540, 320:640] = (255, 0, 0)  # a red block: x 0.25-0.5, y 0.25-0.75 of the view
    fitted, boxes = letterbox(wide, np.array([[0.25, 0.25, 0.5, 0.75]]))
    assert fitted.shape == (480, 640, 3)
    assert fitted[:59].max() == 0 and fitted[-59:].max() == 0  # bars above and below, nothing stretched
    x0, y0, x1, y1 = (boxes[0] * [640, 480, 640, 480]).round().astype(int)
    assert (x1 - x0) / (y1 - y0) == pytest.approx(320 / 360, rel=0.02)  # the block's own shape
    assert fitted[y0 + 2:y1 - 2, x0 + 2:x1 - 2, 0].min() > 200
