"""The installer view made off the loop's tick: the tick hands a copy of the frame and the overlay data to
the worker (at most one view in progress, at most `view_hz` a second, only while watched); the worker owns
the copy and zeroes it whatever happens; the served JPEG is the one the checks passed; a view not clean is
withheld; a worker that raises is counted and the loop goes on; at stop a job not started is dropped
(zeroed) and one running is waited for. Deterministic: a hand-run executor, the fake clock, no sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
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


def test_the_tick_hands_a_copy_to_the_worker_which_makes_the_view_and_zeroes_the_copy(tmp_path: Path) -> None:
    ex = HandExecutor()
    s = _sensor(tmp_path, _nobody, ex)
    s.view.watch()
    s.loop.run(1)
    assert ex.submitted == 1 and s.view.latest is None and s.view.made == 0  # nothing made in the tick
    job = ex.job()
    assert job.pixels.any()  # the worker's own copy: the frame itself was zeroed at its release
    assert s.view.busy()
    ex.run_all()
    assert s.view.made == 1 and s.view.latest is not None and s.view.latest.seq == job.seq
    assert not job.pixels.any() and not s.view.busy()
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
    assert not job.pixels.any() and not s.view.busy()


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
    assert s.view.failed == 1 and s.view.latest is None and not job.pixels.any() and not s.view.busy()
    fail[0] = False
    s.view.watch()
    s.loop.run(s.loop.stats.ticks + 25)  # the next view is due 2 s later and the loop ran on
    assert ex.submitted == 2
    ex.run_all()
    assert s.view.made == 1 and s.view.failed == 1


def test_the_copy_is_zeroed_when_the_tick_cannot_hand_it_over(tmp_path: Path) -> None:
    copies: list[np.ndarray] = []

    class Refusing(Executor):
        def submit(self, fn, /, *args, **kwargs):  # noqa: ANN001, ANN201
            copies.append(args[0].pixels)
            raise RuntimeError("cannot schedule new futures after shutdown")

    s = _sensor(tmp_path, _nobody, Refusing())
    s.view.watch()
    s.loop.run(1)  # counted, not fatal
    assert len(copies) == 1 and not copies[0].any() and not s.view.busy() and s.view.failed == 1


def test_at_stop_a_job_not_started_is_dropped_and_zeroed(tmp_path: Path) -> None:
    ex = HandExecutor()
    s = _sensor(tmp_path, _nobody, ex)
    s.view.watch()
    s.loop.run(1)
    job, future = ex.job(), ex.jobs[-1][0]
    s.view.close()
    assert future.cancelled() and not job.pixels.any() and not s.view.busy()
    s.view.watch()
    s.loop.run(s.loop.stats.ticks + 40)
    assert ex.submitted == 1  # closed: no more views
    ex.run_all()
    assert s.view.made == 0 and s.view.latest is None


def test_at_stop_a_running_job_is_waited_for_and_zeroes_its_copy(tmp_path: Path, monkeypatch) -> None:
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
    assert s.view.busy() and jobs[0].pixels.any()
    s.view.close()
    assert release.is_set() and not s.view.busy()  # close() waited for it...
    assert not jobs[0].pixels.any() and s.view.made == 1  # ...and it ended, its copy zeroed
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
