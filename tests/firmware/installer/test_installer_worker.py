"""The installer view de-identified in the loop's tick and re-checked off it: the tick hands the worker only
the de-identified JPEG's bytes and the overlay data (at most one view in progress, at most `view_hz` a
second, only while watched), every pixel buffer of the tick zeroed before it ends; the worker zeroes what it
decodes; the served JPEG is the one the checks passed; a view not clean is withheld; a job that raises, in
the tick or the worker, is counted and the loop goes on; at stop a job not started is dropped and one running
is waited for. Deterministic: a hand-run executor, the fake clock, no sleeps."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from firmware import config as cfgmod
from firmware.cli.installer import make_view
from firmware.installer import view as viewmod
from firmware.installer.counts import RunCounts
from firmware.installer.view import InstallerView, ViewJob
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Tracker
from hal.clock import FakeClock
from hal.faces import ScriptedFaces
from hal.synthetic import SyntheticCamera, SyntheticCrowd
from tests.firmware.privacy.fresh import frame_sized_arrays, in_fresh_interpreter

CONFIG = """[device]
id = "dev-1"

[geometry]
homography = [[0.02, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, 1.0]]

[[geometry.lines]]
name = "mid"
a = [7.0, 0.0]
b = [7.0, 11.0]
"""


class HandExecutor(Executor):
    """Holds every job until the test runs them."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Future, Callable[..., Any], tuple]] = []
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):  # noqa: ANN001, ANN201 - Executor's signature
        future: Future = Future()
        self.jobs.append((future, fn, args))
        self.submitted += 1
        return future

    def run_all(self) -> None:
        jobs, self.jobs = self.jobs, []
        for future, fn, args in jobs:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as e:  # noqa: BLE001 - as a pool's future holds it
                    future.set_exception(e)

    def job(self, i: int = -1) -> ViewJob:
        return self.jobs[i][2][0]


@dataclass
class Sensor:
    clock: FakeClock
    loop: SensorLoop
    view: InstallerView


def _sensor(tmp_path: Path, persons: Callable[[np.ndarray], np.ndarray], executor: Executor | None,
            view_hz: float = 0.5) -> Sensor:
    path = tmp_path / "umbra.toml"
    path.write_text(CONFIG + f"\n[installer]\nenabled = true\nport = 0\nview_hz = {view_hz}\n")
    cfg = cfgmod.load(path)
    clock = FakeClock()
    geo = Geometry(cfg.geometry)
    counts = RunCounts(geo)
    loop = SensorLoop(cfg.loop, SyntheticCamera(clock, frames=400), SyntheticCrowd(6), Tracker(cfg.tracker),
                      Quantizer(cfg.quantize, geo, Pseudonymizer(3600)), clock, sinks=[counts])
    view = make_view(replace(cfg), counts, clock, ScriptedFaces(), persons=persons, executor=executor)
    loop.frame_hooks.append(view.on_frame)
    loop.track_hooks.append(view.on_tracks)
    return Sensor(clock, loop, view)


def _nobody(rgb: np.ndarray) -> np.ndarray:
    return np.zeros((0, 4))


def _decoded(jpeg: bytes) -> np.ndarray:
    return np.ascontiguousarray(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1])


def test_the_tick_hands_the_worker_a_jpeg_which_it_re_checks_and_serves(tmp_path: Path) -> None:
    ex = HandExecutor()
    s = _sensor(tmp_path, _nobody, ex)
    s.view.watch()
    s.loop.run(1)
    assert ex.submitted == 1 and s.view.latest is None and s.view.made == 0  # not served from the tick
    assert s.view.checks == 0  # no re-check in the tick
    job = ex.job()
    assert isinstance(job.jpeg, bytes) and job.jpeg[:2] == b"\xff\xd8" and job.regions  # persons blurred
    assert s.view.busy()
    ex.run_all()
    assert s.view.made == 1 and s.view.latest is not None and s.view.latest.seq == job.seq
    assert s.view.latest.jpeg == job.jpeg and s.view.checks == 1  # clean at its first check: served as made
    assert not s.view.busy()
    assert s.view.latest.jpeg[:2] == b"\xff\xd8" and s.view.latest.state["tracks"] is not None


