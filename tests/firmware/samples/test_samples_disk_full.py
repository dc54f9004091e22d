"""A disk that fills mid-run: when the audit entry of a sample cannot be written, the sample never reaches the
outbox, so nothing leaves that the audit log did not record; it is counted (`withheld`) and the loop goes on."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import numpy as np
import pytest

from firmware.config.samples import SamplesConfig
from firmware.privacy import audit
from firmware.samples.taking import SampleScheduler, SampleTaker
from hal.detections import Detections

T0 = 1_700_000_000


class NoFaces:
    def detect(self, rgb):  # type: ignore[no-untyped-def]
        return Detections.empty()


def test_a_sample_whose_audit_entry_fails_is_not_put(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = audit.AuditLog(tmp_path / "a.jsonl")
    put: list[dict] = []
    taker = SampleTaker(SamplesConfig(), SampleScheduler(SamplesConfig(), random.Random(2)), NoFaces(), put.append, log)
    main = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    box = np.array([[0.25, 0.25, 0.5, 0.75]])

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(audit.os, "fsync", full)
    for t in range(T0, T0 + 3600, 30):  # the hour's one sample is due in it
        assert taker.maybe_take(main, box, t) is None  # a counted fault, not an exception out of the loop
    assert put == [] and taker.withheld == 1 and log.failures == 1
