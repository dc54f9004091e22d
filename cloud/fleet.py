"""What ops see: the fleet's inventory and health (from the TLS certificates and the umbra.status/1 records the
devices send), each rollout stage's devices, and the rollout controller that watches failure budgets on its own
and publishes a halt the moment a stage passes its budget."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from cloud.store import DEVICE_COLUMNS, Store
from hal.clock import Clock
from ota.repo import Repository
from ota.rollout import evaluate, stage_views

log = logging.getLogger(__name__)


def fleet(store: Store, now: float, online_within_s: float, after: str = "", limit: int = 100_000
          ) -> list[dict[str, Any]]:
    """Every device (paged by id): its inventory and health, and `online` (heard from within the window)."""
    out = []
    for row in store.devices(after, limit):
        d = dict(zip(DEVICE_COLUMNS, row, strict=True))
        d["online"] = d["last_seen"] is not None and now - float(d["last_seen"]) <= online_within_s
        out.append(d)
    return out


def fleet_summary(devices: list[dict[str, Any]]) -> dict[str, Any]:
    versions: dict[str, int] = {}
    for d in devices:
        versions[d["firmware"] or "unknown"] = versions.get(d["firmware"] or "unknown", 0) + 1
    return {"devices": len(devices), "online": sum(d["online"] for d in devices),
            "with_errors": sum(1 for d in devices if d["last_error"]), "firmware": versions}


class FleetView:
    """The ops fleet view as JSON bytes, equal to `json.dumps({"summary": fleet_summary(rows), "devices": rows})`
    of `rows = fleet(...)`, made fast for 10,000 devices: each row is rendered once and kept (keyed by its
    signature, a text of every column but last_seen) until one of its columns changes; a request reads three
    values per row (id, last seen, signature), re-reads only the rows whose signature changed, and joins the
    kept renderings with last_seen and online filled in."""

    MAX_KEPT = 200_000

    def __init__(self) -> None:
        # device -> (signature, JSON up to "last_seen": , JSON from the next column to "online": , firmware key,
        # has an error)
        self._kept: dict[str, tuple[str, str, str, str, bool]] = {}

    def page(self, store: Store, now: float, online_within_s: float, after: str = "", limit: int = 100_000) -> bytes:
        rows = store.device_signatures(after, limit)
        kept = self._kept
        stale = [d for d, _, sig in rows if (k := kept.get(d)) is None or k[0] != sig]
        if stale:
            if len(kept) + len(stale) > self.MAX_KEPT:
                kept.clear()
            got = store.devices_by_id(stale) if len(stale) < 1000 else store.devices_signed(after, limit)
            for sig, *cols in got:
                kept[cols[0]] = (sig, *_render(cols))
        parts: list[str] = []
        add = parts.append
        versions: dict[str, int] = {}
        online_n = errors = 0
        for d, last_seen, _ in rows:
            k = kept.get(d)
            if k is None:  # removed between the two reads: not in this page
                continue
            online = last_seen is not None and now - float(last_seen) <= online_within_s
            online_n += online
            errors += k[4]
            versions[k[3]] = versions.get(k[3], 0) + 1
            add(f"{k[1]}{_number(last_seen)}{k[2]}{'true}' if online else 'false}'}")
        summary = {"devices": len(parts), "online": online_n, "with_errors": errors, "firmware": versions}
        return f'{{"summary": {json.dumps(summary)}, "devices": [{", ".join(parts)}]}}'.encode()


def _number(x: float | None) -> str:
    """As json.dumps writes it (float repr for finite floats)."""
    return "null" if x is None else repr(x) if isinstance(x, float) and math.isfinite(x) else json.dumps(x)


def _render(cols: list[Any]) -> tuple[str, str, str, bool]:
    """A row's JSON around last_seen and online, its firmware key and whether it has an error."""
    d = dict(zip(DEVICE_COLUMNS, cols, strict=True))
    d["online"] = False
    text = json.dumps(d)
    head, _, rest = text.partition(f'"last_seen": {json.dumps(d["last_seen"])}')
    tail = rest[:-len("false}")]
    return head + '"last_seen": ', tail, d["firmware"] or "unknown", bool(d["last_error"])


def rollout_view(plan: dict[str, Any], store: Store, now: float) -> dict[str, Any]:
    """The plan's state and each stage's devices: installed, healthy, failed, pending."""
    reports = store.ota_results(plan["release"])
    views = stage_views(plan, reports, store.device_ids(), now)
    return {"release": plan["release"], "state": plan.get("state", "running"), "reason": plan.get("reason"),
            "stages": [{"stage": v.stage + 1, "percent": v.percent, "start": v.start, "started": v.started,
                        "failure_budget": float(plan["stages"][v.stage]["failure_budget"]),
                        "installed": list(v.installed), "healthy": list(v.healthy), "failed": list(v.failed),
                        "pending": list(v.pending)} for v in views]}


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    every_s: float = 30.0  # how often the budgets are checked

    def validate(self) -> None:
        if not 1 <= self.every_s <= 3600:
            raise ValueError("every_s: 1 to 3600")


class RolloutController:
    """Checks the latest rollout against the cloud's update reports; halts it (a signed plan in the TUF
    repository, which every device reads before installing) when a started stage is over its budget.
    Run one per fleet (`umbra-cloud rollout --watch`); `check()` is one pass."""

    def __init__(self, repo: Repository, store: Store, clock: Clock, config: ControllerConfig | None = None
                 ) -> None:
        self.repo, self.store, self.clock = repo, store, clock
        self.config = config or ControllerConfig()
        self.config.validate()
        self.halts: list[str] = []

    def check(self) -> dict[str, Any] | None:
        """One pass; returns the plan as it stands (halted if this pass halted it), or None with no rollout."""
        plan = self.repo.rollout()
        if not plan or plan.get("state") != "running":
            return plan or None
        new_plan, _ = evaluate(plan, self.store.ota_results(plan["release"]), self.store.device_ids(),
                               self.clock.wall())
        if new_plan["state"] == "halted":
            self.repo.set_rollout(new_plan)
            self.halts.append(new_plan["reason"])
            log.warning("rollout of %s halted: %s", new_plan["release"], new_plan["reason"])
        return new_plan

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                self.check()
            except Exception:  # a pass that fails (database restarting) must not end the watch
                log.exception("rollout check failed; trying again in %.0f s", self.config.every_s)
            try:
                await asyncio.wait_for(stop.wait(), self.config.every_s)
            except TimeoutError:
                pass
