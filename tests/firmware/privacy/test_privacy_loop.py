"""Privacy, tested: after each tick every frame buffer is zero and no other array of frame size is
reachable; no frame reaches the disk or a socket while the loop runs."""

from __future__ import annotations

import os
import sys

import pytest

from firmware.config.sensing import GeometryConfig, LoopConfig, QuantizeConfig, TrackerConfig
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Tracker
from hal.clock import FakeClock
from hal.synthetic import SyntheticCamera, SyntheticCrowd
from tests.firmware.privacy.fresh import frame_sized_arrays, in_fresh_interpreter

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


def make_loop(clock, cam, det, sinks=()):
    quant = Quantizer(QuantizeConfig(), Geometry(GeometryConfig(homography=(
        (0.02, 0, 0), (0, 0.02, 0), (0, 0, 1)))), Pseudonymizer(3600))
    return SensorLoop(LoopConfig(detect_hz=10.0), cam, det, Tracker(TrackerConfig()), quant, clock,
                      sinks=sinks)


def scan_run(people: int | str) -> dict:
    """The loop's run with every reachable array scanned after each tick, and writes and sends watched. Run in a
    fresh interpreter (below): there, every array is the loop's, and the scan of all objects is quick; inside
    the suite's process the scan would also see other tests' arrays and walk all of their objects."""
    clock = FakeClock()
    cam = SyntheticCamera(clock, frames=40, lores_size=(300, 300), main_size=(640, 480))
    frame_elems = 300 * 300 * 3
    violations = []
    people = int(people)

    def after_tick(result):
        live = [a for a in frame_sized_arrays(frame_elems // 4) if a.any()]
        if live:
            violations.append([list(a.shape) for a in live])

    loop = make_loop(clock, cam, SyntheticCrowd(people, fail_on=frozenset({7})), sinks=[after_tick])
    _WATCH["events"].clear()
    _WATCH["on"].append(1)
    try:
        stats = loop.run()
    finally:
        _WATCH["on"].clear()
    # the only frame-sized arrays left are the camera's own buffers, and they are zero
    pool_ids = {id(b) for b in (cam.pool._free[0] + cam.pool._free[1]) if b is not None}
    pool_dirty = sum(1 for arr in frame_sized_arrays(frame_elems // 4) if id(arr) in pool_ids and arr.any())
    return {"frames": stats.frames, "violations": violations[:3], "events": [list(e) for e in _WATCH["events"][:5]],
            "pool_dirty": pool_dirty}


@pytest.mark.parametrize("people", [3, 60])
def test_no_frame_sized_array_survives_a_tick_and_nothing_is_written_or_sent(people, tmp_path):
    r = in_fresh_interpreter("tests.firmware.privacy.test_privacy_loop", "scan_run", str(people), cwd=tmp_path)
    assert r["frames"] == 40
    assert not r["violations"], f"frame-sized arrays with content outlived their tick: {r['violations']}"
    assert not r["events"], f"the loop wrote or sent something: {r['events']}"
    assert r["pool_dirty"] == 0, "a camera buffer was returned to its pool with content"


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
