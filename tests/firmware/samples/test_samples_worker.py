"""The sample is made off the loop's tick: the hook only copies what it needs and hands it to the worker; the
worker de-identifies, gates, encodes and puts (or drops), and zeroes every buffer it held whatever happened;
one due while another is being made is skipped, counted and audited; an exception is a counted sample error;
shutdown waits for a running job within a bound, and nothing half-made reaches the outbox."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bench.sample_stall import DueOnce  # a scheduler with one slot, due from a given time
from firmware.cli.run import Sensor, close
from firmware.config.samples import SamplesConfig
from firmware.config.sensing import GeometryConfig, LoopConfig, QuantizeConfig, TrackerConfig
from firmware.config.sync import OutboxConfig
from firmware.privacy.audit import AuditLog, verify
from firmware.samples.hook import InlineRunner, SampleHook, SampleWorker, ThreadRunner
from firmware.samples.taking import SampleJob, SampleScheduler, SampleSlot, SampleTaker
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import SensorLoop
from firmware.sensing.pseudonym import Pseudonymizer
from firmware.sensing.quantize import Quantizer
from firmware.sensing.tracker import Tracker
from firmware.sync.outbox import Outbox
from hal.clock import FakeClock
from hal.detections import Detections
from hal.frame import Frame
from hal.synthetic import SyntheticCamera, SyntheticCrowd

HOUR = 1_700_002_800.0
BOX = np.array([[0.3, 0.2, 0.6, 0.9]], np.float32)


class DueAt(SampleScheduler):
    """A slot at each of `times`, once."""

    def __init__(self, *times: float) -> None:
        super().__init__(SamplesConfig(), random.Random(0))
        self.times = set(times)

    def due(self, now: float) -> SampleSlot | None:
        if now not in self.times:
            return None
        self.times.discard(now)
        return SampleSlot(now, None)


class ManualRunner:
    """Jobs run when the test says (`run`); `wait` finishes them only if `finish_on_wait`."""

    def __init__(self, finish_on_wait: bool = False) -> None:
        self.jobs: list[Callable[[], None]] = []
        self.finish_on_wait = finish_on_wait
        self.waited: list[float] = []

    def start(self, job: Callable[[], None]) -> None:
        self.jobs.append(job)

    def run(self) -> None:
        while self.jobs:
            self.jobs.pop(0)()

    def wait(self, timeout_s: float) -> bool:
        self.waited.append(timeout_s)
        if self.finish_on_wait:
            self.run()
        return not self.jobs


class Recording:
    """A face finder and a person finder that keep every image they were shown (the arrays themselves)."""

    def __init__(self, persons: Callable[[int], np.ndarray] | None = None) -> None:
        self.shown: list[np.ndarray] = []
        self._persons = persons

    def detect(self, rgb: np.ndarray) -> Detections:
        self.shown.append(rgb)
        return Detections.empty()

    def find(self, rgb: np.ndarray) -> np.ndarray:
        self.shown.append(rgb)
        return self._persons(len(self.shown)) if self._persons is not None else np.zeros((0, 4))


def _events(path: Path, event: str) -> list[dict]:
    return [e["fields"] for e in map(json.loads, path.read_text().splitlines()) if e["event"] == event]


def _main(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 255, (480, 640, 3), dtype=np.uint8)


def _frame(main: np.ndarray) -> Frame:
    return Frame(main, main, 0, 0, (640, 480))


def _wired(tmp_path: Path, runner, *times: float, finder: Recording | None = None):
    outbox = Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite")))
    audit = AuditLog(tmp_path / "audit.jsonl")
    rec = finder or Recording()
    taker = SampleTaker(SamplesConfig(), DueAt(*times), rec, lambda r: outbox.enqueue([r]), audit,
                        person_finder=rec.find)
    worker = SampleWorker(taker, audit, runner, shutdown_wait_s=3.0)
    return SampleHook(taker, outbox, audit, worker), outbox, rec


def _capture(worker: SampleWorker) -> list[SampleJob]:
    """Every job handed to the worker from now on."""
    submitted: list[SampleJob] = []
    submit = worker.submit
    worker.submit = lambda job: submitted.append(job) or submit(job)  # type: ignore[method-assign]
    return submitted


def _all_zero(arrays: list[np.ndarray]) -> bool:
    return bool(arrays) and all(not a.any() for a in arrays)


def test_the_hook_copies_hands_off_and_returns_without_running_the_gate(tmp_path: Path) -> None:
    runner = ManualRunner()
    hook, outbox, rec = _wired(tmp_path, runner, HOUR)
    main = _main()
    original = main.copy()
    hook(_frame(main), Detections(BOX, np.ones(1, np.float32), np.zeros(1, np.int32)), HOUR)
    assert rec.shown == [] and hook.worker.busy  # not a single model call in the tick
    job = hook.worker.running
    assert job is not None and not np.shares_memory(job.image, main)  # its own copy
    assert np.array_equal(main, original)  # the frame is left to the loop to zero
    main.fill(0)  # the loop zeroes its frame as the tick ends; the job does not care
    assert outbox.take_batch() is None
    runner.run()
    batch = outbox.take_batch()
    assert batch is not None and [json.loads(b)["schema"] for b in batch.bodies] == ["umbra.sample/1"]
    assert rec.shown and hook.worker.taken == 1 and not hook.worker.busy
    assert len(_events(tmp_path / "audit.jsonl", "sample_taken")) == 1


@pytest.mark.parametrize("outcome", ["sent", "dropped", "error"])
def test_every_buffer_the_worker_held_is_zeroed_after_the_job(tmp_path: Path, outcome: str) -> None:
    def persons(call: int) -> np.ndarray:
        if outcome == "error" and call >= 4:  # after the copy, the blurred image and some checks exist
            raise RuntimeError("the model fell over")
        return BOX if outcome == "dropped" else np.zeros((0, 4))

    runner = ManualRunner()
    hook, outbox, rec = _wired(tmp_path, runner, HOUR, finder=Recording(persons))
    hook(_frame(_main()), None, HOUR)
    job = hook.worker.running
    assert job is not None and job.image.any()
    runner.run()
    held = list(job.held)
    assert len(held) >= 2 and job.image is held[0]  # the copy and the blurred image, at least
    assert _all_zero(held)
    assert _all_zero(rec.shown)  # every image the gate was shown (the copy, each as-sent check)
    counts = (hook.worker.taken, hook.worker.dropped, hook.worker.errors)
    assert counts == {"sent": (1, 0, 0), "dropped": (0, 1, 0), "error": (0, 0, 1)}[outcome]
    assert (outbox.take_batch() is not None) == (outcome == "sent")


def test_a_dropped_sample_never_reaches_the_outbox(tmp_path: Path) -> None:
    hook, outbox, _ = _wired(tmp_path, InlineRunner(), HOUR, finder=Recording(lambda _: BOX))
    hook(_frame(_main()), None, HOUR)
    assert outbox.take_batch() is None
    dropped = _events(tmp_path / "audit.jsonl", "sample_dropped")
    assert [d["reason"] for d in dropped] == ["not-clean"] and hook.worker.dropped == 1
    assert not _events(tmp_path / "audit.jsonl", "sample_taken")


def test_a_sample_due_while_one_is_being_made_is_skipped_counted_and_audited(tmp_path: Path) -> None:
    runner = ManualRunner()
    hook, outbox, _ = _wired(tmp_path, runner, HOUR, HOUR + 1)
    hook(_frame(_main(1)), None, HOUR)
    first = hook.worker.running
    submitted = _capture(hook.worker)
    hook(_frame(_main(2)), None, HOUR + 1)
    assert hook.worker.skipped == 1 and len(runner.jobs) == 1 and hook.worker.running is first  # no queue
    assert _all_zero(submitted[0].held)  # the skipped copy is zeroed at once
    skipped = _events(tmp_path / "audit.jsonl", "sample_dropped")
    assert [s["reason"] for s in skipped] == ["worker-busy"]
    runner.run()
    batch = outbox.take_batch()
    assert batch is not None and len(batch.bodies) == 1
    assert json.loads(batch.bodies[0])["taken_at"] == int(HOUR)
    assert verify(tmp_path / "audit.jsonl").ok


def test_an_exception_in_the_worker_is_a_counted_sample_error_and_the_sensor_goes_on(tmp_path: Path) -> None:
    failed: list[int] = []

    def persons(call: int) -> np.ndarray:
        if not failed:  # the first sample's first person check
            failed.append(call)
            raise RuntimeError("the model fell over")
        return np.zeros((0, 4))

    hook, outbox, _ = _wired(tmp_path, InlineRunner(), HOUR, HOUR + 3600, finder=Recording(persons))
    hook(_frame(_main()), None, HOUR)  # does not raise
    assert hook.worker.errors == 1 and not hook.worker.busy and outbox.take_batch() is None
    assert [d["reason"] for d in _events(tmp_path / "audit.jsonl", "sample_dropped")] == ["error"]
    hook(_frame(_main()), None, HOUR + 3600)  # the next sample is made as usual
    assert hook.worker.taken == 1 and outbox.take_batch() is not None


def test_shutdown_waits_for_a_running_job_within_its_bound(tmp_path: Path) -> None:
    runner = ManualRunner(finish_on_wait=True)
    hook, outbox, _ = _wired(tmp_path, runner, HOUR, HOUR + 1)
    hook(_frame(_main()), None, HOUR)
    job = hook.worker.running
    assert job is not None
    assert hook.close() is True and runner.waited == [3.0]
    assert outbox.take_batch() is not None and _all_zero(job.held)
    hook(_frame(_main()), None, HOUR + 1)  # closed: no new job
    assert hook.worker.running is None and runner.jobs == []


@pytest.mark.parametrize("late", ["made", "fails"])
def test_shutdown_past_the_bound_zeroes_the_job_and_nothing_half_made_reaches_the_outbox(tmp_path: Path,
                                                                                         late: str) -> None:
    def persons(call: int) -> np.ndarray:
        if late == "fails":
            raise RuntimeError("the model fell over")
        return np.zeros((0, 4))

    runner = ManualRunner()  # the job is still running when the wait ends
    hook, outbox, rec = _wired(tmp_path, runner, HOUR, finder=Recording(persons))
    hook(_frame(_main()), None, HOUR)
    job = hook.worker.running
    assert job is not None
    assert hook.close() is False and runner.waited == [3.0] and hook.worker.abandoned == 1
    assert _all_zero(job.held)  # zeroed at once, under the running job
    runner.run()  # the thread finishes (or fails) after the sensor stopped
    assert outbox.take_batch() is None and hook.worker.taken == 0 and hook.worker.errors == (late == "fails")
    assert _all_zero(job.held) and _all_zero(rec.shown)
    assert [d["reason"] for d in _events(tmp_path / "audit.jsonl", "sample_dropped")] == ["shutdown"]
    assert not _events(tmp_path / "audit.jsonl", "sample_taken")


def test_on_a_thread_the_sample_is_made_and_shutdown_waits_for_it(tmp_path: Path) -> None:
    hook, outbox, _ = _wired(tmp_path, ThreadRunner(), HOUR)
    hook.worker.shutdown_wait_s = 120.0  # a bound, not a timing: the join returns as soon as the job ends
    submitted = _capture(hook.worker)
    hook(_frame(_main()), None, HOUR)
    assert hook.close() is True
    assert outbox.take_batch() is not None and len(submitted) == 1 and _all_zero(submitted[0].held)




def _loop_with(hook: SampleHook, clock: FakeClock, frames: int) -> SensorLoop:
    geo = Geometry(GeometryConfig())
    quant = Quantizer(QuantizeConfig(), geo, Pseudonymizer(3600, lambda n: bytes(range(n))))
    return SensorLoop(LoopConfig(detect_hz=10.0), SyntheticCamera(clock, frames=frames), SyntheticCrowd(3),
                      Tracker(TrackerConfig()), quant, clock, sinks=[lambda r: None], frame_hooks=[hook])


def _sampled_loop(tmp_path: Path, runner, persons: Callable[[int], np.ndarray] | None = None):
    clock = FakeClock()
    outbox = Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite")))
    audit = AuditLog(tmp_path / "audit.jsonl")
    rec = Recording(persons)
    samples = SamplesConfig()
    taker = SampleTaker(samples, DueOnce(samples, clock.wall() + 1.0), rec, lambda r: outbox.enqueue([r]), audit,
                        person_finder=rec.find)
    hook = SampleHook(taker, outbox, audit, SampleWorker(taker, audit, runner))
    return _loop_with(hook, clock, 30), hook, outbox, rec


def test_in_the_loop_the_tick_hands_the_sample_off_and_the_worker_makes_it(tmp_path: Path) -> None:
    runner = ManualRunner()
    loop, hook, outbox, rec = _sampled_loop(tmp_path, runner)
    submitted = _capture(hook.worker)
    assert loop.run().frames == 30
    assert len(submitted) == 1 and rec.shown == []  # handed over in a tick; no model ran in any tick
    assert submitted[0].image.any()  # its own copy: the loop zeroed its frame, not the job's
    runner.run()  # the worker's thread
    assert _all_zero(submitted[0].held) and _all_zero(rec.shown)
    assert hook.worker.taken == 1 and outbox.take_batch() is not None


def test_in_the_loop_a_failing_sample_is_counted_and_the_loop_goes_on(tmp_path: Path) -> None:
    def persons(call: int) -> np.ndarray:
        raise RuntimeError("the model fell over")

    loop, hook, outbox, _ = _sampled_loop(tmp_path, InlineRunner(), persons)  # inline: the worst case, in the tick
    submitted = _capture(hook.worker)
    assert loop.run().frames == 30  # every frame, after the failure too
    assert len(submitted) == 1 and hook.worker.errors == 1 and _all_zero(submitted[0].held)
    assert outbox.take_batch() is None


def test_the_sensor_stop_waits_for_the_sample_before_the_uploader_stops() -> None:
    order: list[str] = []

    class Part:
        def __init__(self, name: str) -> None:
            self.name = name

        def close(self) -> None:
            order.append(self.name)

        def stop(self) -> None:
            order.append(self.name)

    sensor = Sensor(None, Path("."), FakeClock(), samples=Part("samples"), sync=Part("sync"))  # type: ignore[arg-type]
    close(sensor)
    assert order == ["samples", "sync"]
