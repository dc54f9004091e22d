"""Customer-flow groups (the scheme Individ publishes for retail flows).

For each tracked person in a window: the 1,024-value MobileNet appearance embedding of a few crops
(`hal.embedder`), averaged per track, L2-normalized, projected onto a population basis (centre + the top
`dims` principal directions of recent embeddings, whitened; fitted on the device from unlabelled crops, so no
identity is involved), Gaussian noise added, then hashed by `hyperplanes` random hyperplanes (seeded per
device and per period, so groups of different devices or days cannot be joined) into one of `groups` groups
(the hyperplane code modulo `groups`). Only per-zone, per-window group occurrence counts leave the device:
every group released is padded with fictitious members up to `min_count`, and decoy groups made only of
fictitious members are added, so no released group is ever small and the presence of a group says little.

Why a projection: hyperplanes on the raw (all-positive) embedding put everyone in a few groups, and on the
centred full embedding the same person rarely lands in the same group twice; a small population basis keeps
the same person together far more often than two different people (figures: docs/TUNING.md).

The cloud estimates zone-to-zone flow from groups present in zone a in one window and zone b in the next,
minus what chance explains, scaled by the scheme's same-group rate (`estimate_transitions`).

On the running sensor (`firmware.flows.hook`) the basis comes from `PopulationStats`: the running mean and
top principal directions of a period's crop embeddings (no embedding is kept, no identity involved), and the
hyperplanes from a key drawn per period from the injected generator.

Pure: randomness (noise, decoys) comes from an injected numpy Generator; no clock, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware import schemas
from firmware.config.flows import DIM, FlowGroupConfig

SCHEMA = "umbra.flowgroups/1"

RECORD_SCHEMA = schemas.schema("umbra.flowgroups/1")


@dataclass(frozen=True, slots=True)
class Basis:
    """Population statistics of unit embeddings: `center` (1024,), `projection` (1024, dims), whitened."""

    center: np.ndarray
    projection: np.ndarray

    def apply(self, embeddings: np.ndarray) -> np.ndarray:
        u = _unit(np.asarray(embeddings, np.float64).reshape(-1, DIM))
        return _unit((u - self.center) @ self.projection)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_basis(embeddings: np.ndarray, dims: int) -> Basis:
    """PCA of unlabelled unit embeddings (e.g. the previous period's crops): centre and the top `dims`
    directions, each scaled to unit variance."""
    u = _unit(np.asarray(embeddings, np.float64).reshape(-1, DIM))
    if len(u) < dims + 1:
        raise ValueError(f"fit_basis needs more than {dims} embeddings, got {len(u)}")
    center = u.mean(axis=0)
    _, s, vt = np.linalg.svd(u - center, full_matrices=False)
    std = s[:dims] / np.sqrt(len(u) - 1)
    return Basis(center, vt[:dims].T / np.maximum(std, 1e-12))


class PopulationStats:
    """A period's population of unit embeddings, kept as what `fit_basis` needs and nothing more: the count,
    the mean and the top `rank` principal directions with their singular values, updated a few embeddings
    at a time by incremental SVD (Ross et al., IJCV 2008; scikit-learn's IncrementalPCA). Rows are buffered
    in groups of `BATCH`, folded in and zeroed, so no embedding is kept, nor any identity or order; ~300 kB
    in all. Exact (as `fit_basis`, up to each direction's sign) while the population's rank is at most
    `rank`; beyond it the top few directions stay close (tested)."""

    BATCH = 16

    def __init__(self, rank: int = 32) -> None:
        self.rank = rank
        self.n = 0
        self._mean = np.zeros(DIM, np.float64)
        self._sv = np.zeros(0, np.float64)  # singular values, largest first
        self._dirs = np.zeros((0, DIM), np.float64)  # principal directions, one per row
        self._batch = np.zeros((self.BATCH, DIM), np.float64)
        self._k = 0

    def add(self, embedding: np.ndarray) -> None:
        self._batch[self._k] = _unit(np.asarray(embedding, np.float64).reshape(1, DIM))[0]
        self._k += 1
        if self._k == self.BATCH:
            self._fold()

    def _fold(self) -> None:
        if not self._k:
            return
        x, b, n = self._batch[: self._k], self._k, self.n
        mean_b = x.mean(axis=0)
        parts = [self._sv[:, None] * self._dirs, x - mean_b]
        if n:  # the shift between the old mean and the batch's, weighted as the pooled scatter needs
            parts.append(np.sqrt(n * b / (n + b)) * (self._mean - mean_b)[None])
        _, sv, vt = np.linalg.svd(np.vstack(parts), full_matrices=False)
        self._sv, self._dirs = sv[: self.rank], vt[: self.rank]
        self._mean = (n * self._mean + b * mean_b) / (n + b)
        self.n = n + b
        x.fill(0.0)
        self._k = 0

    def count(self) -> int:
        return self.n + self._k

    def basis(self, dims: int) -> Basis:
        """The population basis of everything added. Raises ValueError with too few embeddings."""
        self._fold()
        if self.n < dims + 2 or len(self._sv) < dims:
            raise ValueError(f"a basis needs at least {dims + 2} embeddings, got {self.n}")
        std = self._sv[:dims] / np.sqrt(self.n - 1)
        return Basis(self._mean.copy(), self._dirs[:dims].T / np.maximum(std, 1e-12))

    def clear(self) -> None:
        self.n, self._k = 0, 0
        self._mean.fill(0.0)
        self._batch.fill(0.0)
        self._sv, self._dirs = np.zeros(0, np.float64), np.zeros((0, DIM), np.float64)


class FlowHasher:
    """Embeddings -> groups with the period's hyperplanes, seeded from `device_key` and the period (on the
    running sensor the key is drawn for each period from the injected generator, never stored)."""

    def __init__(self, config: FlowGroupConfig, basis: Basis, device_key: bytes, period: int) -> None:
        config.validate()
        self.config, self.basis, self.period = config, basis, period
        seed = int.from_bytes(hashlib.sha256(device_key + b"|flowgroups|" + str(period).encode()).digest()[:8], "big")
        self._planes = np.random.default_rng(seed).standard_normal((config.hyperplanes, basis.projection.shape[1]))
        self._weights = 1 << np.arange(config.hyperplanes, dtype=np.int64)

    def groups(self, embeddings: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        z = self.basis.apply(embeddings)
        z = z + self.config.noise * rng.standard_normal(z.shape)
        bits = (z @ self._planes.T > 0).astype(np.int64)
        return (bits @ self._weights) % self.config.groups


@dataclass(frozen=True, slots=True)
class FlowGroupRecord:
    window_start: int
    window_s: int
    zone: str
    min_count: int
    counts: tuple[tuple[int, int], ...]  # (group, count), sorted by group

    def to_json(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "window_start": self.window_start, "window_s": self.window_s,
                "zone": self.zone, "min_count": self.min_count, "groups": [list(c) for c in self.counts]}


@dataclass(slots=True)
class _TrackAcc:
    total: np.ndarray
    n: int = 0
    zones: dict[str, int] = field(default_factory=dict)


class FlowGroupWindow:
    """Collects one window: `add(track_id, zone, embedding)` per sampled crop (at most `crops_per_track`
    kept per track); `close(...)` hashes each track once (zone = where it was seen most) and releases the
    padded counts. Embedding sums are zeroed on close."""

    def __init__(self, config: FlowGroupConfig, window_start: int) -> None:
        self.config, self.window_start = config, window_start
        self._tracks: dict[int, _TrackAcc] = {}

    def wants(self, track_id: int) -> bool:
        acc = self._tracks.get(track_id)
        return acc is None or acc.n < self.config.crops_per_track

    def add(self, track_id: int, zone: str | None, embedding: np.ndarray) -> None:
        if zone is None:
            return
        self.seen(track_id, zone)
        self.add_embedding(track_id, embedding)

    def seen(self, track_id: int, zone: str) -> None:
        """One sighting of the track in `zone` (its released zone is where it was seen most)."""
        acc = self._tracks.setdefault(track_id, _TrackAcc(np.zeros(DIM, np.float64)))
        acc.zones[zone] = acc.zones.get(zone, 0) + 1

    def add_embedding(self, track_id: int, embedding: np.ndarray) -> None:
        acc = self._tracks.setdefault(track_id, _TrackAcc(np.zeros(DIM, np.float64)))
        if acc.n < self.config.crops_per_track:
            acc.total += _unit(np.asarray(embedding, np.float64).reshape(1, DIM))[0]
            acc.n += 1

    def held(self) -> int:
        """Tracks held in memory (for tests and the audit: nothing is held after `close` or `discard`)."""
        return len(self._tracks)

    def discard(self) -> None:
        """Drops the window unreleased (embedding sums zeroed)."""
        for acc in self._tracks.values():
            acc.total.fill(0.0)
        self._tracks.clear()

    def close(self, hasher: FlowHasher, rng: np.random.Generator,
              zones: Iterable[str] = ()) -> list[FlowGroupRecord]:
        """Records for every zone seen (and every zone in `zones`, so an empty zone still gets decoys)."""
        real: dict[str, dict[int, int]] = {z: {} for z in zones}
        tracks = [(acc.total / acc.n, max(acc.zones, key=acc.zones.__getitem__))
                  for acc in self._tracks.values() if acc.n and acc.zones]
        if tracks:
            means = np.stack([t[0] for t in tracks])
            groups = hasher.groups(means, rng)
            means.fill(0.0)
            for (mean, zone), g in zip(tracks, groups, strict=True):
                mean.fill(0.0)
                real.setdefault(zone, {})[int(g)] = real.get(zone, {}).get(int(g), 0) + 1
        self.discard()
        return [self._release(zone, counts, rng) for zone, counts in sorted(real.items())]

    def _release(self, zone: str, counts: Mapping[int, int], rng: np.random.Generator) -> FlowGroupRecord:
        cfg = self.config
        out = {g: max(c, cfg.min_count) for g, c in counts.items()}
        n_decoys = int(rng.poisson(cfg.decoy_ratio * max(len(counts), 1)))
        free = np.setdiff1d(np.arange(cfg.groups), np.fromiter(out, np.int64, len(out)))
        for g in rng.choice(free, size=min(n_decoys, len(free)), replace=False):
            out[int(g)] = cfg.min_count
        return FlowGroupRecord(self.window_start, cfg.window_s, zone, cfg.min_count, tuple(sorted(out.items())))


def effective_groups(released: Iterable[Iterable[int]]) -> float:
    """Cloud side: 1 / sum(p_g^2) over the historical presence frequencies p_g of groups in releases; the
    number of equally likely groups that would collide by chance as often as the real, uneven ones do."""
    counts: dict[int, int] = {}
    for rel in released:
        for g in rel:
            counts[g] = counts.get(g, 0) + 1
    p = np.array(list(counts.values()), np.float64)
    return float(1.0 / np.sum((p / p.sum()) ** 2)) if len(p) else 1.0


def estimate_transitions(released_a: Iterable[int], released_b: Iterable[int], effective: float,
                         p_same: float) -> float:
    """Cloud side: how many people moved from (zone a, window t) to (zone b, window t+1), from the groups
    present in both releases. Chance overlap of sets of sizes |A|, |B| is about |A||B|/effective; the rest,
    divided by the scheme's same-group rate `p_same` (minus chance), estimates the people seen in both.
    Never negative. Raises ValueError when p_same is not above chance (1 / effective)."""
    if p_same <= 1.0 / effective:
        raise ValueError(f"p_same {p_same} must exceed the chance rate 1/{effective:.0f}")
    a, b = set(released_a), set(released_b)
    chance = len(a) * len(b) / effective
    return max(0.0, (len(a & b) - chance) / (p_same - 1.0 / effective))
