"""What a run says at stop: counts per line and direction, occupancy per zone, records by kind, and the
loop's troubles in plain words."""

from __future__ import annotations

from typing import Any

from firmware.installer.counts import CountSnapshot
from firmware.sensing.records import QuantizedTrack


def stop_summary(stats: Any, counts: CountSnapshot, profile: str, audit_failures: int = 0, withheld: int = 0) -> str:
    rows = [f"umbra stopped after {stats.ticks} ticks ({stats.frames} frames)"]
    by: dict[str, dict[str, int]] = {}
    for (line, d), n in counts.lines.items():
        by.setdefault(line, {})[d] = n
    if by:
        rows.append("  crossings per count line (+: to the line's left seen from a to b, -: to its right): "
                    + "; ".join(f"{ln} +{d.get('+', 0)} -{d.get('-', 0)}" for ln, d in by.items()))
    else:
        rows.append("  no count lines configured ([[geometry.lines]])")
    if counts.zones_now:
        rows.append("  people standing in each zone: " + "; ".join(
            f"{z} {counts.zones_now[z]} at stop, at most {counts.zones_peak[z]}, {counts.zones_mean[z]:.1f} on "
            f"average" for z in counts.zones_now))
    kinds = dict(counts.records_by_kind)
    made = kinds.pop(QuantizedTrack.SCHEMA, 0)
    where = "released" if profile == "tracks" else "made, kept on the device (aggregates profile)"
    rows.append(f"  records: {made} quantized track records {where}"
                + "".join(f", {n} {k}" for k, n in sorted(kinds.items())))
    rows.append(f"  frames dropped because a tick ran late: {stats.overruns} (each one a frame the loop did not take, "
                f"since it never queues them; many mean the detector is too slow for detect_hz)")
    rows.append(f"  detector errors: {stats.detector_errors}; camera stalls: {stats.camera_stalls} "
                f"(reopened {stats.camera_reopens} times)")
    if audit_failures or withheld:
        rows.append(f"  audit log writes failed: {audit_failures} (a full or read-only disk?); records not released "
                    f"because their audit entry could not be written: {withheld}")
    return "\n".join(rows)
