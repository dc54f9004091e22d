"""The histogram's cells: six age bands (the Individ scheme's 10-year bands, children and 58+ at the ends)
by the gender model's two classes."""

from __future__ import annotations

BANDS = ("0-17", "18-27", "28-37", "38-47", "48-57", "58+")
BAND_LOWS = (0, 18, 28, 38, 48, 58)
GENDERS = ("female", "male")
CELLS = len(BANDS) * len(GENDERS)


def band_of(age: float) -> int:
    """The band index of an age in years (an expected age of 17.6 is still 0-17)."""
    band = 0
    for i, low in enumerate(BAND_LOWS):
        if age >= low:
            band = i
    return band


def band_index(label: str) -> int:
    try:
        return BANDS.index(label)
    except ValueError:
        raise ValueError(f"age band {label!r} is not one of {', '.join(BANDS)}") from None


def gender_of(p_male: float) -> int:
    """0 (female) or 1 (male): the gender model's more probable class (ties: female, as the package does)."""
    return 1 if p_male > 0.5 else 0
