"""Staged rollout: which devices take a release now, and when a rollout halts by itself.

Membership is derived, not assigned: a device's position in a release is sha256(device id, release) mapped
to [0, 1); a stage of p% takes the devices whose position is below p/100. So every device decides alone, the
1% are inside the 10%, and a new release reshuffles who goes first. The plan is a signed TUF target:

    {"release": "1.4.0", "stages": [{"percent": 1, "start": t0, "failure_budget": 0.02}, ...],
     "state": "running" | "paused" | "halted" | "aborted", "reason": "..."}

A device takes the release when the plan names it, the state is running, and the latest stage whose start
has passed includes it. `evaluate()` is the controller: from device reports it halts a stage whose failure
share passes its budget. `stage_views()` lists each stage's devices as installed, healthy, failed or pending.
An aborted plan is final (`transition()` refuses to leave it): a new release restarts a rollout.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ota.errors import OtaError


def position(device_id: str, release: str) -> float:
    h = hashlib.sha256(f"{release}\x00{device_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def current_stage(plan: Mapping[str, Any], now: float | None = None) -> int:
    """Index of the latest stage that has started (-1 before the first)."""
    now = time.time() if now is None else now
    idx = -1
    for i, st in enumerate(plan.get("stages", [])):
        if float(st.get("start", 0)) <= now:
            idx = i
    return idx


def in_stage(doc: Mapping[str, Any], device_id: str, release: str, now: float | None = None) -> bool:
    """True when `device_id` may install `release` now. `doc` is the signed rollout document
    {"plans": {release: plan}} (or one plan). With no rollout document every signed release may be taken;
    once ops use rollouts, a release without a plan is held back, and a halted, paused or aborted plan stops
    its release everywhere."""
    if not doc:
        return True
    plan = doc["plans"].get(release) if "plans" in doc else (doc if doc.get("release") == release else None)
    if plan is None:
        return "plans" not in doc
    if plan.get("state", "running") != "running":
        return False
    idx = current_stage(plan, now)
    if idx < 0:
        return False
    return position(device_id, release) < float(plan["stages"][idx]["percent"]) / 100


# A device's umbra.ota/1 result -> what it means for the rollout; anything else is refused.
OUTCOMES = {"installed": "installed", "committed": "healthy", "rolled_back": "failed", "failed": "failed",
            "refused": "failed", "held": "pending"}  # held: the device's time was not trusted, nothing tried
STATES = ("running", "paused", "halted", "aborted")


def outcome(result: str) -> str:
    """"installed", "healthy" or "failed" for a reported result; OtaError for one this project never sends."""
    try:
        return OUTCOMES[result]
    except (KeyError, TypeError):
        raise OtaError(f"unknown install result {result!r}; one of {', '.join(OUTCOMES)}") from None


def transition(plan: Mapping[str, Any], state: str) -> dict:
    """The plan in `state`. An aborted rollout stays aborted: publish a new release to go again."""
    if state not in STATES:
        raise OtaError(f"unknown rollout state {state!r}; one of {', '.join(STATES)}")
    if plan.get("state") == "aborted" and state != "aborted":
        raise OtaError(f"the rollout of {plan.get('release')} was aborted, and an abort is final: "
                       "build and stage a new release instead")
    out = {**plan, "state": state}
    if state == "running":
        out.pop("reason", None)
    return out


def make_plan(release: str, percents: Iterable[float], starts: Iterable[float], budgets: Iterable[float]) -> dict:
    stages = [{"percent": float(p), "start": float(s), "failure_budget": float(b)}
              for p, s, b in zip(percents, starts, budgets, strict=True)]
    last, begun = 0.0, -math.inf
    for st in stages:
        if not (math.isfinite(st["start"]) and begun <= st["start"]):
            raise OtaError("stage starts must be finite times in order (--every-hours: a finite number, 0 or more)")
        begun = st["start"]
        if not last <= st["percent"] <= 100:
            raise OtaError("stage percents must rise and stay within 0..100")
        if not 0 <= st["failure_budget"] <= 1:
            raise OtaError("failure_budget is a share of the stage's devices, 0..1")
        last = st["percent"]
    return {"release": release, "stages": stages, "state": "running"}


@dataclass(frozen=True, slots=True)
class StageStatus:
    stage: int
    updated: int
    failed: int
    members: int

    @property
    def failure_share(self) -> float:
        return self.failed / self.updated if self.updated else 0.0


def evaluate(plan: dict, reports: Mapping[str, str], fleet: Iterable[str],
             now: float | None = None) -> tuple[dict, StageStatus]:
    """reports: device id -> its latest umbra.ota/1 result ("installed" is not an outcome yet; an unknown
    result raises OtaError). Halts the plan when the running stage's failures pass its budget; returns the
    (possibly updated) plan and the stage's figures."""
    kinds = {d: outcome(r) for d, r in reports.items()}
    idx = current_stage(plan, now)
    if idx < 0:
        return plan, StageStatus(-1, 0, 0, 0)
    pct = float(plan["stages"][idx]["percent"]) / 100
    members = [d for d in fleet if position(d, plan["release"]) < pct]
    done = [kinds[d] for d in members if kinds.get(d, "installed") not in ("installed", "pending")]
    failed = sum(1 for k in done if k == "failed")
    status = StageStatus(idx, len(done), failed, len(members))
    budget = float(plan["stages"][idx]["failure_budget"])
    if plan.get("state") == "running" and done and failed / max(len(members), 1) > budget:
        plan = {**plan, "state": "halted",
                "reason": f"stage {idx + 1} ({plan['stages'][idx]['percent']}%): {failed} of {len(members)} failed, "
                          f"over its budget of {budget:.0%}"}
    return plan, status


@dataclass(frozen=True, slots=True)
class StageView:
    """One stage's devices (a stage holds every device of the stages before it) by where they are."""

    stage: int
    percent: float
    start: float
    started: bool
    installed: tuple[str, ...]
    healthy: tuple[str, ...]
    failed: tuple[str, ...]
    pending: tuple[str, ...]

    @property
    def members(self) -> int:
        return len(self.installed) + len(self.healthy) + len(self.failed) + len(self.pending)

    def over_budget(self, budget: float) -> bool:
        return bool(self.failed) and len(self.failed) / max(self.members, 1) > budget


def stage_views(plan: Mapping[str, Any], reports: Mapping[str, str], fleet: Iterable[str],
                now: float | None = None) -> list[StageView]:
    kinds = {d: outcome(r) for d, r in reports.items()}
    now = time.time() if now is None else now
    ranked = sorted((position(d, plan["release"]), d) for d in set(fleet))
    views = []
    for i, st in enumerate(plan.get("stages", [])):
        pct = float(st["percent"]) / 100
        groups: dict[str, list[str]] = {"installed": [], "healthy": [], "failed": [], "pending": []}
        for pos, d in ranked:
            if pos >= pct:
                break
            groups[kinds.get(d, "pending")].append(d)
        views.append(StageView(i, float(st["percent"]), float(st.get("start", 0)), float(st.get("start", 0)) <= now,
                               *(tuple(groups[k]) for k in ("installed", "healthy", "failed", "pending"))))
    return views
