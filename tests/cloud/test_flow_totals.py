"""The read API's `flow_totals` (issue 16) over real TLS on both backends: a day's minute series per count line and
direction of the running crossings as released under continual observation (`flow_total`, binary tree), and the
combined estimate with its standard error (firmware.privacy.combine over the same released records: the API
serves that function's answer, not a second implementation); JSON and CSV alike; another tenant's sensor 404,
no key 401, an ops key 403, malformed days and unknown parameters 400."""

from __future__ import annotations

import csv
import io
import math
from fractions import Fraction
from pathlib import Path

import jsonschema
import pytest
import requests
import yaml

from firmware.privacy.combine import combine_records
from firmware.privacy.dp import laplace_var
from firmware.schemas import validate
from tests.cloud.tenant import MakeTenantApi, TenantApi

DAY = 19_700 * 86_400


def _total(i: int, line: str, values: list, day: int = DAY) -> dict:
    return {"schema": "umbra.aggregate/1", "window_start": day + 60 * i, "window_s": 60, "since": day,
            "metric": "flow_total", "zone": line, "values": values, "k": 5, "epsilon": 1.0, "sensitivity": 2,
            "mechanism": "binary_tree"}


def _minute(i: int, line: str, values: list) -> dict:
    return {"schema": "umbra.aggregate/1", "window_start": DAY + 60 * i, "window_s": 60, "metric": "line_flow",
            "zone": line, "values": values, "k": 5, "epsilon": 1.0, "sensitivity": 2,
            "mechanism": "discrete_laplace"}


# the door: the tree withholds its first totals (below k), the minutes are released (one suppressed);
# the gate: the tree alone, no minutes
TOTALS = [None, None, 9, 14, 20, 27, 31, 38]
BACK = [None, None, None, 6, 6, 8, 9, 12]
MINUTES = [(3, 1), (2, 2), (4, None), (5, 2), (6, 1), (7, 2), (4, 1), (7, 3)]
RECORDS = ([_total(i, "door", [t, b]) for i, (t, b) in enumerate(zip(TOTALS, BACK, strict=True))]
           + [_minute(i, "door", list(m)) for i, m in enumerate(MINUTES)]
           + [_total(i, "gate", [v, None]) for i, v in enumerate([11, 15, 22])]
           + [_total(0, "door", [99, 99], day=DAY + 86_400)])  # the next day: not in this day's answer


class Api:
    """flow_totals of a sensor, through a TenantApi holding RECORDS."""

    def __init__(self, cloud: TenantApi) -> None:
        self.cloud, self.acme, self.ops = cloud, cloud.acme, cloud.ops

    def get(self, sensor: str, key: str | None, **params: object) -> requests.Response:
        return self.cloud.get(f"/api/v1/sensors/{sensor}/flow_totals", key, **params)


@pytest.fixture
def api(tenant_api: MakeTenantApi) -> Api:
    for r in RECORDS:
        validate(r)  # what a device sends
    return Api(tenant_api(DAY + 86_400 + 3600, RECORDS))


def test_a_days_running_totals_as_released_and_combined(api: Api) -> None:
    r = api.get("shop-1", api.acme, day=DAY)
    assert r.status_code == 200, r.text
    body = r.json()
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "cloud" / "openapi.yaml").read_text())
    op = doc["paths"]["/api/v1/sensors/{sensor}/flow_totals"]["get"]
    jsonschema.validate(body, op["responses"]["200"]["content"]["application/json"]["schema"])
    assert (body["sensor"], body["from"], body["to"], body["metric"]) == ("shop-1", DAY, DAY + 86_400, "flow_totals")
    rows = body["rows"]
    want = combine_records(RECORDS)
    by = {(x["zone"], x["direction"]): [] for x in rows}
    for x in rows:
        by[(x["zone"], x["direction"])].append(x)
    assert sorted(by) == [("door", "+"), ("door", "-"), ("gate", "+"), ("gate", "-")]
    for (line, d), series in by.items():
        est = want[(DAY, line, d)]
        assert [x["window_start"] for x in series] == [DAY + 60 * i for i in range(len(est))]
        assert all(x["window_s"] == 60 for x in series)
        for x, e in zip(series, est, strict=True):
            if e is None:
                assert x["combined"] is None and x["stderr"] is None
            else:
                assert x["combined"] == pytest.approx(e[0], abs=1e-3)
                assert x["stderr"] == pytest.approx(math.sqrt(e[1]), abs=1e-3)
    assert [x["released"] for x in by[("door", "+")]] == TOTALS
    assert [x["released"] for x in by[("door", "-")]] == BACK
    assert [x["released"] for x in by[("gate", "+")]] == [11, 15, 22]
    # where the tree withheld its total, the released minutes still give an estimate (3, then 3 + 2)
    door = by[("door", "+")]
    assert door[0]["combined"] == pytest.approx(3, abs=1e-3) and door[1]["combined"] == pytest.approx(5, abs=1e-3)
    # where it released one, the combination is never less sure than the plain tree (popcount(t) blocks)
    tree_var = laplace_var(Fraction(2 * (1440).bit_length()) / Fraction(1))
    for t, x in enumerate(door, start=1):
        if x["released"] is not None:
            assert x["stderr"] <= math.sqrt(bin(t).count("1") * tree_var) + 1e-6
    # the gate has no minutes: its estimate is the plain tree's
    assert [x["combined"] for x in by[("gate", "+")]] == [11, 15, 22]
    assert all(x["combined"] is None for x in by[("gate", "-")])


def test_csv_zone_filter_and_empty_days(api: Api) -> None:
    r = api.get("shop-1", api.acme, day=DAY, zone="gate", format="csv")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    got = list(csv.reader(io.StringIO(r.text)))
    assert got[0] == ["zone", "direction", "window_start", "window_s", "released", "combined", "stderr"]
    assert [row[:2] for row in got[1:]] == [["gate", "+"]] * 3 + [["gate", "-"]] * 3
    assert [row[4] for row in got[1:4]] == ["11", "15", "22"] and got[4][4:] == ["", "", ""]
    assert api.get("shop-1", api.acme, day=DAY - 86_400).json()["rows"] == []
    nxt = api.get("shop-1", api.acme, day=DAY + 86_400).json()["rows"]
    assert [(x["zone"], x["direction"], x["released"]) for x in nxt] == [("door", "+", 99), ("door", "-", 99)]


@pytest.mark.parametrize("params, status", [
    ({}, 400), ({"day": DAY + 1}, 400), ({"day": -86_400}, 400), ({"day": "x"}, 400),
    ({"day": 2**41 // 86_400 * 86_400}, 400),
    ({"day": DAY, "from": 0}, 400), ({"day": DAY, "format": "xml"}, 400), ({"day": DAY, "zone": "a\x01"}, 400),
])
def test_bad_requests_are_refused(api: Api, params: dict, status: int) -> None:
    r = api.get("shop-1", api.acme, **params)
    assert r.status_code == status and r.json()["error"] == "bad_query", r.text


def test_tenancy(api: Api) -> None:
    assert api.get("other-1", api.acme, day=DAY).status_code == 404  # another tenant's: as one that does not exist
    assert api.get("nobody", api.acme, day=DAY).status_code == 404
    assert api.get("shop-1", None, day=DAY).status_code == 401
    assert api.get("shop-1", "umbra_nope_nope", day=DAY).status_code == 401
    assert api.get("shop-1", api.ops, day=DAY).status_code == 403
