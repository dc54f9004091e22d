"""The loop's frame hook for samples, and the worker that makes them off the tick.

In the tick, at a due instant, the hook only copies what the sample needs (`SampleTaker.due`: the main image
fitted into 640x480 and this tick's person boxes) and hands the job to the `SampleWorker`; the loop then
zeroes its frame as always. The worker de-identifies, runs the gate (seconds of CPU) and encodes on its own
thread, puts the record into the outbox (or drops and audits it), and zeroes every buffer the job held in a
`finally`, whatever happened. At most one job: one due while another is still being made is skipped, counted
and audited (`sample_dropped`, reason `worker-busy`), never queued. An exception in a job is a counted,
logged sample error (audited `sample_dropped`, reason `error`); the sensor goes on.

Threads: the audit log (`AuditLog`, a lock and an flock) and the outbox (`Outbox`, one connection and a
lock) are safe to call from the worker thread, so the worker audits and puts itself. Its own lock orders the
release against shutdown: `close()` waits for a running job up to `shutdown_wait_s`; a job still running then
is cancelled (under the lock, so never between its audit entry and its put), its buffers zeroed, and whatever
it makes afterwards is discarded: nothing half-made reaches the outbox.

The `JobRunner` is injectable: `ThreadRunner` (one daemon thread per job, so at most one thread) on the
sensor (at nice 10, so the loop's thread keeps the CPU first), `InlineRunner` (the job runs within `start`) or
a hand-driven runner in tests.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Protocol

import numpy as np

from firmware.privacy.audit import AuditSink, audited
from firmware.samples.taking import SampleJob, SampleStore, SampleTaker, purge_expired
from hal.detections import Detections
from hal.frame import Frame

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_S = 10.0  # how long the sensor's stop waits for a sample being made (the gate takes seconds)


class JobRunner(Protocol):
    """Runs one job somewhere. `start(job)` returns at once (or after running it, inline); `wait(timeout_s)` is
    True once no job it started is still running, waiting at most `timeout_s`."""

    def start(self, job: Callable[[], None]) -> None: ...

    def wait(self, timeout_s: float) -> bool: ...


class ThreadRunner:
    """Each job on its own daemon thread (the worker starts one only when none is running), at `nice` (Linux:
    niceness is per thread) so the loop's thread keeps the CPU it needs while a sample is made."""

    def __init__(self, nice: int = 10) -> None:
        self.nice = nice
        self._thread: threading.Thread | None = None

    def start(self, job: Callable[[], None]) -> None:
        def body() -> None:
            if self.nice and sys.platform.startswith("linux"):
                try:
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
                except OSError as e:
                    log.info("sample worker: niceness not set: %s", e)
            job()

        self._thread = threading.Thread(target=body, name="umbra-sample", daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float) -> bool:
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class InlineRunner:
    """Runs the job within `start`: synchronous, for tests and tools (the tick pays for the gate again)."""

    def start(self, job: Callable[[], None]) -> None:
        job()

    def wait(self, timeout_s: float) -> bool:
        return True


