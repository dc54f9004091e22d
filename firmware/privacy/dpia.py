"""The data-protection impact assessment (DPIA) of a running configuration.

Every value the DPIA states is a `Fact` read from the typed config (`UmbraConfig`), carrying the dotted key it
came from, so a test can check each statement against the config and no statement rests on a guessed key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from firmware.config import UmbraConfig
from firmware.config.privacy import STREAMS
from firmware.privacy.continual import level_scales
from firmware.privacy.dp import exact


class GrantView(Protocol):
    """What the DPIA states of a sampling authorization in force (firmware.samples.authorization.Grant)."""

    @property
    def token_id(self) -> str: ...
    @property
    def rate_per_hour(self) -> int: ...
    @property
    def not_before(self) -> float: ...
    @property
    def expires(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Fact:
    """One configured value the DPIA states: `key` is its dotted path in the config ("" when derived)."""

    key: str
    value: Any


def _get(cfg: UmbraConfig, key: str) -> Fact:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return Fact(key, node)


FACT_KEYS = {
    "device": "device.id",
    "profile": "privacy.profile",
    "k": "privacy.k",
    "epsilon": "privacy.epsilon",
    "daily_epsilon": "privacy.daily_epsilon",
    "window_s": "privacy.window_s",
    "rotate_s": "pseudonym.rotate_s",
    "grid_m": "quantize.grid_m",
    "bucket_s": "quantize.time_bucket_s",
    "lines": "geometry.lines",
    "hold_s": "geometry.count_hold_s",
    "join_s": "geometry.count_join_s",
    "samples_on": "samples.enabled",
    "sample_rate": "samples.rate_per_hour",
    "sample_days": "samples.retention_days",
    "jpeg_quality": "samples.jpeg_quality",
    "customer_key": "authorization.customer_public_key",
    "max_rate": "authorization.max_rate_per_hour",
    "flow_on": "flowgroups.enabled",
    "flow_groups": "flowgroups.groups",
    "flow_min": "flowgroups.min_count",
    "flow_window_s": "flowgroups.window_s",
    "flow_period_s": "flowgroups.period_s",
    "demo_on": "demographics.enabled",
    "demo_window_s": "demographics.window_s",
    "demo_k": "demographics.k",
    "demo_epsilon": "demographics.epsilon",
    "demo_daily_epsilon": "demographics.daily_epsilon",
    "demo_crops": "demographics.crops_per_track",
    "demo_chains": "demographics.max_chains_per_person",
    "demo_cells": "demographics.suppress_cells",
    "audit_file": "privacy.audit_file",
    "tree_on": "privacy.tree_enabled",
    "tree_step_s": "privacy.tree_step_s",
    "tree_epsilon": "privacy.tree_epsilon",
    "tree_cap": "privacy.tree_crossing_cap",
    "tree_weight": "privacy.tree_level_weight",
    "max_zones": "privacy.max_zones",
    "presence_cap_s": "privacy.presence_cap_s",
    "occupancy_split": "privacy.occupancy_split",
    "crossing_cap": "privacy.crossing_cap",
    "heat_cap_s": "privacy.heat_cap_s",
}


def facts(cfg: UmbraConfig) -> dict[str, Fact]:
    """The configured values the DPIA states, each with the key it was read from."""
    out = {name: _get(cfg, key) for name, key in FACT_KEYS.items()}
    budgets = cfg.privacy.budgets()
    out["epsilon_day"] = Fact("", {s: float(b) for s, b in budgets.items()})
    out["demo_epsilon_day"] = Fact("", float(cfg.demographics.daily_budget()))
    return out


def _fingerprint(b64: str) -> str:
    return hashlib.sha256(b64.encode()).hexdigest()[:16] if b64 else "none configured"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _daily(f: dict[str, Fact]) -> str:
    per_day = f["epsilon_day"].value[STREAMS[0]]
    if f["daily_epsilon"].value:
        return f"{per_day:g}"
    windows = 86_400 // int(f["window_s"].value)
    return f"{per_day:g} (epsilon times the {windows} windows of a day)"


def _leaves(f: dict[str, Fact]) -> list[tuple[str, str]]:
    """(what leaves, how it is protected) for the running profile."""
    v = {name: fact.value for name, fact in f.items()}
    rows = []
    if v["profile"] == "tracks":
        rows.append(("quantized tracks (pseudonym, grid cell, time bucket, size class, heading, zone, "
                     "count-line crossings)",
                     f"pseudonym key in memory only, rotated every {v['rotate_s']:g} s; cells of "
                     f"{v['grid_m']} m, time buckets of {v['bucket_s']} s; at most one record per "
                     "pseudonym per bucket (its most frequent cell, size, heading and zone), released "
                     "after the bucket ends, sorted by pseudonym: no order, count or time inside a bucket; "
                     + _crossings_text(v)))
    rows.append(("aggregates per zone and window (occupancy, line flow, dwell histogram, heatmap)",
                 f"k-anonymity threshold k = {v['k']} on noised counts; "
                 f"differential privacy epsilon = {v['epsilon']} per release, "
                 f"{_daily(f)} per day per stream; "
                 f"windows of {v['window_s']} s"))
    if v["samples_on"]:
        rows.append((f"sample images, {v['sample_rate']} per hour at a random instant (640x480 JPEG "
                     f"q{v['jpeg_quality']})", "every detected person and face blurred before encoding; "
                     "higher rates only with a customer-signed, expiring authorization; every use audited"))
    if v["flow_on"]:
        rows.append((f"customer-flow group counts ({v['flow_groups']} groups) per zone and window of "
                     f"{v['flow_window_s']} s",
                     f"noisy locality-sensitive hash of an appearance embedding that never leaves memory; every "
                     f"group padded to at least {v['flow_min']} with fictitious members, plus decoy groups; "
                     f"hyperplanes re-drawn every {v['flow_period_s']} s and at every restart"))
    if v["demo_on"]:
        rows.append(_demographics_row(v))
    rows.append(("audit log summaries (on request)", "hash-chained, contains no pixels, boxes or identities"))
    return rows


def _demographics_row(v: dict[str, Any]) -> tuple[str, str]:
    windows = 86_400 // int(v["demo_window_s"])
    day = f"{v['demo_epsilon_day']:g}" + ("" if v["demo_daily_epsilon"] else
                                          f" (epsilon times the {windows} windows)")
    return ((f"demographics: a histogram of estimated age band (0-17, 18-27, 28-37, 38-47, 48-57, 58+) by "
             f"estimated gender (female, male) per zone and window of {v['demo_window_s']} s; no mood or other "
             "attribute (no model here)"),
            (f"estimated on the device from up to {v['demo_crops']} face crops per chain and window (dlib's "
             "age and gender networks), zeroed in the tick; no estimate leaves alone, is stored or logged: each "
             "chain of tracks counts once, in one zone, only inside the window's histogram; "
             + _chains_guarantee(v) + "; discrete "
             f"Laplace noise of scale {v['demo_chains']} / epsilon a cell, epsilon = {v['demo_epsilon']} per "
             f"window (all zones), {day} per day on the "
             f"`demographics` stream of the same budget; a zone released only when its noised total passes "
             f"the private threshold for k = {v['demo_k']}"
             + ("; each cell also withheld below it" if v["demo_cells"] else "")
             + "; no pseudonym, flow group or time finer than the window"))


def _sensitivities(v: dict[str, Any]) -> str:
    """What one person can move in one window, stream by stream, with the reason (the proof sketch)."""
    mean, peak = v["occupancy_split"]
    return (f"occupancy mean: at most the window's presence cap c (at most {v['presence_cap_s']} s, never more "
            "than the window's S samples) people-seconds over all zones together, as a person adds at most c of "
            "their 1 Hz samples in all their zones, so the released mean (people-seconds / S) moves by at most "
            f"c / S <= 1 person per window, not per sample; epsilon x {mean:g} goes to it, epsilon x {peak:g} "
            f"to the peak, which moves by at most 1 in each of at most {v['max_zones']} zones; c is picked from "
            "the released (noised) dwell histogram, post-processing, so by adaptive composition the bound holds "
            "for whichever c is picked; dwell histogram (also the visitor counts, their sum): a person is in "
            f"one bucket of each of at most {v['max_zones']} zones, sensitivity {v['max_zones']}; buckets "
            "beyond the window's samples are empty whatever the data and released as 0; line flow: at most "
            f"{v['crossing_cap']} crossings a person; heatmap: at most {v['heat_cap_s']} people-seconds a "
            "person; the site total and the truncation estimate added back to the mean are sums of released "
            "values (no epsilon)")


CHAINS_MEASURED = 6  # the default max_chains_per_person, and what bench.demographics_chains measured against it
CHAINS_ABOVE = "0 to 1.6%"  # of the left-out sequences' person-windows went past it (each fold's own m: 6)
CHAINS_MOST = 2.0  # the largest m'/m there


def _chains_guarantee(v: dict[str, Any]) -> str:
    """The contribution bound in words: what the device joins, what it cannot, the epsilon of each case."""
    m = int(v["demo_chains"])
    measured = (f"on the bench's sequences with ground truth, {CHAINS_ABOVE} of a left-out sequence's "
                f"person-windows went past {m} (at most {CHAINS_MOST:g} m: epsilon "
                f"{CHAINS_MOST * float(v['demo_epsilon']):g}), "
                "bench.demographics_chains" if m == CHAINS_MEASURED else
                "how often a person forms more: bench.demographics_chains (measured against 6)")
    return (f"the device cannot tell people apart beyond its chains (no appearance is kept): a track lost and born "
            f"again within {v['join_s']:g} s near where it ended ([geometry] count_join_s, the line counter's join "
            "rule) stays one chain, but a person lost for longer, or who leaves and comes back, forms another and "
            "counts again, and a chain shared with another person (an identity switch) counts twice; the noise is "
            f"scaled to at most {m} chains a person (max_chains_per_person, L1 sensitivity {m}): epsilon holds for a "
            f"person who forms at most {m}, one who forms m' > {m} is protected at epsilon m'/{m} ({measured})")


def composition(f: dict[str, Fact]) -> list[str]:
    """The composition table: per released stream, the unit one release protects, its epsilon and what a
    day of them adds up to (sequential composition in the accountant, per stream and UTC day)."""
    v = {name: fact.value for name, fact in f.items()}
    rows = ["| aggregates (occupancy, flow, dwell, heatmap) | one window of one person, bounded (zones, "
            f"presence, crossings, heat) | {v['epsilon']} per window and stream | {_daily(f)} per stream "
            "(discrete Laplace, basic composition) |",
            "| aggregates: each statistic's L1 sensitivity (one person added or removed) | "
            + _sensitivities(v) + " | the noise scale of each part is its sensitivity / its epsilon | "
            "(tested as a property: `tests/firmware/privacy/test_analytics_sensitivity.py`) |"]
    if v["tree_on"]:
        steps = 86_400 // int(v["tree_step_s"])
        lv = max(1, steps.bit_length())
        weight = int(v["tree_weight"])
        scales = level_scales(int(v["tree_cap"]), exact(v["tree_epsilon"]), steps, weight)
        split = (f"noised blocks of scale sensitivity x {lv} / epsilon" if weight == 0 else
                 f"noised blocks, one per level, the epsilon split over the levels (level weight {weight}: "
                 f"scales {float(scales[0]):g} to {float(scales[-1]):g} at {v['tree_cap']} crossings, the "
                 "first minutes' blocks the least noised)")
        rows.append(f"| running totals of the day (flow_total, visitors_total), binary-tree mechanism | one "
                    f"step of {v['tree_step_s']} s of one person (at most {v['tree_cap']} crossings; a visitor "
                    f"in at most {v['max_zones']} zones a day) | {v['tree_epsilon']} per step and stream: the "
                    f"step is in at most {lv} {split}; the sum over the levels of sensitivity / scale is at most "
                    f"epsilon, exactly (basic composition of the blocks holding the step) | "
                    f"{f['epsilon_day'].value.get('flow_total', 0):g} per stream ({steps} steps; each block "
                    "noised once, kept durably, never re-drawn; a state file lost, damaged or rolled back "
                    "suspends that day's running totals, audited, rather than restart them with fresh noise; a "
                    "reader may combine them with the per-minute line_flow releases by inverse variance, and "
                    "make the day's totals non-decreasing, `firmware.privacy.combine`: post-processing of "
                    "released values, no epsilon spent and the guarantee unchanged; a reader using both "
                    "streams sees a person's step under the flow and flow_total budgets together) |")
    if v["demo_on"]:
        m = int(v["demo_chains"])
        rows.append(f"| demographics histograms | one person in one window who forms at most {m} chains of tracks "
                    f"(sensitivity {m}); one who forms m' > {m} is protected at epsilon m'/{m} (group privacy) | "
                    f"{v['demo_epsilon']} per window | {v['demo_epsilon_day']:g} on the demographics stream |")
    return rows


def _kept(f: dict[str, Fact]) -> list[str]:
    v = {name: fact.value for name, fact in f.items()}
    rows = ["| frames | zeroed in the tick that captured them (never written) |",
            f"| pseudonym key | memory only, replaced every {v['rotate_s']:g} s |",
            "| flow-group embeddings | memory only, one window |"]
    if v["demo_on"]:
        rows.append("| demographic estimates (per person: mean estimated age and gender probability of its "
                    "crops) | memory only, one window, zeroed when the histogram is made; the tracks' slots "
                    "(which chain has counted) cleared then, their last ground points kept only while they "
                    "may be joined |")
    if v["flow_on"]:
        rows.append("| flow-group population statistics (mean and top principal directions of a period's crop "
                    "embeddings, no identity) | memory only: gathered over one period, the basis fitted from "
                    "them used through the next |")
    rows += [f"| de-identified samples awaiting upload | deleted after upload, at most {v['sample_days']} days |",
             "| records awaiting upload (outbox) | until acknowledged by the cloud |",
             "| privacy audit log | on the device, hash-chained; no personal data |"
             if v["audit_file"] else "| privacy audit log | none: `[privacy] audit_file` is empty |"]
    return rows


def _crossings_text(v: dict[str, Any]) -> str:
    """What the track records' `crossings` field reveals under the running config, and what it does not."""
    lines = list(v["lines"])
    if not lines:
        return "no count lines are configured, so no record carries a crossing"
    names = ", ".join(ln.name for ln in lines)
    return (f"each record also lists the crossings of the {len(lines)} count line(s) ({names}) that the device "
            f"confirmed for that pseudonym in that bucket (held {v['hold_s']:g} s on the new side): which line, "
            f"which direction and how many times within the {v['bucket_s']} s bucket, sorted by line and "
            "direction. It reveals that this pseudonym passed that line that way in that bucket, which its cells "
            "in consecutive buckets mostly showed already and which the line-flow aggregates release as counts; "
            "it reveals nothing finer: not the order of two crossings, not when within the bucket, not where "
            "along the line, no position but the record's cell. A pseudonym credited with a crossing in a bucket "
            "has a record there even if no emit tick sampled it; a crossing confirmed after its track was lost "
            "goes in a record made from the track's last sighting, within the hold")


