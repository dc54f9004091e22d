"""The [flowgroups] section: customer-flow groups (off by default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from firmware.config.checks import number

DIM = 1024


@dataclass(frozen=True, slots=True)
class FlowGroupConfig:
    """`[flowgroups]`: customer-flow groups on the running sensor (off by default). When on, `umbra run`
    embeds a few crops of each confirmed track in a zone, and at each window's end releases one
    umbra.flowgroups/1 record per zone (to the outbox when sync is on, and to `[output] aggregates_file`
    when set: one of them is needed), audited as flowgroups_released. Needs zones in `[geometry]`. See
    firmware.flows.hook."""

    enabled: bool = False
    groups: int = 1000  # group ids 0 to groups - 1 (the hyperplane code modulo groups)
    hyperplanes: int = 10  # random hyperplanes of the hash (2**hyperplanes >= groups)
    dims: int = 4  # population basis size (docs/TUNING.md)
    noise: float = 0.1  # std of the noise per basis dimension (the projected vector has unit norm)
    min_count: int = 5  # fictitious members pad every released group to at least this
    decoy_ratio: float = 1.0  # decoy groups per real group, each of min_count fictitious members
    crops_per_track: int = 5  # embeddings averaged per track per window
    window_s: int = 900  # one record per zone per window (windows start at multiples of window_s)
    period_s: int = 86400  # hyperplanes re-drawn and the basis refitted every period
    crop_gap_s: float = 1.0  # a track's first crop when seen in a window, the next after this, each gap doubled
    max_embeds_per_tick: int = 1  # crops embedded per loop tick at most
    basis_min: int = 100  # crop embeddings needed before a population basis is fitted (nothing released before)
    tick_share: float = 0.8  # embed only while the tick so far plus one embedding (its recent cost) stays
    # within this share of the loop's period, on the loop's clock: embedding does not make the loop drop frames
    edgetpu: Literal["auto", "on", "off"] = "auto"  # the embedding model's Edge TPU twin when present
    threads: int = 2  # CPU threads of the embedding model

    def validate(self) -> None:
        if not 1 <= self.hyperplanes <= 24:  # before groups: 1 << 2**62 would exhaust memory
            raise ValueError("hyperplanes: 1 to 24")
        if not 2 <= self.groups <= 1 << self.hyperplanes:
            raise ValueError(f"groups: 2 to 2**hyperplanes ({1 << self.hyperplanes})")
        if not 1 <= self.dims <= DIM:
            raise ValueError(f"dims: 1 to {DIM}")
        number("noise", self.noise, 0, 10)
        if not 2 <= self.min_count <= 100:
            raise ValueError("min_count: 2 to 100")
        number("decoy_ratio", self.decoy_ratio, 0, 10)
        if not 1 <= self.crops_per_track <= 100:
            raise ValueError("crops_per_track: 1 to 100")
        if not 10 <= self.window_s <= 86400 or not 3600 <= self.period_s <= 7 * 86400:
            raise ValueError("window_s: 10 to 86400; period_s: 3600 to 604800")
        number("crop_gap_s", self.crop_gap_s, 0, 3600, lo_open=True, unit="s")
        number("tick_share", self.tick_share, 0, 1, lo_open=True)
        if not 1 <= self.max_embeds_per_tick <= 16:
            raise ValueError("max_embeds_per_tick: 1 to 16")
        if not self.dims + 2 <= self.basis_min <= 1_000_000:
            raise ValueError(f"basis_min: {self.dims + 2} (dims + 2) to 1000000")
        if self.edgetpu not in ("auto", "on", "off") or not 1 <= self.threads <= 8:
            raise ValueError('edgetpu: "auto", "on" or "off"; threads: 1 to 8')
