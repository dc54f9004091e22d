"""`umbra run`'s sample hook: at its random instant in the hour, the loop's frame gives one de-identified
640x480 JPEG into the outbox (every detected person blurred), audited; the frame itself is left as it was
(the loop zeroes it); never a second one in that hour."""

from __future__ import annotations

import base64
import json
import random
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from firmware.cli.run import sample_hook as _sample_hook
from firmware.config import load
from firmware.config.sync import OutboxConfig
from firmware.privacy.audit import AuditLog, verify
from firmware.samples.hook import InlineRunner
from firmware.sync.outbox import Outbox
from hal.detections import Detections
from hal.frame import Frame

ROOT = Path(__file__).resolve().parents[3]
HOUR = 1_700_002_800  # a whole hour, epoch seconds


def pets_frame(shared_data: Path) -> tuple[np.ndarray, Detections]:
    cap = cv2.VideoCapture(str(shared_data / "video/vtest.avi"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    main = cv2.cvtColor(cv2.resize(bgr, (640, 480), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    gt = np.loadtxt(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt", delimiter=",")
    g = gt[gt[:, 0] == 1][:, 2:6]
    boxes = np.column_stack((g[:, 0], g[:, 1], g[:, 0] + g[:, 2], g[:, 1] + g[:, 3])) / [768, 576, 768, 576]
    boxes = np.clip(boxes, 0, 1).astype(np.float32)
    return main, Detections(boxes, np.full(len(boxes), 0.9, np.float32), np.zeros(len(boxes), np.int32))


def detail(img: np.ndarray, box: np.ndarray) -> float:
    x0, y0, x1, y1 = (box * [640, 480, 640, 480]).astype(int)
    patch = cv2.cvtColor(np.ascontiguousarray(img[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(float)
    return float(np.abs(np.diff(patch, axis=0)).mean() + np.abs(np.diff(patch, axis=1)).mean())


def test_one_deidentified_sample_an_hour_goes_to_the_outbox_and_the_audit_log(tmp_path, shared_data,
                                                                              monkeypatch):
    monkeypatch.setenv("UMBRA_DATA_DIR", str(shared_data))
    cfg = load(ROOT / "bench/configs/pets09.toml")
    cfg = replace(cfg, sync=replace(cfg.sync, enabled=True))

    class Sync:
        outbox = Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite")))

    audit = AuditLog(tmp_path / "audit.jsonl")
    hook = _sample_hook(cfg, Sync, audit, rng=random.Random(7), runner=InlineRunner())  # made within the call
    assert hook is not None
    main, dets = pets_frame(shared_data)
    original = main.copy()
    for wall in (HOUR + 0.0, HOUR + 3599.5, HOUR + 3599.9):  # the instant lies somewhere in the hour
        hook(Frame(main, main, 0, 0, (768, 576)), dets, wall)
    assert np.array_equal(main, original)  # the hook copies; the loop zeroes the frame afterwards
    batch = Sync.outbox.take_batch()
    records = [json.loads(b) for b in batch.bodies]
    assert [r["schema"] for r in records] == ["umbra.sample/1"]  # one, not one per call
    jpeg = base64.b64decode(records[0]["jpeg_b64"])
    sample = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert sample.shape == (480, 640, 3)
    assert HOUR <= records[0]["taken_at"] < HOUR + 3600
    for box in dets.boxes:  # every detected person lost its detail
        assert detail(sample, box) < 0.5 * detail(original, box)
    events = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    taken = [e["fields"] for e in events if e["event"] == "sample_taken"]
    assert len(taken) == 1 and taken[0]["regions_blurred"] >= len(dets.boxes)
    assert verify(tmp_path / "audit.jsonl").ok


def test_no_samples_without_sync_or_when_disabled(tmp_path):
    cfg = load(ROOT / "bench/configs/pets09.toml")
    assert _sample_hook(cfg, None, None) is None  # nowhere to keep them until uploaded
    off = replace(cfg, samples=replace(cfg.samples, enabled=False), sync=replace(cfg.sync, enabled=True))

    class Sync:
        outbox = None

    assert _sample_hook(off, Sync, None) is None
