"""Range checks for config values: one helper per kind of value, so every section states its bounds the same
way and a NaN, an infinity or an absurd value is refused with a message naming the key and the range."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from firmware.errors import ConfigError

Number = int | float


def number(key: str, value: Number, lo: Number, hi: Number, *, lo_open: bool = False,
           hi_open: bool = False, unit: str = "", zero: bool = False) -> None:
    """`value` is a finite number in [lo, hi] (an open end when asked); `zero`: 0 is allowed too (for
    settings where 0 means "derived" or "off")."""
    if zero and value == 0:
        return
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (lo < value if lo_open else lo <= value) and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ValueError(f"{key}: {value!r} is not allowed; use {describe(lo, hi, lo_open, hi_open, unit, zero)}")


def whole(key: str, value: int, lo: int, hi: int, *, unit: str = "", zero: bool = False) -> None:
    """`value` is a whole number in [lo, hi] (or 0 with `zero`)."""
    if zero and value == 0:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{key}: {value!r} is not allowed; use {describe(lo, hi, unit=unit, zero=zero, whole=True)}")


def divides(key: str, value: int, whole_of: int, *, unit: str = "") -> None:
    """`value` (already checked to be a positive whole number) divides `whole_of` exactly, so that steps of it
    tile a day, say."""
    if whole_of % value:
        raise ValueError(f"{key}: {value!r} is not allowed; use a divisor of {whole_of}{' ' + unit if unit else ''}")


def numbers(key: str, values: Iterable[Number], lo: Number, hi: Number, **kw: object) -> None:
    """Each item of `values` is a finite number in range (see `number`); the message names the item."""
    for i, v in enumerate(values):
        number(f"{key}[{i}]", v, lo, hi, **kw)  # type: ignore[arg-type]


def flag(check: Callable[..., None], key: str, value: Number, *args: Number, **kw: object) -> None:
    """A command-line flag checked like a config key (`check` is `number` or `whole`): a ConfigError, which
    `umbra` prints as one line, instead of the ValueError."""
    try:
        check(key, value, *args, **kw)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def describe(lo: Number, hi: Number, lo_open: bool = False, hi_open: bool = False, unit: str = "",
             zero: bool = False, whole: bool = False) -> str:
    kind = "a whole number" if whole else "a finite number"
    low = f"above {lo:g}" if lo_open else f"from {lo:g}"
    high = f"below {hi:g}" if hi_open else (f"to {hi:g}" if not lo_open else f"and at most {hi:g}")
    text = f"{kind} {low} {high}{' ' + unit if unit else ''}"
    return f"0 or {text}" if zero else text
