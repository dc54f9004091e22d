"""A disk that fills mid-run: when the audit entry of a sample cannot be written, the sample never reaches the
outbox, so nothing leaves that the audit log did not record."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import numpy as np
import pytest

from firmware.config.samples import SamplesConfig
from firmware.errors import AuditError
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
    with pytest.raises(AuditError):
        for t in range(T0, T0 + 3600, 30):
            taker.maybe_take(main, box, t)
    assert put == []
