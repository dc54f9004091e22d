"""The other end of "numbers that are not numbers": a positive value so small it is zero to the arithmetic that
uses it (1 / emit_hz overflows, exp(-epsilon) rounds to 1). Each setting with an open lower end must refuse it by
name at load, as it refuses NaN; the runs behind these cases ended in a traceback (an OverflowError building
the loop, a ZeroDivisionError at the first release, a StopIteration for a beta of 1e-300)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.config import parse, to_toml
from firmware.errors import ConfigError

TINY = st.floats(min_value=5e-324, max_value=1e-10)  # subnormal up to one in ten billion

SETTINGS = [("loop", "emit_hz"), ("privacy", "epsilon"), ("privacy", "tree_epsilon"), ("demographics", "epsilon"),
            ("privacy", "beta"), ("demographics", "beta")]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(SETTINGS), TINY)
def test_a_vanishing_positive_value_is_refused_by_name(where: tuple[str, str], value: float) -> None:
    section, key = where
    with pytest.raises(ConfigError) as e:
        parse(to_toml({section: {key: value}}))
    assert key in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("section", "key", "value"), [("loop", "emit_hz", 0.01), ("privacy", "epsilon", 0.001),
                                                       ("privacy", "tree_epsilon", 0.001),
                                                       ("demographics", "epsilon", 0.001),
                                                       ("privacy", "beta", 1e-9), ("demographics", "beta", 1e-9)])
def test_small_but_real_values_still_pass(section: str, key: str, value: float) -> None:
    parse(to_toml({section: {key: value}}))