RISKS = [
    "| identification from images | no images leave except blurred samples; faces and persons blurred; "
    "re-detection tested on reference photos |",
    "| tracking a person over days | pseudonym keys rotate and are never stored; flow-group hyperplanes "
    "re-seeded per period |",
    "| singling out from aggregates | contribution bounding, noised k-threshold, differential privacy "
    "with a daily budget that survives restarts |",
    "| tampering with the record of what was released | hash-chained audit log with anchored head, "
    "`umbra audit verify` |",
    "| a device's files rolled back to spend a day's budget again | every spend chained into the signed audit "
    "log, a budget store behind it or a clock gone back refused and audited; the cloud keeps each device's head "
    "counter and its own epsilon ledger, and flags a log gone back, a counter signed over another log, a window "
    "released twice and a day past the fleet's daily epsilon. Not seen: a fork written offline past the head the "
    "cloud holds with the outbox rolled back too (its first releases never reach the cloud, which still receives "
    "one budget a day, but whoever read the outbox off the disk between the forks holds both) |",
]
RIGHTS = ("Access and erasure requests are answered by time range (and zone), because the device holds "
          "nothing that identifies a person; erasure removes everything held in the range. Uploaded data "
          "is handled by the operator's cloud service.")


def generate_dpia(cfg: UmbraConfig, *, grants: Sequence[GrantView] = (), now: float | None = None,
                  grants_judged: bool = True) -> str:
    """A DPIA (Markdown) stating what the running configuration does; `grants`: the sampling authorizations
    in force (`grants_judged` False: which are could not be judged, the device's time being untrusted)."""
    f = facts(cfg)
    profile = f["profile"].value
    when = _iso(now) if now is not None else "(time not given)"
    scope = "quantized pseudonymous tracks and aggregates leave" if profile == "tracks" else "only aggregates leave"
    out = [f"# Data-protection impact assessment: Umbra sensor {f['device'].value}", "",
           f"Generated from the running configuration at {when}. Privacy profile: **{profile}** ({scope}).",
           "", "## 1. Processing", "",
           "A camera sees a public or retail space. On the device, each frame is analysed for people (boxes "
           "only), tracked on the ground plane and quantized; the frame buffer is zeroed in the same tick. "
           "No frame is stored or transmitted. Purpose: counting people, flows and dwell times per zone.", "",
           "## 2. What leaves the device", "", "| data | protection |", "| --- | --- |"]
    out += [f"| {a} | {b} |" for a, b in _leaves(f)]
    out += ["", "How the releases compose (each stream's day is charged to the device's budget, chained into "
            "the signed audit log, and checked again by the cloud):", "",
            "| release | unit protected | epsilon | per UTC day |", "| --- | --- | --- | --- |", *composition(f)]
    out += ["", "## 3. What stays on the device, and for how long", "", "| data | retention |", "| --- | --- |",
            *_kept(f), "", "## 4. Sampling authorizations", "",
            f"Customer key fingerprint: {_fingerprint(f['customer_key'].value)}; most any token may grant: "
            f"{f['max_rate'].value} per hour."]
    if not grants_judged:
        out.append("- not judged: the device's wall time is not trusted yet, so which stored tokens are in force "
                   "cannot be said (the sensor samples at the default rate until it is).")
    elif grants:
        out += [f"- token {g.token_id}: {g.rate_per_hour} per hour, {_iso(g.not_before)} to {_iso(g.expires)}"
                for g in grants]
    else:
        out.append("- none in force: samples at the default rate only.")
    out += ["", "## 5. Risks and measures", "", "| risk | measure |", "| --- | --- |", *RISKS, "",
            "## 6. Data-subject rights", "", RIGHTS, ""]
    return "\n".join(out)