def test_at_most_one_view_in_progress_and_at_most_view_hz_while_watched(tmp_path: Path) -> None:
    ex = HandExecutor()
    s = _sensor(tmp_path, _nobody, ex, view_hz=2.0)  # one view every 5 frames at 10 fps
    s.view.watch()
    s.loop.run(30)  # 3 s of frames, the worker never gets to run: one job only
    assert ex.submitted == 1
    ex.run_all()
    s.view.watch()
    s.loop.run(s.loop.stats.ticks + 1)  # the next tick takes the next view at once (it is overdue)
    assert ex.submitted == 2
    for _ in range(20):  # the worker keeps up: one job per 0.5 s of fake time
        ex.run_all()
        s.clock.advance(0.1)  # a tick's 0.1 s (a run of one tick starts its pacing afresh)
        s.view.watch()
        s.loop.run(s.loop.stats.ticks + 1)
    assert ex.submitted == 2 + 20 // 5
    ex.run_all()
    s.clock.advance(s.view.config.watch_timeout_s + 1)  # nobody asked since: no more views
    s.loop.run(s.loop.stats.ticks + 20)
    assert ex.submitted == 2 + 20 // 5 and not ex.jobs


def test_the_served_jpeg_is_the_one_the_checks_passed(tmp_path: Path) -> None:
    seen: list[np.ndarray] = []

    def persons(rgb: np.ndarray) -> np.ndarray:
        seen.append(rgb.copy())
        return np.array([[0.1, 0.1, 0.3, 0.5]]) if len(seen) == 1 else np.zeros((0, 4))  # clean at the second

    ex = HandExecutor()
    s = _sensor(tmp_path, persons, ex)
    s.view.watch()
    s.loop.run(1)
    assert not seen  # no check in the tick
    ex.run_all()
    v = s.view.latest
    assert v is not None and len(seen) == 2
    assert np.array_equal(_decoded(v.jpeg), seen[-1])  # the bytes served are exactly those last checked
    assert any(r[0] <= 0.1 and r[2] >= 0.3 for r in v.regions)  # what the first check found is blurred


def test_a_view_never_clean_is_withheld(tmp_path: Path) -> None:
    calls: list[int] = []

    def persons(rgb: np.ndarray) -> np.ndarray:
        calls.append(1)
        return np.array([[0.1, 0.1, 0.3, 0.5]])  # always someone

    ex = HandExecutor()
    s = _sensor(tmp_path, persons, ex)
    s.view.watch()
    s.loop.run(1)
    job = ex.job()
    ex.run_all()
    assert s.view.latest is None and s.view.withheld == 1 and s.view.made == 0
    assert len(calls) == s.view.samples.verify_passes + 1
    assert job.seq == 1 and not s.view.busy()


def test_a_worker_that_raises_is_counted_and_the_loop_goes_on(tmp_path: Path) -> None:
    fail = [True]

    def persons(rgb: np.ndarray) -> np.ndarray:
        if fail[0]:
            raise RuntimeError("the re-check's model fell over")
        return np.zeros((0, 4))

    ex = HandExecutor()
    s = _sensor(tmp_path, persons, ex)
    s.view.watch()
    s.loop.run(1)
    job = ex.job()
    future = ex.jobs[-1][0]
    ex.run_all()
    assert future.exception() is None  # caught in the job: counted, logged
    assert s.view.failed == 1 and s.view.latest is None and job.seq == 1 and not s.view.busy()
    fail[0] = False
    s.view.watch()
    s.loop.run(s.loop.stats.ticks + 25)  # the next view is due 2 s later and the loop ran on
    assert ex.submitted == 2
    ex.run_all()
    assert s.view.made == 1 and s.view.failed == 1


