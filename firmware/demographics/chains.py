"""The demographics' chains: which contribution slot each track of the open window belongs to. Pure: no clock, no
I/O; the caller gives the tick's monotonic time.

A track seen for the first time in the window takes over the slot of the nearest track that ended near where it
is born, by the line counter's join rule (`[geometry] count_join_s`, `firmware.sensing.geometry.join_pairs`: last
seen within the join time, no further than JOIN_M plus a walker's top speed for the time between); any other
track opens a new slot. A slot is a number, no track id or pseudonym, and all of it is dropped at `clear()` (the
window's close). The device cannot tell people apart beyond this rule (no appearance is kept), so one person may
form several chains in a window; the release bounds that by `[demographics] max_chains_per_person`
(`firmware.demographics.release`). The same class serves `bench.demographics_chains`, which measures how many
chains one ground-truth person forms."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from firmware.sensing.geometry import join_pairs


class Chains:
    """`slots(ids, ground, now_ns)`: the slot of each track of the tick (ids, their ground points (N, 2))."""

    def __init__(self, join_s: float) -> None:
        self._join_ns = int(join_s * 1e9)
        self._slot: dict[int, int] = {}  # track id -> its slot in the open window
        self._slots = 0
        # the tracks seen within the join time that no newborn has taken: last seen (monotonic ns), ground point
        self._last: dict[int, tuple[int, np.ndarray]] = {}

    def slots(self, ids: Sequence[int], ground: np.ndarray, now_ns: int) -> list[int]:
        """Each track's slot: a track new in the window takes over the slot of the track the join rule joins it
        to (ended, near where it is born), or opens a new one. The join state is kept only as long as needed:
        a track unseen for longer than the join time is no longer joinable and its point is dropped."""
        for tid in [tid for tid, (seen, _) in self._last.items() if now_ns - seen > self._join_ns]:
            del self._last[tid]
        ids = [int(t) for t in ids]
        born = [j for j, tid in enumerate(ids) if tid not in self._slot]
        if born:
            seen_now = set(ids)
            ended = [tid for tid in self._last if tid not in seen_now]
            if ended and self._join_ns > 0:
                gap_s = np.array([(now_ns - self._last[tid][0]) / 1e9 for tid in ended])
                at = np.array([self._last[tid][1] for tid in ended]).reshape(-1, 2)
                for j, m in join_pairs(ground[born], at, gap_s):
                    self._slot[ids[born[j]]] = self._slot[ended[m]]
                    del self._last[ended[m]]  # taken: no second newborn joins it
            for j in born:
                if ids[j] not in self._slot:
                    self._slots += 1
                    self._slot[ids[j]] = self._slots
        if self._join_ns > 0:
            for j, tid in enumerate(ids):
                self._last[tid] = (now_ns, ground[j].copy())
        return [self._slot[tid] for tid in ids]

    def slot(self, track_id: int) -> int:
        return self._slot[int(track_id)]

    def clear(self) -> None:
        self._slot.clear()
        self._last.clear()
        self._slots = 0

    def held(self) -> int:
        return max(len(self._slot), len(self._last))
