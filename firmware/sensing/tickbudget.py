"""Room in a tick for optional per-track work (flow-group embeddings, demographic estimates).

Work is started only while the time already used since the frame's capture plus the work's recent cost stays
within the budget (a share of the loop's period). The cost is a moving average of measured runs. An estimate
that is never refreshed would stand for good: one slow run (a model's cold first call, a moment of load)
larger than the budget would block the work for the rest of the process. So an estimate older than
`STALE_S` of monotonic time is forgotten and the next due item is tried once, at most one possible overrun a
`STALE_S`, and its measurement starts the average afresh."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hal.clock import Clock

STALE_S = 30.0


class TickBudget:
    """`room(frame_t_mono_ns)` before a unit of work; `with measure():` around it. With no clock or no budget
    there is always room."""

    def __init__(self, clock: Clock | None, budget_ns: int, stale_s: float = STALE_S) -> None:
        self._clock, self.budget_ns = clock, budget_ns
        self._stale_ns = int(stale_s * 1e9)
        self.cost_ns = 0.0  # recent wall time of one unit (moving average); 0: unknown
        self._measured_ns = 0  # monotonic time of the last measurement
        self.probes = 0  # units tried on a forgotten (stale) estimate

    def room(self, frame_t_mono_ns: int) -> bool:
        if self._clock is None or self.budget_ns <= 0:
            return True
        now = self._clock.monotonic_ns()
        if self.cost_ns and now - self._measured_ns > self._stale_ns:
            self.cost_ns = 0.0  # stale: try once and measure again
            self.probes += 1
        return now - frame_t_mono_ns + self.cost_ns <= self.budget_ns

    @contextmanager
    def measure(self) -> Iterator[None]:
        if self._clock is None:
            yield
            return
        t0 = self._clock.monotonic_ns()
        try:
            yield
        finally:
            self._measured_ns = self._clock.monotonic_ns()
            took = self._measured_ns - t0
            self.cost_ns = 0.7 * self.cost_ns + 0.3 * took if self.cost_ns else float(took)