class SampleWorker:
    """Makes one sample at a time off the tick (see the module docstring). Counters: `taken` (put),
    `dropped` (not clean), `skipped` (due while busy), `errors` (an exception), `abandoned` (still running
    at shutdown)."""

    def __init__(self, taker: SampleTaker, audit: AuditSink, runner: JobRunner | None = None,
                 shutdown_wait_s: float = SHUTDOWN_WAIT_S) -> None:
        self.taker, self.audit = taker, audit
        self.runner: JobRunner = runner if runner is not None else ThreadRunner()
        self.shutdown_wait_s = shutdown_wait_s
        self._lock = threading.Lock()
        self._job: SampleJob | None = None
        self._cancelled: SampleJob | None = None  # the job abandoned at shutdown
        self._closed = False
        self.taken = self.dropped = self.skipped = self.errors = self.abandoned = 0

    @property
    def busy(self) -> bool:
        return self._job is not None

    @property
    def running(self) -> SampleJob | None:
        """The job being made, if any."""
        return self._job

    def submit(self, job: SampleJob) -> bool:
        """Hands `job` to the worker (it owns it from here: its buffers are zeroed by the worker). False when
        the worker is busy or closed: the job is zeroed at once and, when busy, counted and audited."""
        with self._lock:
            refused = "closed" if self._closed else "worker-busy" if self._job is not None else None
            if refused is None:
                self._job = job
        if refused is not None:
            job.zero()
            if refused == "worker-busy":
                self.skipped += 1
                log.warning("sample: due while the last one is still being made; skipped")
                audited(self.audit, "sample_dropped", job.taken_at, reason="worker-busy",
                        authorization=job.grant.token_id if job.grant else None)
            return False
        try:
            self.runner.start(functools.partial(self._run, job))
        except Exception:  # noqa: BLE001 - a thread that cannot start is a sample error, not a stop
            self._fail(job)
            self._done(job)
            return False
        return True

    def _run(self, job: SampleJob) -> None:
        try:
            made = self.taker.make(job)
            if made is None:
                self.dropped += 1
                return
            with self._lock:  # against close(): a job is released whole or not at all
                if self._cancelled is job:
                    return
                if self.taker.release(made) is not None:
                    self.taken += 1
        except Exception:  # noqa: BLE001 - whatever the models or the encoder raise: the sensor goes on
            self._fail(job)
        finally:
            job.zero()
            self._done(job)

    def _fail(self, job: SampleJob) -> None:
        self.errors += 1
        log.exception("sample: making the sample failed; none taken")
        if self._cancelled is job:  # abandoned at shutdown: already audited as such
            return
        audited(self.audit, "sample_dropped", job.taken_at, reason="error",
                authorization=job.grant.token_id if job.grant else None)

    def _done(self, job: SampleJob) -> None:
        with self._lock:
            if self._job is job:
                self._job = None
            if self._cancelled is job:
                self._cancelled = None

    def close(self) -> bool:
        """Takes no more jobs and waits up to `shutdown_wait_s` for a running one; a job still running then
        is cancelled (what it makes is discarded) and its buffers zeroed. True when none was left running."""
        with self._lock:
            self._closed = True
            running = self._job
        if running is None:
            return True
        self.runner.wait(self.shutdown_wait_s)
        with self._lock:
            if self._job is not running:
                return True
            self._cancelled = running
            running.zero()  # the worker zeroes again what it allocates after this, in its finally
            self.abandoned += 1
        log.warning("sample: still being made at shutdown after %.1f s; discarded", self.shutdown_wait_s)
        audited(self.audit, "sample_dropped", running.taken_at, reason="shutdown",
                authorization=running.grant.token_id if running.grant else None)
        return False


class SampleHook:
    """The loop's frame hook for samples: at a sample's scheduled instant, copies the frame's main image and
    its person boxes (`SampleTaker.due`) and hands them to the worker, which makes the sample off the tick;
    the frame is left as it was (the loop zeroes it). Once a day it applies the retention rule to the
    store. `close()` (the sensor stopping) waits for a sample being made, within a bound."""

    def __init__(self, taker: SampleTaker, store: SampleStore, audit: AuditSink,
                 worker: SampleWorker | None = None) -> None:
        self.taker, self.store, self.audit = taker, store, audit
        self.worker = worker if worker is not None else SampleWorker(taker, audit)
        self._purged_day: int | None = None

    def __call__(self, frame: Frame, detections: Detections | None, wall: float) -> None:
        day = int(wall // 86400)
        if day != self._purged_day:
            self._purged_day = day
            purge_expired(self.store, wall, self.taker.config.retention_days, self.audit)
        boxes = detections.persons().boxes if detections is not None else np.zeros((0, 4))
        job = self.taker.due(frame.main, boxes, wall, frame.source_size)
        if job is not None:
            self.worker.submit(job)

    def close(self) -> bool:
        return self.worker.close()
