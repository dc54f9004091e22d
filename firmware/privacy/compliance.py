"""Compliance: data-subject requests answered from what the device really holds, and a DPIA generated
from the running configuration.

What the device holds, by design: no identities, no face templates, no stored embeddings (flow-group
embeddings live in memory for one window), no frames (buffers zeroed each tick). It holds, until uploaded:
quantized tracks under pseudonyms whose key lives only in memory and rotates (profile `tracks`), released
aggregates, flow-group counts, de-identified sample images (every person and face blurred), and the audit log.
So a request can only be answered by time range (and zone): the device cannot find "the records of this
person", and says so. Erasure deletes everything held in the range through the injected store (the outbox).

Interfaces are injected: the store is a small Protocol, the config any mapping or object with attributes
(the integrator's `UmbraConfig` or a plain dict of its TOML tables).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from firmware.errors import FirmwareError
from firmware.privacy.audit import AuditSink

KINDS = ("sample", "track", "aggregate", "flowgroups")
MAX_RANGE_S = 31 * 86400


class ComplianceError(FirmwareError):
    """A data-subject request is malformed (bad range, unknown kind)."""


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


# ---------------------------------------------------------------- DPIA

_MISSING = object()


def lookup(config: Any, *paths: str, default: Any = None) -> Any:
    """The first of the dotted `paths` found in `config` (mappings and attributes both work)."""
    for path in paths:
        node: Any = config
        for part in path.split("."):
            if isinstance(node, Mapping):
                node = node.get(part, _MISSING)
            else:
                node = getattr(node, part, _MISSING)
            if node is _MISSING:
                break
        if node is not _MISSING:
            return node
    return default


def _fingerprint(b64: str) -> str:
    return hashlib.sha256(b64.encode()).hexdigest()[:16] if b64 else "none configured"


def _facts(config: Any, grants: Sequence[Any]) -> dict[str, Any]:
    """The configuration values a DPIA states, whatever the section names of the running config."""
    f = {
        "device": lookup(config, "device.id", default="(unnamed)"),
        "profile": lookup(config, "privacy.profile", "analytics.profile", "profile", default="tracks"),
        "k": lookup(config, "analytics.k", "privacy.k", "aggregates.k"),
        "epsilon": lookup(config, "analytics.epsilon", "privacy.epsilon", "aggregates.epsilon"),
        "epsilon_day": lookup(config, "analytics.epsilon_per_day", "budget.epsilon_per_day",
                              "privacy.epsilon_per_day", "analytics.daily_epsilon", "privacy.daily_epsilon"),
        "window_s": lookup(config, "analytics.window_s", "aggregates.window_s", "privacy.window_s", default=900),
        "rotate_s": lookup(config, "pseudonym.rotate_s", default=3600.0),
        "grid_m": lookup(config, "quantize.grid_m"),
        "bucket_s": lookup(config, "quantize.time_bucket_s"),
        "samples_on": lookup(config, "samples.enabled", default=True),
        "sample_rate": lookup(config, "samples.rate_per_hour", default=1),
        "sample_days": lookup(config, "samples.retention_days", default=30),
        "jpeg_quality": lookup(config, "samples.jpeg_quality", default=50),
        "customer_key": lookup(config, "authorization.customer_public_key", default=""),
        "max_rate": lookup(config, "authorization.max_rate_per_hour", default=12),
        "flow_on": lookup(config, "flowgroups.enabled", default=False),
        "flow_groups": lookup(config, "flowgroups.groups", default=1000),
        "flow_min": lookup(config, "flowgroups.min_count", default=5),
        "flow_window_s": lookup(config, "flowgroups.window_s", default=900),
        "flow_period_s": lookup(config, "flowgroups.period_s", default=86400),
        "outbox_days": lookup(config, "outbox.retention_days", "outbox.max_age_days", "uploader.retention_days"),
        "grants": list(grants),
    }
    if not f["epsilon_day"] and f["epsilon"] and f["window_s"]:  # 0 or unset: the accountant derives it
        windows = 86_400 // int(f["window_s"])
        f["epsilon_day"] = f"{float(f['epsilon']) * windows:g} (epsilon times the {windows} windows of a day)"
    return f


def _v(value: Any) -> str:
    return "(not configured)" if value is None else str(value)


def _leaves(f: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what leaves, how it is protected) for the running profile."""
    rows = []
    if f["profile"] == "tracks":
        rows.append(("quantized tracks (pseudonym, grid cell, time bucket, size class, heading, zone)",
                     f"pseudonym key in memory only, rotated every {f['rotate_s']:g} s; cells of "
                     f"{_v(f['grid_m'])} m, time buckets of {_v(f['bucket_s'])} s; at most 2 records per "
                     "track per second"))
    rows.append(("aggregates per zone and window (occupancy, line flow, dwell histogram, heatmap)",
                 f"k-anonymity threshold k = {_v(f['k'])} on noised counts; "
                 f"differential privacy epsilon = {_v(f['epsilon'])} per release, "
                 f"{_v(f['epsilon_day'])} per day per stream; "
                 f"windows of {f['window_s']} s"))
    if f["samples_on"]:
        rows.append((f"sample images, {f['sample_rate']} per hour at a random instant (640x480 JPEG "
                     f"q{f['jpeg_quality']})", "every detected person and face blurred before encoding; "
                     "higher rates only with a customer-signed, expiring authorization; every use audited"))
    if f["flow_on"]:
        rows.append((f"customer-flow group counts ({f['flow_groups']} groups) per zone and window of "
                     f"{f['flow_window_s']} s",
                     f"noisy locality-sensitive hash of an appearance embedding that never leaves memory; every "
                     f"group padded to at least {f['flow_min']} with fictitious members, plus decoy groups; "
                     f"hyperplanes re-drawn every {f['flow_period_s']} s and at every restart"))
    rows.append(("audit log summaries (on request)", "hash-chained, contains no pixels, boxes or identities"))
    return rows


