"""The status record with its zone plan stays on the fast schema check (the cloud validates every record of every
batch: jsonschema alone costs ~100 us a record), and the fast check agrees with jsonschema on status records
with well-formed and broken zone plans alike."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware import schemas

coord = st.one_of(st.floats(-2e5, 2e5, allow_nan=False), st.integers(-200_000, 200_000), st.text(max_size=2),
                  st.none())
point = st.lists(coord, min_size=1, max_size=3)
name = st.text(max_size=70)
zone = st.fixed_dictionaries({"name": name, "polygon": st.lists(point, min_size=0, max_size=6)},
                             optional={"extra": st.integers()})
line = st.fixed_dictionaries({"name": name, "a": point, "b": point})
plan = st.fixed_dictionaries({"zones": st.lists(zone, max_size=4), "lines": st.lists(line, max_size=3)})
BASE = {"schema": "umbra.status/1", "t": 1_700_000_000, "firmware": "1.0.0", "profile": "aggregates",
        "uptime_s": 1.0, "outbox_records": 0, "dropped": {}}


def test_the_records_of_every_batch_stay_on_the_fast_check() -> None:
    for sid in ("umbra.batch/1", "umbra.status/1", "umbra.aggregate/1", "umbra.ota/1"):
        fast, _ = schemas._validators(sid)
        assert fast is not None, f"{sid} uses a keyword the fast check lacks: every record would go to jsonschema"


@settings(max_examples=300, deadline=None)
@given(plan)
def test_the_fast_check_agrees_with_jsonschema_on_zone_plans(zone_plan: dict) -> None:
    rec = {**BASE, "zone_plan": zone_plan}
    _, slow = schemas._validators("umbra.status/1")
    assert schemas.is_valid(rec) == slow.is_valid(rec)


def test_a_sensible_plan_passes_and_a_two_point_zone_is_refused() -> None:
    good = {"zones": [{"name": "shop", "polygon": [[0, 0], [4.5, 0], [4.5, 3]]}],
            "lines": [{"name": "door", "a": [0, 1], "b": [0, 2.5]}]}
    schemas.validate({**BASE, "zone_plan": good})
    bad = {**good, "zones": [{"name": "shop", "polygon": [[0, 0], [4.5, 0]]}]}
    assert not schemas.is_valid({**BASE, "zone_plan": bad})