def test_a_job_the_tick_cannot_hand_over_is_counted_and_the_loop_goes_on(tmp_path: Path) -> None:
    jobs: list[ViewJob] = []

    class Refusing(Executor):
        def submit(self, fn, /, *args, **kwargs):  # noqa: ANN001, ANN201
            jobs.append(args[0])
            raise RuntimeError("cannot schedule new futures after shutdown")

    s = _sensor(tmp_path, _nobody, Refusing())
    s.view.watch()
    s.loop.run(3)  # counted, not fatal
    assert len(jobs) == 1 and isinstance(jobs[0].jpeg, bytes) and not s.view.busy() and s.view.failed == 1
    assert s.loop.stats.frames == 3


def test_a_view_that_fails_in_the_tick_is_counted_its_buffers_zeroed_and_the_loop_goes_on(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    made: list[np.ndarray] = []
    real_resize = cv2.resize

    def resize(*a, **k):  # noqa: ANN002, ANN003, ANN202 - cv2's
        made.append(real_resize(*a, **k))
        return made[-1]

    def encode(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("the encoder fell over")

    monkeypatch.setattr(cv2, "resize", resize)
    monkeypatch.setattr(cv2, "imencode", encode)
    ex = HandExecutor()
    s = _sensor(tmp_path, _nobody, ex)
    s.view.watch()
    s.loop.run(3)
    assert s.view.failed == 1 and ex.submitted == 0 and not s.view.busy() and s.loop.stats.frames == 3
    views = [m for m in made if m.shape[:2] == (480, 640)]  # the view's resize (the loop resizes too)
    assert len(views) == 1 and not views[0].any()


def test_at_stop_a_job_not_started_is_dropped_and_zeroed(tmp_path: Path) -> None:
    ex = HandExecutor()
    s = _sensor(tmp_path, _nobody, ex)
    s.view.watch()
    s.loop.run(1)
    future = ex.jobs[-1][0]
    s.view.close()
    assert future.cancelled() and not s.view.busy()
    s.view.watch()
    s.loop.run(s.loop.stats.ticks + 40)
    assert ex.submitted == 1  # closed: no more views
    ex.run_all()
    assert s.view.made == 0 and s.view.latest is None


def test_at_stop_a_running_job_is_waited_for(tmp_path: Path, monkeypatch) -> None:
    started, release = threading.Event(), threading.Event()
    jobs: list[ViewJob] = []

    def persons(rgb: np.ndarray) -> np.ndarray:
        started.set()
        assert release.wait(30)
        return np.zeros((0, 4))

    s = _sensor(tmp_path, persons, None)  # the view's own worker thread
    real_work = s.view._work
    monkeypatch.setattr(s.view, "_work", lambda job: jobs.append(job) or real_work(job))
    real_wait = viewmod.wait_futures

    def wait_then(fs):  # noqa: ANN001, ANN202 - close() is waiting now: let the worker finish
        release.set()
        return real_wait(fs)

    monkeypatch.setattr(viewmod, "wait_futures", wait_then)
    s.view.watch()
    s.loop.run(1)
    assert started.wait(30)  # the job is running in the worker
    assert s.view.busy() and len(jobs) == 1
    s.view.close()
    assert release.is_set() and not s.view.busy()  # close() waited for it...
    assert s.view.made == 1  # ...and it ended
    assert s.view._executor is not None and s.view._executor._shutdown  # type: ignore[attr-defined]


def test_where_a_re_check_found_someone_is_flattened_up_front_for_ten_seconds(tmp_path: Path) -> None:
    box = np.array([[0.3, 0.3, 0.4, 0.6]])

    def persons(rgb: np.ndarray) -> np.ndarray:  # a person wherever the box's inside is not flat
        x0, y0, x1, y1 = (box[0] * [640, 480, 640, 480]).astype(int)
        return box if rgb[y0 + 4:y1 - 4, x0 + 4:x1 - 4].std(axis=(0, 1)).max() > 2.0 else np.zeros((0, 4))

    s = _sensor(tmp_path, persons, viewmod.InlineExecutor())
    xx = np.mgrid[0:480, 0:640][1]
    pixels = (xx % 256).astype(np.uint8)[..., None].repeat(3, axis=2)  # ramps: not flat anywhere
    first = s.view.make(pixels, (640, 480), [], 1, 0.0)
    assert first is not None and s.view.checks == 2  # found, flattened, clean at the second check
    s.clock.advance(9)
    again = s.view.make(pixels, (640, 480), [], 2, 9.0)
    assert again is not None and s.view.checks == 3  # flattened before the first check: clean at once
    assert len(persons(_decoded(again.jpeg))) == 0
    s.clock.advance(2)
    late = s.view.make(pixels, (640, 480), [], 3, 11.0)
    assert late is not None and s.view.checks == 5  # 11 s on: found again


def _with_content(min_size: int) -> list[list[int]]:
    return [list(a.shape) for a in frame_sized_arrays(min_size) if a.any()]


def scan_view_ticks(folder: str) -> dict[str, Any]:
    """A watched sensor's ticks with the view's jobs held (not run), every reachable array scanned after each
    tick; then the jobs run and the scan made again. Run in a fresh interpreter (below), where every array is
    the sensor's."""
    ex = HandExecutor()
    s = _sensor(Path(folder), _nobody, ex, view_hz=2.0)
    min_size = 300 * 300 * 3 // 4  # a quarter of the low-res frame (the view's 640 x 480 is larger)
    after_ticks: list[list[list[int]]] = []
    s.loop.sinks.append(lambda result: after_ticks.append(_with_content(min_size)))
    s.view.watch()
    s.loop.run(12)  # one view started at the first tick, held: the worker has not run
    held = ex.submitted
    jobs = [ex.job(i) for i in range(len(ex.jobs))]
    ex.run_all()
    return {"held": held, "ticks": len(after_ticks), "after_ticks": [a for a in after_ticks if a][:3],
            "after_worker": _with_content(min_size), "made": s.view.made,
            "job_arrays": sorted({f.name for j in jobs for f in fields(j)
                                  if isinstance(getattr(j, f.name), np.ndarray)}),
            "job_jpeg": [type(getattr(j, "jpeg", None)).__name__ for j in jobs]}


def test_after_a_tick_that_started_a_view_no_frame_sized_copy_is_held_anywhere(tmp_path: Path) -> None:
    """The view's job holds the de-identified JPEG's bytes only: no array of pixels outlives the tick that
    started it, while the worker has not yet run, nor after it ran."""
    r = in_fresh_interpreter("tests.firmware.installer.test_installer_worker", "scan_view_ticks", str(tmp_path),
                             cwd=tmp_path, timeout=120)
    assert r["held"] == 1 and r["ticks"] == 12  # a view was started and held through 12 ticks
    assert not r["after_ticks"], f"pixel arrays outlived a tick while a view was held: {r['after_ticks']}"
    assert not r["after_worker"], f"pixel arrays outlived the view's job: {r['after_worker']}"
    assert r["made"] == 1 and r["job_arrays"] == [] and r["job_jpeg"] == ["bytes"]


def test_the_view_s_own_worker_runs_below_the_loop_s_priority(tmp_path: Path) -> None:
    """The re-checks take the CPU time the loop leaves: the worker thread (the only one running them) at
    WORKER_NICE, the loop's thread left at its own."""
    s = _sensor(tmp_path, _nobody, None)
    nice: list[int] = []
    s.view.listeners.append(lambda v: nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    try:
        s.view.watch()
        s.loop.run(1)
        s.view.drain()
    finally:
        s.view.close()
    assert s.view.made == 1 and nice == [max(mine, viewmod.WORKER_NICE)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
