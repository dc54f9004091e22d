"""The customer read API and the ops fleet API over real TLS, on both backends: every read endpoint answers its
own tenant's sensor with the released values (JSON and CSV alike) and refuses another tenant's (404),
unauthenticated (401), wrong-role (403), malformed (400), oversized (4xx) and over-rate (429) requests; keys are
kept hashed; the rollout controller halts a stage over budget by itself."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import requests

from cloud import customers
from cloud.fleet import RolloutController, rollout_view
from cloud.harness import CloudThread
from hal.clock import FakeClock
from ota.repo import Repository
from ota.rollout import in_stage, make_plan, position
from tests.cloud.tenant import MakeTenantApi, TenantApi

T0 = 1_700_000_400
SERIES = ("counts", "occupancy", "dwell", "heatmap", "flows", "alerts", "demographics")


def _agg(metric: str, zone: str, w: int, values: list) -> dict:
    return {"schema": "umbra.aggregate/1", "window_start": T0 + w * 300, "window_s": 300, "metric": metric,
            "zone": zone, "values": values, "k": 5, "epsilon": 0.5, "sensitivity": 1, "mechanism": "discrete_laplace"}


def _groups(zone: str, w: int, ids: list[int]) -> dict:
    return {"schema": "umbra.flowgroups/1", "window_start": T0 + w * 300, "window_s": 300, "zone": zone,
            "min_count": 3, "groups": [[g, 3] for g in ids]}


RECORDS = [_agg("line_flow", "door", 0, [12, 7]), _agg("line_flow", "door", 1, [None, 4]),
           _agg("occupancy", "shop", 0, [30, 4.5, 9]), _agg("dwell_histogram", "shop", 0, [3, 5, 0, 1]),
           _agg("heatmap", "2,3", 0, [41.0, 0.5]), _groups("shop", 0, list(range(40))),
           _groups("till", 1, list(range(30)) + [900, 901]),
           {"schema": "umbra.alert/1", "t": T0 + 60, "rule": "occupancy_above", "zone": "shop", "value": 31.0,
            "limit": 30.0},
           {"schema": "umbra.demographics/1", "window_start": T0, "window_s": 900, "zone": "shop",
            "bands": ["0-17", "18-27", "28-37", "38-47", "48-57", "58+"], "genders": ["female", "male"],
            "counts": [[1, 2], [7, 5], [None, 4], [3, 3], [0, 1], [2, 0]], "k": 5, "epsilon": 1.0, "sensitivity": 1,
            "mechanism": "discrete_laplace", "estimator": "dlib age-v1, gender-v1 (ONNX)"}]


@pytest.fixture
def api(tenant_api: MakeTenantApi) -> TenantApi:
    return tenant_api(T0 + 3600, RECORDS)


WINDOW = {"from": T0, "to": T0 + 3600}


def test_every_read_endpoint_serves_its_own_tenant_the_released_values(api: TenantApi) -> None:
    got = {m: api.get(f"/api/v1/sensors/shop-1/{m}", api.acme, **WINDOW) for m in SERIES}
    assert all(r.status_code == 200 for r in got.values()), {m: r.text for m, r in got.items()}
    rows = {m: r.json()["rows"] for m, r in got.items()}
    assert [(r["zone"], r["forward"], r["backward"]) for r in rows["counts"]] == [("door", 12, 7), ("door", None, 4)]
    assert rows["occupancy"] == [{"zone": "shop", "window_start": T0, "window_s": 300, "visitors": 30,
                                  "mean_present": 4.5, "peak_present": 9}]
    assert rows["dwell"][0]["histogram"] == [3, 5, 0, 1]
    assert rows["heatmap"][0] | {} == {"zone": "2,3", "window_start": T0, "window_s": 300, "people_seconds": 41.0,
                                       "cell_m": 0.5}
    (flow,) = rows["flows"]
    assert (flow["from_zone"], flow["to_zone"], flow["window_start"]) == ("shop", "till", T0) and flow["people"] > 50
    assert rows["alerts"] == [{"zone": "shop", "window_start": T0 + 60, "window_s": 0, "rule": "occupancy_above",
                               "value": 31.0, "limit": 30.0}]
    assert rows["demographics"] == [{"zone": "shop", "window_start": T0, "window_s": 900,
                                     "bands": ["0-17", "18-27", "28-37", "38-47", "48-57", "58+"],
                                     "genders": ["female", "male"],
                                     "counts": [[1, 2], [7, 5], [None, 4], [3, 3], [0, 1], [2, 0]]}]
    zoned = api.get("/api/v1/sensors/shop-1/counts", api.acme, zone="elsewhere", **WINDOW).json()["rows"]
    assert zoned == []
    assert api.get("/api/v1/sensors", api.acme).json() == {"tenant": "acme",
                                                           "sensors": [{"id": "shop-1", "name": "Front door"}]}


def test_csv_export_holds_the_same_rows(api: TenantApi) -> None:
    for m in SERIES:
        js = api.get(f"/api/v1/sensors/shop-1/{m}", api.acme, **WINDOW).json()["rows"]
        r = api.get(f"/api/v1/sensors/shop-1/{m}", api.acme, format="csv", **WINDOW)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(r.text)))
        assert len(table) == len(js)
        for row, j in zip(table, js, strict=True):
            for col, v in row.items():
                want = j[col]
                want = "" if want is None else (" ".join(map(str, want)) if isinstance(want, list) else str(want))
                assert v == want, (m, col)


@pytest.mark.parametrize("path", ["/api/v1/sensors"] + [f"/api/v1/sensors/shop-1/{m}" for m in SERIES])
def test_unauthenticated_wrong_tenant_wrong_role_and_malformed_requests_get_4xx(api: TenantApi, path: str) -> None:
    params = {} if path == "/api/v1/sensors" else WINDOW
    assert api.get(path, None, **params).status_code == 401
    assert api.get(path, "umbra_0123456789abcdef_" + "A" * 43, **params).status_code == 401
    assert api.get(path, api.acme[:-1] + ("B" if api.acme[-1] != "B" else "C"), **params).status_code == 401
    assert api.get(path, api.ops, **params).status_code == 403
    if path == "/api/v1/sensors":
        assert api.get(path, api.globex).json()["sensors"] == [{"id": "other-1", "name": "other-1"}]
        assert api.get(path, api.acme, extra=1).status_code == 400
        return
    r = api.get(path, api.globex, **WINDOW)  # another tenant's sensor: as if it did not exist
    assert r.status_code == 404 and r.json()["error"] == "no_such_sensor"
    assert api.get(path.replace("shop-1", "nope"), api.acme, **WINDOW).status_code == 404
    for bad in ({"from": T0}, {"from": "x", "to": T0}, {"from": T0 + 9, "to": T0}, {**WINDOW, "format": "xml"},
                {**WINDOW, "zone": "z" * 65}, {**WINDOW, "junk": 1}, {"from": 0, "to": 40 * 86_400}):
        r = api.get(path, api.acme, **bad)
        assert r.status_code == 400 and r.json()["error"] in ("bad_query", "range_too_large"), (bad, r.text)
    huge = api.get(path, api.acme, zone="z" * 9000, **WINDOW)  # past the request line's bound
    assert 400 <= huge.status_code < 500


def test_keys_are_stored_hashed_and_a_revoked_key_is_refused(api: TenantApi) -> None:
    secret = api.acme.split("_", 2)[2]  # umbra_<key id>_<secret>; the url-safe secret may hold "_" itself
    dumped = json.dumps(api.store.db.all("SELECT * FROM api_keys"))
    assert secret not in dumped and api.acme not in dumped
    assert customers.revoke_key(api.store, api.acme.split("_")[1])
    assert api.get("/api/v1/sensors", api.acme).status_code == 401
    with pytest.raises(customers.AccessError):
        customers.create_key(api.store, "bad tenant!", "customer", 0)


def test_requests_past_the_rate_are_refused_until_the_bucket_refills(api: TenantApi) -> None:
    api.ct.cloud.read_api.limiter = customers.RateLimiter(api.store.db, rate=1.0, burst=3)
    codes = [api.get("/api/v1/sensors", api.acme).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = api.get("/api/v1/sensors", api.acme)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert api.get("/api/v1/sensors", api.globex).status_code == 200  # per key
    api.clock.advance(2)
    assert api.get("/api/v1/sensors", api.acme).status_code == 200


def test_the_ops_fleet_view_needs_an_ops_key(api: TenantApi) -> None:
    status = {"schema": "umbra.status/1", "t": T0 + 3000, "firmware": "1.3.0", "profile": "tracks", "uptime_s": 50.0,
              "outbox_records": 2, "dropped": {}, "detector": "edgetpu", "overruns": 3, "fps": 9.8, "slot": "a",
              "last_error": "camera stalled once"}
    api.store.store_batch("shop-1", "c" * 32, "0" * 16, 2, api.clock.wall(),
                          [(99, "umbra.status/1", json.dumps(status))])
    assert api.get("/ops/v1/fleet", api.acme).status_code == 403
    assert api.get("/ops/v1/fleet", api.ops, limit=0).status_code == 400
    body = api.get("/ops/v1/fleet", api.ops).json()
    d = {x["device_id"]: x for x in body["devices"]}
    assert body["summary"]["devices"] == 2 and body["summary"]["online"] == 2
    assert (d["shop-1"]["firmware"], d["shop-1"]["fps"], d["shop-1"]["detector"], d["shop-1"]["slot"],
            d["shop-1"]["overruns"], d["shop-1"]["last_error"]) == ("1.3.0", 9.8, "edgetpu", "a", 3,
                                                                    "camera stalled once")
    api.clock.advance(901)
    assert api.get("/ops/v1/fleet", api.ops).json()["summary"]["online"] == 0
    assert [x["device_id"] for x in api.get("/ops/v1/fleet", api.ops, after="other-0").json()["devices"]] == [
        "other-1", "shop-1"]


def test_the_controller_halts_a_stage_over_budget_on_its_own(api: TenantApi, tmp_path: Path) -> None:
    fleet = [f"dev{i:03d}" for i in range(300)]
    for i, d in enumerate(fleet):
        api.store.store_batch(d, f"{i:032x}", "2" * 16, 1, api.clock.wall(), [])
    repo = Repository(tmp_path / "repo")
    repo.init()
    repo.set_rollout(make_plan("2.0.0", [10, 100], [0, 2e9], [0.05, 0.05]))
    ctl = RolloutController(repo, api.store, api.clock)
    first = [d for d in fleet if position(d, "2.0.0") < 0.10]
    for n, d in enumerate(first[:3]):
        rec = {"schema": "umbra.ota/1", "t": T0, "release": "2.0.0", "from_version": "1.0.0", "result": "committed"}
        api.store.store_batch(d, f"{n + 1000:032x}", "3" * 16, 1, api.clock.wall(),
                              [(1, "umbra.ota/1", json.dumps(rec))])
    assert ctl.check()["state"] == "running" and not ctl.halts
    for n, d in enumerate(first[3:6]):
        rec = {"schema": "umbra.ota/1", "t": T0, "release": "2.0.0", "from_version": "1.0.0", "result": "rolled_back"}
        api.store.store_batch(d, f"{n + 2000:032x}", "3" * 16, 1, api.clock.wall(),
                              [(1, "umbra.ota/1", json.dumps(rec))])
    assert ctl.check()["state"] == "halted" and len(ctl.halts) == 1
    assert repo.rollout()["state"] == "halted"  # published: every device reads it before installing
    assert not in_stage(repo.rollout_document(), first[10], "2.0.0", now=T0)
    view = rollout_view(repo.rollout(), api.store, api.clock.wall())
    st = view["stages"][0]
    assert len(st["healthy"]) == 3 and len(st["failed"]) == 3 and len(st["pending"]) == len(first) - 6
    assert ctl.check()["state"] == "halted" and len(ctl.halts) == 1  # halted once, not again


def test_the_ops_commands_make_keys_assign_sensors_and_exit_nonzero_on_offline_and_halts(tmp_path: Path,
                                                                                         capsys) -> None:
    from cloud.__main__ import main

    d = ["--dir", str(tmp_path)]
    assert main(["key", "create", *d, "--tenant", "acme"]) == 0
    key = capsys.readouterr().out.strip()
    store = customers.Store(tmp_path / "cloud.sqlite")
    assert customers.authenticate(store, key) == customers.Caller(key.split("_")[1], "acme", "customer")
    assert main(["key", "create", *d, "--tenant", "bad tenant"]) == 2
    assert "tenant:" in capsys.readouterr().err
    assert main(["sensor", "assign", *d, "--device", "shop-1", "--tenant", "acme"]) == 0
    store.store_batch("shop-1", "a" * 32, "0" * 16, 1, 1000.0, [])  # heard from long ago
    assert main(["fleet", *d]) == 1
    assert "1 devices, 0 online" in capsys.readouterr().out
    repo = Repository(tmp_path / "repo")
    repo.init()
    repo.set_rollout({**make_plan("2.0.0", [100], [0], [0.0]), "state": "halted", "reason": "test"})
    assert main(["rollout", *d, "--repo", str(tmp_path / "repo"), "--devices"]) == 3
    out = capsys.readouterr().out
    assert "release 2.0.0: halted (test)" in out and "pending   shop-1" in out


def test_the_rate_limit_is_one_bucket_per_key_across_workers(tmp_path: Path, cloud_db: str) -> None:
    """Two cloud workers on one database: a key gets its burst once between them, not once from each."""
    clock = FakeClock(start_wall=T0 + 3600)
    second = tmp_path / ("cloud" if not cloud_db else "cloud2")  # SQLite: the database is in the data folder
    workers = [CloudThread(tmp_path / "cloud", clock, database=cloud_db, api_rate=1.0, api_burst=3),
               CloudThread(second, clock, database=cloud_db, api_rate=1.0, api_burst=3)]
    try:
        customers.assign_sensor(workers[0].cloud.store, "shop-1", "acme")
        key = customers.create_key(workers[0].cloud.store, "acme", "customer", clock.wall())
        http = requests.Session()
        http.trust_env = False

        def get(w: CloudThread) -> int:
            return http.get(f"https://localhost:{w.api_port}/api/v1/sensors", verify=str(w.cloud.pki.ca_cert),
                            headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code

        assert [get(workers[i % 2]) for i in range(6)] == [200, 200, 200, 429, 429, 429]
        clock.advance(1)
        assert [get(workers[1]), get(workers[0])] == [200, 429]  # one token a second, for both together
    finally:
        for w in workers:
            w.close()
            w.cloud.store.close()


PLAN = {"zones": [{"name": "shop", "polygon": [[0.0, 0.0], [6.0, 0.0], [6.0, 4.0], [0.0, 4.0]]}],
        "lines": [{"name": "door", "a": [0.0, 2.0], "b": [0.0, 4.0]}]}


def test_the_zone_plan_from_the_first_status_is_served_to_its_owner_only(api: TenantApi) -> None:
    assert api.get("/api/v1/sensors/shop-1/zones", api.acme).json() == {"sensor": "shop-1", "t": None,
                                                                         "zones": [], "lines": []}
    status = {"schema": "umbra.status/1", "t": T0 + 100, "firmware": "1.3.0", "profile": "aggregates",
              "uptime_s": 0.0, "outbox_records": 0, "dropped": {}, "zone_plan": PLAN}
    later = {**status, "t": T0 + 400, "uptime_s": 300.0}
    del later["zone_plan"]  # later statuses do not carry it: the plan stays
    older = {**status, "t": T0 + 50, "zone_plan": {"zones": [], "lines": []}}  # a resend from before: ignored
    for i, rec in enumerate((status, later, older)):
        api.store.store_batch("shop-1", f"{i:032x}", "2" * 16, 1, api.clock.wall(),
                              [(1, "umbra.status/1", json.dumps(rec))])
    body = api.get("/api/v1/sensors/shop-1/zones", api.acme).json()
    assert body == {"sensor": "shop-1", "t": T0 + 100, **PLAN}
    assert api.get("/api/v1/sensors/shop-1/zones", api.globex).status_code == 404
    assert api.get("/api/v1/sensors/shop-1/zones", None).status_code == 401
    assert api.get("/api/v1/sensors/shop-1/zones", api.ops).status_code == 403
    assert api.get("/api/v1/sensors/shop-1/zones", api.acme, zone="x").status_code == 400