def generate_dpia(config: Any, *, grants: Sequence[Any] = (), now: float | None = None) -> str:
    """A data-protection impact assessment (Markdown) stating what the running configuration does.
    `grants`: the sampling authorizations in force (firmware.samples.authorization.Grant)."""
    f = _facts(config, grants)
    when = _iso(now) if now is not None else "(time not given)"
    scope = ("quantized pseudonymous tracks and aggregates leave" if f["profile"] == "tracks"
             else "only aggregates leave")
    out = [f"# Data-protection impact assessment: Umbra sensor {f['device']}", "",
           f"Generated from the running configuration at {when}. Privacy profile: **{f['profile']}** "
           f"({scope}).",
           "", "## 1. Processing", "",
           "A camera sees a public or retail space. On the device, each frame is analysed for people (boxes "
           "only), tracked on the ground plane and quantized; the frame buffer is zeroed in the same tick. "
           "No frame is stored or transmitted. Purpose: counting people, flows and dwell times per zone.", "",
           "## 2. What leaves the device", "", "| data | protection |", "| --- | --- |"]
    out += [f"| {a} | {b} |" for a, b in _leaves(f)]
    out += ["", "## 3. What stays on the device, and for how long", "",
            "| data | retention |", "| --- | --- |",
            "| frames | zeroed in the tick that captured them (never written) |",
            f"| pseudonym key | memory only, replaced every {f['rotate_s']:g} s |",
            "| flow-group embeddings | memory only, one window |",
            *(["| flow-group population statistics (mean and top principal directions of a period's crop "
               "embeddings, no "
               "identity) | memory only: gathered over one period, the basis fitted from them used through the "
               "next |"] if f["flow_on"] else []),
            f"| de-identified samples awaiting upload | deleted after upload, at most {f['sample_days']} days |",
            "| records awaiting upload (outbox) | until acknowledged by the cloud"
            + (f", at most {f['outbox_days']} days" if f["outbox_days"] else "") + " |",
            "| privacy audit log | on the device, hash-chained; no personal data |", "",
            "## 4. Sampling authorizations", "",
            f"Customer key fingerprint: {_fingerprint(f['customer_key'])}; most any token may grant: "
            f"{f['max_rate']} per hour."]
    if f["grants"]:
        out += [f"- token {g.token_id}: {g.rate_per_hour} per hour, {_iso(g.not_before)} to {_iso(g.expires)}"
                for g in f["grants"]]
    else:
        out.append("- none in force: samples at the default rate only.")
    out += ["", "## 5. Risks and measures", "", "| risk | measure |", "| --- | --- |",
            "| identification from images | no images leave except blurred samples; faces and persons blurred; "
            "re-detection tested on reference photos |",
            "| tracking a person over days | pseudonym keys rotate and are never stored; flow-group hyperplanes "
            "re-seeded per period |",
            "| singling out from aggregates | contribution bounding, noised k-threshold, differential privacy "
            "with a daily budget that survives restarts |",
            "| tampering with the record of what was released | hash-chained audit log with anchored head, "
            "`umbra audit verify` |", "",
            "## 6. Data-subject rights", "",
            "Access and erasure requests are answered by time range (and zone), because the device holds "
            "nothing that identifies a person; erasure removes everything held in the range. Uploaded data "
            "is handled by the operator's cloud service.", ""]
    return "\n".join(out)


