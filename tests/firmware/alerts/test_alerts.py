"""Zone alerts on the device: each rule raises when it holds and not otherwise, once per cooldown, with coarse
time and nothing that points at a person; the records pass their schema; the config names a bad key."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware import schemas
from firmware.alerts.rules import AlertEngine, alert_sink
from firmware.config import parse
from firmware.config.alerts import AlertRule, AlertsConfig
from firmware.config.sensing import GeometryConfig, ZoneConfig
from firmware.errors import ConfigError
from firmware.sensing.geometry import Crossing, Geometry
from firmware.sensing.loop import TickResult
from firmware.sensing.quantize import GroundState

NOON = 1_700_000_000 // 86400 * 86400 + 12 * 3600  # 12:00 UTC


def engine(*rules: AlertRule, **kw: object) -> AlertEngine:
    return AlertEngine(AlertsConfig(enabled=True, rules=rules, **kw))  # type: ignore[arg-type]


def test_occupancy_above_a_limit_raises_once_per_cooldown() -> None:
    e = engine(AlertRule("occupancy_above", "shop", limit=2), cooldown_s=300)
    assert e.step(NOON, {1: "shop", 2: "shop"}) == []
    (a,) = e.step(NOON + 7, {1: "shop", 2: "shop", 3: "shop", 4: None})
    assert a == {"schema": "umbra.alert/1", "t": NOON, "rule": "occupancy_above", "zone": "shop", "value": 3.0,
                 "limit": 2.0}
    assert e.step(NOON + 200, {1: "shop", 2: "shop", 3: "shop"}) == []  # within the cooldown
    assert len(e.step(NOON + 310, {1: "shop", 2: "shop", 3: "shop"})) == 1
    schemas.validate(a)


def test_presence_outside_opening_hours_uses_local_time() -> None:
    e = engine(AlertRule("presence_outside_hours", "store", open_hour=8, close_hour=20), utc_offset_h=9)
    assert len(e.step(NOON, {1: "store"})) == 1  # 21:00 local
    e2 = engine(AlertRule("presence_outside_hours", "store", open_hour=8, close_hour=20))
    assert e2.step(NOON, {1: "store"}) == [] and e2.step(NOON + 9 * 3600, {}) == []


def test_dwell_past_a_threshold_counts_from_entry_and_forgets_on_leaving() -> None:
    e = engine(AlertRule("dwell_above", "till", dwell_s=120), time_bucket_s=60)
    assert e.step(NOON, {5: "till"}) == [] and e.step(NOON + 100, {5: "till"}) == []
    assert e.step(NOON + 110, {5: None}) == []  # left before the threshold
    assert e.step(NOON + 200, {5: "till"}) == []  # back: the clock starts again
    (a,) = e.step(NOON + 325, {5: "till"})
    assert a["value"] == 120.0 and a["t"] == (NOON + 325) // 60 * 60  # dwell and time both coarse


def test_a_wrong_way_crossing_raises_and_the_right_way_does_not() -> None:
    e = engine(AlertRule("wrong_way", "exit", direction="+"))
    assert e.step(NOON, {}, [Crossing(1, "exit", "+"), Crossing(2, "other", "-")]) == []
    (a,) = e.step(NOON + 1, {}, [Crossing(3, "exit", "-")])
    assert a["rule"] == "wrong_way" and a["value"] == 1.0


@given(st.dictionaries(st.integers(0, 10_000), st.sampled_from(["a", "b", None]), max_size=30),
       st.floats(0, 2e9))
def test_an_alert_holds_no_track_id_and_no_fine_time(zones: dict, wall: float) -> None:
    e = engine(AlertRule("occupancy_above", "a", limit=1), AlertRule("dwell_above", "b", dwell_s=1), time_bucket_s=60)
    e.step(wall, zones)
    for a in e.step(wall + 5, zones):
        assert set(a) == {"schema", "t", "rule", "zone", "value", "limit"} and a["t"] % 60 == 0
        schemas.validate(a)


def test_the_sink_feeds_the_engine_from_a_tick_and_emits() -> None:
    geo = Geometry(GeometryConfig(zones=(ZoneConfig("shop", ((0, 0), (10, 0), (10, 10), (0, 10))),)))
    got: list = []
    sink = alert_sink(AlertsConfig(enabled=True, rules=(AlertRule("occupancy_above", "shop", limit=1),)), geo,
                      [got.extend])
    assert sink is not None and alert_sink(AlertsConfig(), geo, []) is None
    ground = GroundState(np.array([1, 2, 3]), np.array([[1.0, 1.0], [2.0, 2.0], [50.0, 50.0]]), np.zeros((3, 2)),
                         np.ones(3))
    sink(TickResult(NOON, [], [], ground))
    assert [(a["rule"], a["value"]) for a in got] == [("occupancy_above", 2.0)]


def test_the_config_section_is_typed_and_names_a_bad_key() -> None:
    cfg = parse('[alerts]\nenabled = true\n[[alerts.rules]]\nrule = "wrong_way"\nzone = "exit"\ndirection = "-"\n')
    assert cfg.alerts.rules == (AlertRule("wrong_way", "exit", direction="-"),)
    with pytest.raises(ConfigError, match="limit"):
        parse('[alerts]\nenabled = true\n[[alerts.rules]]\nrule = "occupancy_above"\nzone = "a"\n')
    with pytest.raises(ConfigError, match="colour"):
        parse('[alerts]\ncolour = 1\n')
    with pytest.raises(ConfigError, match="cooldown_s"):
        parse('[alerts]\ncooldown_s = inf\n')
    with pytest.raises(ConfigError, match="cooldown_s"):
        parse('[alerts]\ncooldown_s = nan\n')
    with pytest.raises(ConfigError, match="dwell_s"):
        parse('[alerts]\nenabled = true\n[[alerts.rules]]\nrule = "dwell_above"\nzone = "a"\ndwell_s = inf\n')
    with pytest.raises(ConfigError, match="rule"):
        parse('[alerts]\nenabled = true\n[[alerts.rules]]\nrule = "loud"\nzone = "a"\n')
