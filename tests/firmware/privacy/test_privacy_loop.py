"""Privacy, tested: after each tick every frame buffer is zero and no other array of frame size is
reachable; no frame reaches the disk or a socket while the loop runs."""

from __future__ import annotations

import gc
import os
import sys

import numpy as np
import pytest

from firmware.config.sensing import GeometryConfig, LoopConfig, QuantizeConfig, TrackerConfig
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Tracker
from hal.clock import FakeClock
from hal.synthetic import SyntheticCamera, SyntheticCrowd

_WATCH: dict[str, list] = {"on": [], "events": []}


def _audit(event: str, args: tuple) -> None:
    if not _WATCH["on"]:
        return
    if event == "open":
        path, mode, flags = (list(args) + [None, None])[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        if writing:
            _WATCH["events"].append((event, str(path)))
    elif event in ("socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind", "os.rename",
                   "os.replace", "shutil.copyfile", "os.link", "os.symlink", "mmap.__new__"):
        _WATCH["events"].append((event, repr(args)[:200]))


sys.addaudithook(_audit)


def frame_sized_arrays(min_size: int) -> list[np.ndarray]:
    """Every ndarray of at least `min_size` elements reachable from a gc-tracked container."""
    found = {}
    for obj in gc.get_objects():
        for ref in gc.get_referents(obj):
            if isinstance(ref, np.ndarray) and ref.size >= min_size:
                found[id(ref)] = ref
                base = ref.base
                while isinstance(base, np.ndarray):
                    found[id(base)] = base
                    base = base.base
    return list(found.values())


def make_loop(clock, cam, det, sinks=()):
    quant = Quantizer(QuantizeConfig(), Geometry(GeometryConfig(homography=(
        (0.02, 0, 0), (0, 0.02, 0), (0, 0, 1)))), Pseudonymizer(3600))
    return SensorLoop(LoopConfig(detect_hz=10.0), cam, det, Tracker(TrackerConfig()), quant, clock,
                      sinks=sinks)


@pytest.mark.parametrize("people", [3, 60])
def test_no_frame_sized_array_survives_a_tick_and_nothing_is_written_or_sent(people):
    clock = FakeClock()
    cam = SyntheticCamera(clock, frames=40, lores_size=(300, 300), main_size=(640, 480))
    frame_elems = 300 * 300 * 3
    violations = []

    def after_tick(result):
        live = [a for a in frame_sized_arrays(frame_elems // 4) if a.any()]
        if live:
            violations.append([a.shape for a in live])

    loop = make_loop(clock, cam, SyntheticCrowd(people, fail_on=frozenset({7})), sinks=[after_tick])
    _WATCH["events"].clear()
    _WATCH["on"].append(1)
    try:
        stats = loop.run()
    finally:
        _WATCH["on"].clear()
    assert stats.frames == 40
    assert not violations, f"frame-sized arrays with content outlived their tick: {violations[:3]}"
    assert not _WATCH["events"], f"the loop wrote or sent something: {_WATCH['events'][:5]}"
    # the only frame-sized arrays left are the camera's own buffers, and they are zero
    pool_ids = {id(b) for b in (cam.pool._free[0] + cam.pool._free[1]) if b is not None}
    for arr in frame_sized_arrays(frame_elems // 4):
        if id(arr) in pool_ids:
            assert not arr.any()


def test_the_audit_hook_does_see_writes(tmp_path):
    """The watcher can fail: a write during the watch is caught."""
    _WATCH["events"].clear()
    _WATCH["on"].append(1)
    try:
        (tmp_path / "x.bin").write_bytes(b"1")
    finally:
        _WATCH["on"].clear()
    assert _WATCH["events"] and _WATCH["events"][0][0] == "open"


def test_the_array_scan_does_see_a_kept_frame():
    """The scan can fail: a copy of a frame kept by a careless sink is found."""
    clock = FakeClock()
    cam = SyntheticCamera(clock, frames=3)
    kept = []
    loop = make_loop(clock, cam, SyntheticCrowd(2))
    loop.frame_hooks.append(lambda f, d, w: kept.append(f.pixels.copy()))
    loop.run()
    assert any(a.any() for a in frame_sized_arrays(300 * 300 * 3 // 4))
    kept.clear()
