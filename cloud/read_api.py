"""The customer read API and the ops fleet API (`/api/v1/...`, `/ops/v1/...`), served on the API listener
(server TLS, no client certificate: callers present an API key as `Authorization: Bearer umbra_...`).

A customer key reads only its tenant's sensors: another tenant's sensor answers 404, as one that does not
exist. Every series takes `from` and `to` (Unix seconds, at most `max_range_s` apart), an optional `zone`, and
`format=csv` for a CSV export of the same rows. Values are the released (k-thresholded, noised) aggregates as
the devices sent them; a suppressed value is null (an empty CSV field).

`flow_totals` takes a UTC `day` instead: the day's running crossings per count line and direction, one row per
step (minute) of the tree, as the device released them under continual observation (`flow_total`, binary
tree: firmware.privacy.continual) and combined with the per-minute `line_flow` releases of the same line by
inverse variance (firmware.privacy.combine, the device's own code: post-processing of released values only),
with the combined estimate's standard error."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from cloud import customers, fleet
from cloud.errors import ApiRefused
from cloud.store import Store
from firmware.demographics.bands import BANDS, GENDERS
from firmware.flows.groups import estimate_transitions
from firmware.privacy.combine import DAY_S, combine_records
from hal.clock import Clock

_SENSOR = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ZONE = re.compile(r"^[^\x00-\x1f]{1,64}$")
Row = dict[str, Any]


def _occupancy(v: list) -> Row:
    return {"visitors": v[0], "mean_present": v[1], "peak_present": v[2]}


# metric -> (the aggregate metric stored, how its values read, CSV columns after the common ones)
SERIES: dict[str, tuple[str, Callable[[list], Row], tuple[str, ...]]] = {
    "counts": ("line_flow", lambda v: {"forward": v[0], "backward": v[1]}, ("forward", "backward")),
    "occupancy": ("occupancy", _occupancy, ("visitors", "mean_present", "peak_present")),
    "dwell": ("dwell_histogram", lambda v: {"histogram": v}, ("histogram",)),
    "heatmap": ("heatmap", lambda v: {"people_seconds": v[0], "cell_m": v[1]}, ("people_seconds", "cell_m")),
    "alerts": ("alert", lambda v: dict(v), ("rule", "value", "limit")),
    # counts[b][g]: age band b of BANDS by gender g of GENDERS, noised and k-thresholded (null: withheld)
    "demographics": ("demographics", lambda v: {"bands": list(BANDS), "genders": list(GENDERS), "counts": v},
                     ("counts",)),
}


class ReadApi:
    def __init__(self, store: Store, clock: Clock, *, max_range_s: int, rate: float, burst: float,
                 online_within_s: float, flow_p_same: float, flow_groups: int) -> None:
        self.store, self.clock = store, clock
        self.max_range_s, self.online_within_s = max_range_s, online_within_s
        self.flow_p_same, self.flow_groups = flow_p_same, flow_groups
        self.limiter = customers.RateLimiter(store.db, rate, burst)
        self.fleet_view = fleet.FleetView()  # kept renderings of the fleet rows (see fleet.FleetView)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/sensors", self.sensors)
        for name in SERIES:
            app.router.add_get(f"/api/v1/sensors/{{sensor}}/{name}", self._series_handler(name))
        app.router.add_get("/api/v1/sensors/{sensor}/flows", self.flows)
        app.router.add_get("/api/v1/sensors/{sensor}/flow_totals", self.flow_totals)
        app.router.add_get("/api/v1/sensors/{sensor}/zones", self.zones)
        app.router.add_get("/ops/v1/fleet", self.fleet)

    # --- access -----------------------------------------------------------------------------------------------

    def caller(self, request: web.Request, role: str) -> customers.Caller:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            raise ApiRefused(401, "unauthenticated", "send Authorization: Bearer <API key>",
                             {"WWW-Authenticate": "Bearer"})
        who = customers.authenticate(self.store, auth[7:].strip())
        if who is None:
            raise ApiRefused(401, "bad_key", "this API key is unknown or revoked", {"WWW-Authenticate": "Bearer"})
        wait = self.limiter.take(who.key_id, self.clock.wall())
        if wait:
            raise ApiRefused(429, "rate_limited", "too many requests for this key",
                             {"Retry-After": str(max(1, round(wait)))})
        if who.role != role:
            raise ApiRefused(403, "wrong_role", f"this endpoint needs a {role} key")
        return who

    def _sensor(self, request: web.Request) -> tuple[customers.Caller, str]:
        who = self.caller(request, "customer")
        sensor = request.match_info["sensor"]
        if not _SENSOR.match(sensor) or not customers.owns(self.store, who.tenant, sensor):
            raise ApiRefused(404, "no_such_sensor", "no sensor of yours has this id")
        return who, sensor

    def _window(self, request: web.Request) -> tuple[int, int, str | None, str]:
        q = request.query
        unknown = set(q) - {"from", "to", "zone", "format"}
        if unknown:
            raise ApiRefused(400, "bad_query", f"unknown query parameter {sorted(unknown)[0]!r}")
        try:
            t0, t1 = int(q["from"]), int(q["to"])
        except KeyError as e:
            raise ApiRefused(400, "bad_query", f"{e.args[0]} (Unix seconds) is required") from None
        except ValueError:
            raise ApiRefused(400, "bad_query", "from and to are whole Unix seconds") from None
        if not 0 <= t0 < t1 <= 2**40:
            raise ApiRefused(400, "bad_query", "need 0 <= from < to")
        if t1 - t0 > self.max_range_s:
            raise ApiRefused(400, "range_too_large", f"from..to spans at most {self.max_range_s} s: ask in parts")
        zone, fmt = _zone_and_format(q)
        return t0, t1, zone, fmt

    # --- handlers ---------------------------------------------------------------------------------------------

    async def sensors(self, request: web.Request) -> web.Response:
        who = self.caller(request, "customer")
        if request.query:
            raise ApiRefused(400, "bad_query", "this endpoint takes no query parameters")
        return web.json_response({"tenant": who.tenant, "sensors": [
            {"id": d, "name": n} for d, n in customers.sensors(self.store, who.tenant)]})

    def rows(self, sensor: str, metric: str, t0: int, t1: int, zone: str | None) -> list[tuple]:
        q = ("SELECT zone, window_start, window_s, vals FROM aggregates WHERE device_id = ? AND metric = ? "
             "AND window_start >= ? AND window_start < ?")
        args: list[Any] = [sensor, metric, t0, t1]
        if zone is not None:
            q += " AND zone = ?"
            args.append(zone)
        return self.store.db.all(q + " ORDER BY window_start, zone, seq", args)

    def series(self, name: str, sensor: str, t0: int, t1: int, zone: str | None) -> list[Row]:
        metric, read, _ = SERIES[name]
        return [{"zone": z, "window_start": int(ws), "window_s": int(w), **read(json.loads(v))}
                for z, ws, w, v in self.rows(sensor, metric, t0, t1, zone)]

    def _series_handler(self, name: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            _, sensor = self._sensor(request)
            t0, t1, zone, fmt = self._window(request)
            rows = self.series(name, sensor, t0, t1, zone)
            return _answer(rows, fmt, ("zone", "window_start", "window_s", *SERIES[name][2]),
                           {"sensor": sensor, "from": t0, "to": t1, "metric": name})

        handler.__name__ = f"series_{name}"
        return handler

    def transitions(self, sensor: str, t0: int, t1: int, zone: str | None) -> list[Row]:
        """Zone-to-zone flow: people estimated to move from zone a in one window to zone b in the next."""
        groups: dict[tuple[int, int], dict[str, set[int]]] = defaultdict(dict)
        for z, ws, w, v in self.rows(sensor, "flowgroups", t0, t1, None):
            groups[(int(ws), int(w))][z] = {int(g[0]) for g in json.loads(v)}
        out = []
        for (ws, w), zones in sorted(groups.items()):
            nxt = groups.get((ws + w, w), {})
            for a, ga in sorted(zones.items()):
                for b, gb in sorted(nxt.items()):
                    if a != b and (zone is None or zone in (a, b)):
                        est = estimate_transitions(ga, gb, self.flow_groups, self.flow_p_same)
                        out.append({"from_zone": a, "to_zone": b, "window_start": ws, "window_s": w,
                                    "people": round(est, 2)})
        return out

    async def flows(self, request: web.Request) -> web.Response:
        _, sensor = self._sensor(request)
        t0, t1, zone, fmt = self._window(request)
        rows = self.transitions(sensor, t0, t1, zone)
        return _answer(rows, fmt, ("from_zone", "to_zone", "window_start", "window_s", "people"),
                       {"sensor": sensor, "from": t0, "to": t1, "metric": "flows"})

    def running_totals(self, sensor: str, day: int, zone: str | None) -> list[Row]:
        """Per line (`zone`) and direction ("+" forward, "-" backward), each step of `day` up to the last the
        tree released: the running total as released (null: withheld below k, or no record for that step) and
        the combined estimate with its standard error (null where nothing released covers every step so far).
        The records are read whole (epsilon, sensitivity, window: the scales the combination needs)."""
        q = ("SELECT r.body FROM aggregates a JOIN records r ON r.device_id = a.device_id "
             "AND r.outbox_id = a.outbox_id AND r.seq = a.seq WHERE a.device_id = ? "
             "AND a.metric IN ('flow_total', 'line_flow') AND a.window_start >= ? AND a.window_start < ?")
        args: list[Any] = [sensor, day, day + DAY_S]
        if zone is not None:
            q += " AND a.zone = ?"
            args.append(zone)
        records = [r for (b,) in self.store.db.all(q + " ORDER BY a.window_start, a.seq", args)
                   if _combinable(r := json.loads(b))]
        released: dict[tuple[str, str], dict[int, Any]] = defaultdict(dict)
        steps: dict[str, int] = {}
        for r in records:
            if r.get("metric") == "flow_total" and int(r.get("since", -1)) == day:
                steps[r["zone"]] = int(r["window_s"])
                for d, v in zip("+-", r["values"], strict=True):
                    released[(r["zone"], d)][int(r["window_start"])] = v
        out = []
        for (d0, line, d), series in sorted(combine_records(records).items()):
            if d0 != day:
                continue
            w = steps[line]
            for i, est in enumerate(series):
                ws = day + i * w
                out.append({"zone": line, "direction": d, "window_start": ws, "window_s": w,
                            "released": released[(line, d)].get(ws),
                            "combined": None if est is None else round(est[0], 3),
                            "stderr": None if est is None else round(math.sqrt(est[1]), 3)})
        return out

    async def flow_totals(self, request: web.Request) -> web.Response:
        _, sensor = self._sensor(request)
        q = request.query
        unknown = set(q) - {"day", "zone", "format"}
        if unknown:
            raise ApiRefused(400, "bad_query", f"unknown query parameter {sorted(unknown)[0]!r}")
        try:
            day = int(q["day"])
        except KeyError:
            raise ApiRefused(400, "bad_query", "day (the UTC day's start, Unix seconds) is required") from None
        except ValueError:
            raise ApiRefused(400, "bad_query", "day is whole Unix seconds") from None
        if not 0 <= day <= 2**40 or day % DAY_S:
            raise ApiRefused(400, "bad_query", f"day: the start of a UTC day (a multiple of {DAY_S}), from 0")
        zone, fmt = _zone_and_format(q)
        rows = self.running_totals(sensor, day, zone)
        return _answer(rows, fmt, ("zone", "direction", "window_start", "window_s", "released", "combined", "stderr"),
                       {"sensor": sensor, "from": day, "to": day + DAY_S, "metric": "flow_totals"})

    async def zones(self, request: web.Request) -> web.Response:
        """The sensor's zone plan (zones and count lines, ground metres) from its latest start; empty lists and
        `t` null before it sent one."""
        _, sensor = self._sensor(request)
        if request.query:
            raise ApiRefused(400, "bad_query", "this endpoint takes no query parameters")
        got = self.store.zone_plan(sensor)
        t, plan = got if got else (None, {"zones": [], "lines": []})
        return web.json_response({"sensor": sensor, "t": t, "zones": plan["zones"], "lines": plan["lines"]})

    async def fleet(self, request: web.Request) -> web.Response:
        self.caller(request, "ops")
        after = request.query.get("after", "")
        try:
            limit = int(request.query.get("limit", "10000"))
        except ValueError:
            raise ApiRefused(400, "bad_query", "limit is a whole number") from None
        if not 1 <= limit <= 10_000 or len(after) > 64 or set(request.query) - {"after", "limit"}:
            raise ApiRefused(400, "bad_query", "limit 1 to 10000, after a device id; nothing else")
        body = self.fleet_view.page(self.store, self.clock.wall(), self.online_within_s, after, limit)
        return web.Response(body=body, content_type="application/json")


def _combinable(r: Row) -> bool:
    """A record whose noise scale combine.py can read: one whole sensitivity, a positive epsilon, two values (the
    schema allows more: those are left out, never guessed at)."""
    s, e, v = r.get("sensitivity"), r.get("epsilon"), r.get("values")
    return (isinstance(s, int) and not isinstance(s, bool) and s >= 1 and isinstance(e, int | float)
            and math.isfinite(e) and e > 0 and isinstance(v, list) and len(v) == 2)


def _answer(rows: list[Row], fmt: str, columns: tuple[str, ...], meta: Row) -> web.Response:
    if fmt == "json":
        return web.json_response({**meta, "rows": rows})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r[c] is None else (" ".join(map(str, r[c])) if isinstance(r[c], list) else r[c])
                    for c in columns])
    name = f"{meta['sensor']}-{meta['metric']}-{meta['from']}-{meta['to']}.csv"
    return web.Response(text=buf.getvalue(), content_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})


def _zone_and_format(q: Mapping[str, str]) -> tuple[str | None, str]:
    """The optional `zone` and `format` (json or csv) of a read query, or 400."""
    zone = q.get("zone")
    if zone is not None and not _ZONE.match(zone):
        raise ApiRefused(400, "bad_query", "zone: 1 to 64 printable characters")
    fmt = q.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ApiRefused(400, "bad_query", "format: json or csv")
    return zone, fmt