# ---------------------------------------------------------------- the `umbra privacy` command


def add_parser(parser: Any) -> None:
    """Fills the `umbra privacy` parser: the DPIA of a config, and data-subject requests answered from the
    device's outbox (what it really holds), each audited in the config's audit log."""
    from pathlib import Path

    sub = parser.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    dpia = sub.add_parser("dpia", help="the data-protection impact assessment of a config (Markdown)")
    dpia.add_argument("--config", required=True, type=Path)
    dpia.set_defaults(func=_cmd_dpia)
    for kind in ("access", "erasure"):
        p = sub.add_parser(kind, help=f"answer a data-subject {kind} request from what the device holds")
        p.add_argument("--config", required=True, type=Path)
        p.add_argument("--id", required=True, help="the request's reference")
        p.add_argument("--start", required=True, type=float, help="range start, Unix seconds")
        p.add_argument("--end", required=True, type=float, help="range end (exclusive), Unix seconds")
        if kind == "access":
            p.add_argument("--zone", default=None)
        p.add_argument("--json", action="store_true", help="the answer as JSON instead of Markdown")
        p.set_defaults(func=_cmd_request, kind=kind)


def _cmd_dpia(args: Any) -> int:
    from firmware.config import load
    from firmware.privacy.audit import NoAudit
    from firmware.samples.authorization import AuthorizationRefused
    from firmware.samples.grantstore import authorizer_for, store_for

    cfg = load(args.config)
    grants = []
    if cfg.authorization.customer_public_key:  # the stored tokens that verify now (a look: nothing audited)
        store = store_for(cfg, args.config.resolve().parent)
        check = authorizer_for(cfg, store, NoAudit())
        for token in store.read().tokens:
            try:
                grants.append(check.verify(token, time.time(), accept_future=True))
            except AuthorizationRefused:
                continue
    print(generate_dpia(cfg, grants=grants, now=time.time()))
    return 0


def _cmd_request(args: Any) -> int:
    import json

    from firmware.config import load, resolve_path
    from firmware.sync.outbox import Outbox
    from trust.devicekey import audit_log_for

    cfg = load(args.config)
    base = args.config.resolve().parent
    if not cfg.privacy.audit_file:
        raise ComplianceError("[privacy] audit_file is empty: data-subject requests are audited, so set it")
    audit = audit_log_for(cfg, base)  # signed with the device key like umbra run's, so the head stays signed
    req = SubjectRequest(args.id, args.kind, args.start, args.end, getattr(args, "zone", None))
    with Outbox(replace(cfg.sync.outbox, path=str(resolve_path(cfg.sync.outbox.path, base)))) as store:
        answer = (answer_access if args.kind == "access" else answer_erasure)(
            req, store, audit, time.time(), cfg.pseudonym.rotate_s)
    print(json.dumps(answer.to_json(), indent=1) if args.json else answer.to_markdown())
    return 0
