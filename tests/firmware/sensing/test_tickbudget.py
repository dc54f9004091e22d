"""The tick budget of optional work (flow-group embeddings, demographic estimates)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware.sensing.tickbudget import STALE_S, TickBudget
from hal.clock import FakeClock


@given(st.lists(st.floats(0.0, 0.3), min_size=1, max_size=40), st.floats(0.0, 0.1))
def test_room_is_used_time_plus_recent_cost_within_the_budget_until_the_cost_is_stale(costs, used):
    clock = FakeClock()
    budget = TickBudget(clock, int(0.08e9))
    for c in costs:
        with budget.measure():
            clock.advance(c)
    cost = budget.cost_ns
    start = clock.monotonic_ns()
    clock.advance(used)
    assert budget.room(start) == ((clock.monotonic_ns() - start) + cost <= budget.budget_ns)
    clock.advance(STALE_S + 1)
    now = clock.monotonic_ns()
    assert budget.room(now)  # a stale estimate is forgotten: tried again
    assert budget.probes == (1 if cost else 0)


def test_no_clock_or_no_budget_always_has_room():
    assert TickBudget(None, 10).room(0)
    assert TickBudget(FakeClock(), 0).room(0)
