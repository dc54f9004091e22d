"""The health check after a switch: within a deadline the new firmware must show that the loop ticks at its
rate, the camera and the detector answer, and the uploader reached the cloud. A check that fails or never
finishes rolls the slot back, with the reason recorded."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

Probe = Callable[[], bool]


@dataclass(frozen=True, slots=True)
class HealthResult:
    ok: bool
    reason: str
    elapsed_s: float


def check(probes: dict[str, Probe], deadline_s: float, *, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep, interval_s: float = 1.0) -> HealthResult:
    """Poll every probe until all have passed once, or the deadline. A probe that raises counts as failing."""
    t0 = clock()
    passed: set[str] = set()
    while True:
        for name, probe in probes.items():
            if name in passed:
                continue
            try:
                if probe():
                    passed.add(name)
            except Exception:  # a crashing probe is a failing one; the deadline decides
                pass
        if len(passed) == len(probes):
            return HealthResult(True, "all checks passed", clock() - t0)
        if clock() - t0 >= deadline_s:
            missing = sorted(set(probes) - passed)
            return HealthResult(False, f"not healthy within {deadline_s:.0f} s: {', '.join(missing)}", clock() - t0)
        sleep(interval_s)


def after_boot(boot, probes: dict[str, Probe], deadline_s: float, **kw) -> HealthResult:
    """Run at start-up on a slot on trial: commit it when healthy, roll back otherwise."""
    st = boot.state()
    result = check(probes, deadline_s, **kw)
    if st.get("trying"):
        if result.ok:
            boot.mark_good()
        else:
            boot.rollback(result.reason)
    return result
