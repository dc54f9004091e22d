"""Records that leave the device. Each is a frozen value with a versioned JSON form; the JSON schemas live
in `firmware/schemas/` and both the device and the reference cloud validate against them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

SIZE_CLASSES = ("S", "M", "L")  # bucketed apparent height: child-sized / adult / large (groups, carts)
HEADING_SECTORS = 8  # 0 = +x (east on the ground plane), counter-clockwise, 45 degrees each
TRACK_SCHEMAS = ("umbra.track/1", "umbra.track/2")  # every version of the track record a reader may meet


@dataclass(frozen=True, slots=True)
class QuantizedTrack:
    """One track at one emit tick, or (as released, quantize.merge_bucket) one pseudonym over one time bucket,
    with nothing finer than the configured quantization.

    pseudonym: 16 hex chars, HMAC-SHA256(key, track id) truncated; the key rotates and lives in memory only.
    epoch: index of the pseudonym key period (pseudonyms link only within one epoch).
    t: wall time in whole seconds, floored to a multiple of the time bucket.
    cell: ground-plane grid cell (ix, iy) = floor(x / grid_m), floor(y / grid_m).
    grid_m: the grid pitch in metres.
    size: one of SIZE_CLASSES.
    heading: 0..7 sector of the direction of motion, or None when not moving.
    zone: name of the configured zone the track stands in, or None.
    cls: object class ("person").
    crossings: the count-line crossings the device's line counter (geometry.LineCounter) confirmed for this
      track in this bucket, as (line, direction, count) sorted by line and direction: how many times, which
      line, which way, never in what order or when within the bucket; () when it crossed none (or there are
      no lines). Since umbra.track/2; umbra.track/1 records have none.
    """

    SCHEMA: ClassVar[str] = "umbra.track/2"

    pseudonym: str
    epoch: int
    t: int
    cell: tuple[int, int]
    grid_m: float
    size: str
    heading: int | None
    zone: str | None
    cls: str = "person"
    crossings: tuple[tuple[str, str, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "pseudonym": self.pseudonym,
            "epoch": self.epoch,
            "t": self.t,
            "cell": [self.cell[0], self.cell[1]],
            "grid_m": self.grid_m,
            "size": self.size,
            "heading": self.heading,
            "zone": self.zone,
            "cls": self.cls,
            "crossings": [[line, direction, n] for line, direction, n in self.crossings],
        }
