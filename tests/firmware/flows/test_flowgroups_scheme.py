"""Customer-flow groups: hashing, per-period seeding, padded releases with decoys, the cloud estimator,
and the real MobileNet embedder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from firmware.config.flows import FlowGroupConfig
from firmware.flows.groups import FlowGroupWindow, FlowHasher, effective_groups, estimate_transitions, fit_basis
from hal.embedder import DIM, Embedder


def _population(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.abs(rng.standard_normal((n, DIM)) + 2.0)


@pytest.fixture(scope="module")
def basis():
    return fit_basis(_population(), 4)


def test_groups_are_in_range_deterministic_and_period_keyed(basis) -> None:
    cfg = FlowGroupConfig(noise=0.0)
    e = _population(200, seed=1)
    g1 = FlowHasher(cfg, basis, b"dev-key", 7).groups(e, np.random.default_rng(0))
    g2 = FlowHasher(cfg, basis, b"dev-key", 7).groups(e, np.random.default_rng(99))
    g3 = FlowHasher(cfg, basis, b"dev-key", 8).groups(e, np.random.default_rng(0))
    g4 = FlowHasher(cfg, basis, b"other-device", 7).groups(e, np.random.default_rng(0))
    assert g1.min() >= 0 and g1.max() < 1000 and len(np.unique(g1)) > 8
    assert np.array_equal(g1, g2)  # no noise: the same embedding, the same group
    assert np.mean(g1 == g3) < 0.5 and np.mean(g1 == g4) < 0.5  # new period / device: new hyperplanes


def test_noise_makes_membership_uncertain(basis) -> None:
    e = np.repeat(_population(1, seed=2), 500, axis=0)
    quiet = FlowHasher(FlowGroupConfig(noise=0.0), basis, b"k", 0).groups(e, np.random.default_rng(0))
    noisy = FlowHasher(FlowGroupConfig(noise=0.5), basis, b"k", 0).groups(e, np.random.default_rng(0))
    assert len(np.unique(quiet)) == 1
    assert 0.05 < np.mean(noisy == quiet[0]) < 0.95


def test_release_pads_every_group_and_adds_decoys(basis) -> None:
    cfg = FlowGroupConfig(min_count=5, decoy_ratio=1.0, noise=0.0)
    hasher = FlowHasher(cfg, basis, b"k", 0)
    win = FlowGroupWindow(cfg, 1000)
    people = _population(12, seed=3)
    for tid, emb in enumerate(people):
        for _ in range(8):
            if win.wants(tid):
                win.add(tid, "entrance" if tid < 6 else "till", emb)
    assert not win.wants(0)
    records = win.close(hasher, np.random.default_rng(4), zones=("entrance", "till", "empty"))
    by_zone = {r.zone: r for r in records}
    assert set(by_zone) == {"entrance", "till", "empty"}
    real = set(hasher.groups(people[:6], np.random.default_rng(0)).tolist())
    entrance = dict(by_zone["entrance"].counts)
    assert real <= set(entrance)
    assert all(c >= 5 for r in records for _, c in r.counts)  # no group is ever small
    assert sum(len(r.counts) for r in records) > len(real)  # decoys were added
    js = by_zone["till"].to_json()
    assert js["schema"] == "umbra.flowgroups/1" and js["min_count"] == 5 and js["window_start"] == 1000


def test_cloud_estimator_recovers_transitions_in_expectation() -> None:
    rng = np.random.default_rng(8)
    ests = []
    for _ in range(300):
        a = rng.choice(1000, 20, replace=False)  # 20 people in zone a; 6 of them move to zone b
        stay_same = rng.random(6) < 0.5  # the same group half the time
        b_groups = np.concatenate([np.where(stay_same, a[:6], rng.integers(0, 1000, 6)), rng.integers(0, 1000, 14)])
        ests.append(estimate_transitions(a, b_groups, 1000, 0.5))
    assert np.mean(ests) == pytest.approx(6.0, rel=0.15)
    with pytest.raises(ValueError, match="chance"):
        estimate_transitions([1], [1], 100, 0.01)
    assert effective_groups([[1, 2], [1, 3]]) == pytest.approx(1 / (0.5**2 + 0.25**2 + 0.25**2))


def test_config_validation() -> None:
    FlowGroupConfig().validate()
    with pytest.raises(ValueError, match="groups"):
        FlowGroupConfig(groups=2000).validate()
    with pytest.raises(ValueError, match="min_count"):
        FlowGroupConfig(min_count=1).validate()


def test_real_embedder_dequantizes_and_separates_different_people(shared_data: Path) -> None:
    cap = cv2.VideoCapture(str(shared_data / "video" / "vtest.avi"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    gt = np.loadtxt(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt", delimiter=",")
    boxes = [(x / 768, y / 576, (x + w) / 768, (y + h) / 576) for x, y, w, h in gt[gt[:, 0] == 1][:3, 2:6]]
    with Embedder() as emb:
        assert emb.backend in ("cpu", "edgetpu")
        e = emb.embed_boxes(rgb, np.clip(np.array(boxes), 0, 1))
        again = emb.embed_boxes(rgb, np.clip(np.array(boxes), 0, 1))
    assert e.shape == (3, DIM) and e.dtype == np.float32 and (e >= 0).all()
    assert np.array_equal(e, again)
    steps = np.unique(np.round(e[e > 0] / 0.023528477, 3))
    assert np.allclose(steps, np.round(steps))  # values are multiples of the output scale
    assert not np.allclose(e[0], e[1])


def test_released_record_validates_against_its_schema(basis) -> None:
    import jsonschema

    from firmware.flows.groups import RECORD_SCHEMA

    cfg = FlowGroupConfig()
    win = FlowGroupWindow(cfg, 900)
    win.add(1, "door", _population(1, seed=5)[0])
    (record,) = win.close(FlowHasher(cfg, basis, b"k", 0), np.random.default_rng(0))
    jsonschema.validate(record.to_json(), RECORD_SCHEMA)
    bad = record.to_json() | {"groups": [[3, 1]]}  # a group below the minimum must never validate
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, RECORD_SCHEMA)
