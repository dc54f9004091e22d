"""Compliance: data-subject requests answered from what the device really holds (the DPIA is in
firmware.privacy.dpia).

What the device holds, by design: no identities, no face templates, no stored embeddings (flow-group
embeddings live in memory for one window), no frames (buffers zeroed each tick). It holds, until uploaded:
quantized tracks under pseudonyms whose key lives only in memory and rotates (profile `tracks`), released
aggregates, flow-group counts, demographic histograms, de-identified sample images (every person and face
blurred), and the audit log.
So a request can only be answered by time range (and zone): the device cannot find "the records of this
person", and says so. Erasure deletes everything held in the range through the injected store (the outbox).

The store is injected: a small Protocol the outbox implements.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from firmware.errors import ComplianceError
from firmware.privacy.audit import AuditSink

KINDS = ("sample", "track", "aggregate", "flowgroups", "demographics")
MAX_RANGE_S = 31 * 86400


@dataclass(frozen=True, slots=True)
class HeldItem:
    """One record the device holds (not yet uploaded): its kind, time, zone (if any) and size."""

    kind: str
    t: float
    zone: str | None = None
    size_bytes: int = 0


class HeldStore(Protocol):
    """What compliance needs from the outbox."""

    def held(self, start: float, end: float) -> Iterable[HeldItem]:
        """Every record held with start <= t < end."""
        ...

    def erase(self, start: float, end: float, kinds: Sequence[str]) -> int:
        """Deletes the records of `kinds` with start <= t < end; returns how many."""
        ...



@dataclass(frozen=True, slots=True)
class SubjectRequest:
    """`kind`: "access" or "erasure"; the range [start, end) in Unix seconds; optional zone (access only
    narrows the report; erasure always covers the whole range, since records cannot be tied to a person)."""

    request_id: str
    kind: str
    start: float
    end: float
    zone: str | None = None
    kinds: tuple[str, ...] = KINDS

    def validate(self) -> None:
        if self.kind not in ("access", "erasure"):
            raise ComplianceError(f"request {self.request_id}: kind must be 'access' or 'erasure'")
        if not self.end > self.start or self.end - self.start > MAX_RANGE_S:
            raise ComplianceError(f"request {self.request_id}: the range must be non-empty and at most 31 days")
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ComplianceError(f"request {self.request_id}: unknown kinds {sorted(unknown)}; known {KINDS}")


@dataclass(frozen=True, slots=True)
class RequestAnswer:
    request_id: str
    kind: str
    start: float
    end: float
    zone: str | None
    held: Mapping[str, int]  # kind -> records held in range (access) or erased (erasure)
    by_zone: Mapping[str, int] = field(default_factory=dict)
    sample_times: tuple[int, ...] = ()
    statement: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"schema": "umbra.dsr-answer/1", "request_id": self.request_id, "kind": self.kind,
                "start": self.start, "end": self.end, "zone": self.zone, "held": dict(self.held),
                "by_zone": dict(self.by_zone), "sample_times": list(self.sample_times), "statement": self.statement}

    def to_markdown(self) -> str:
        verb = "held" if self.kind == "access" else "erased"
        lines = [f"# Data-subject {self.kind} request {self.request_id}", "",
                 f"Time range: {_iso(self.start)} to {_iso(self.end)}" + (f", zone {self.zone}" if self.zone else ""),
                 "", f"| record kind | records {verb} |", "| --- | --- |"]
        lines += [f"| {k} | {n} |" for k, n in self.held.items()]
        if self.sample_times:
            lines += ["", "De-identified sample images (taken at): " + ", ".join(_iso(t) for t in self.sample_times)]
        return "\n".join(lines + ["", self.statement, ""])


STATEMENT = (
    "This device holds no identities, face templates, stored appearance embeddings or raw images. Movement "
    "records carry pseudonyms made with a key that exists only in memory and changes every {rotate}; they "
    "cannot be linked to a named person, by us or by the device. Sample images have every detected person "
    "and face blurred. The device therefore cannot single out your records: it reports (or erases) "
    "everything it holds for the time range{zone}. Records already uploaded are held by the operator's "
    "cloud service and must be requested there."
)


def answer_access(req: SubjectRequest, store: HeldStore, audit: AuditSink, now: float,
                  rotate_s: float = 3600.0) -> RequestAnswer:
    """What the device holds in the range (counts per kind and zone, sample times). Audited."""
    req.validate()
    if req.kind != "access":
        raise ComplianceError(f"request {req.request_id} is a {req.kind} request, not access")
    items = [i for i in store.held(req.start, req.end)
             if i.kind in req.kinds and (req.zone is None or i.zone in (req.zone, None))]
    held = {k: sum(1 for i in items if i.kind == k) for k in req.kinds}
    by_zone: dict[str, int] = {}
    for i in items:
        by_zone[i.zone or "-"] = by_zone.get(i.zone or "-", 0) + 1
    samples = tuple(sorted(int(i.t) for i in items if i.kind == "sample"))
    answer = RequestAnswer(req.request_id, "access", req.start, req.end, req.zone, held, by_zone, samples,
                           _statement(rotate_s, req.zone))
    audit.append("dsr_access", now, request_id=req.request_id, start=req.start, end=req.end, zone=req.zone,
                 held=held)
    return answer


def answer_erasure(req: SubjectRequest, store: HeldStore, audit: AuditSink, now: float,
                   rotate_s: float = 3600.0) -> RequestAnswer:
    """Erases every record of `req.kinds` held in the range (all zones: a record cannot be tied to a
    person, so the whole range goes). Audited, with the counts."""
    req.validate()
    if req.kind != "erasure":
        raise ComplianceError(f"request {req.request_id} is a {req.kind} request, not erasure")
    erased = {k: store.erase(req.start, req.end, (k,)) for k in req.kinds}
    audit.append("dsr_erasure", now, request_id=req.request_id, start=req.start, end=req.end, erased=erased)
    return RequestAnswer(req.request_id, "erasure", req.start, req.end, None, erased,
                         statement=_statement(rotate_s, None))


def _statement(rotate_s: float, zone: str | None) -> str:
    rotate = f"{rotate_s / 3600:g} hour(s)" if rotate_s >= 3600 else f"{rotate_s:g} seconds"
    return STATEMENT.format(rotate=rotate, zone=f" (zone {zone})" if zone else "")


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


_MISSING = object()


