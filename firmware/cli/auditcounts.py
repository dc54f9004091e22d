"""`umbra audit-counts`: the device's counts against an installer's hand counts (or, on the bench, the
ground truth) over the same period, per line and direction, net and gross, and the in/out balance.

    umbra audit-counts --config umbra.toml --crossings crossings.jsonl --hand hand.csv
    umbra audit-counts --config bench/configs/pets09.toml --crossings out/bench/crossings.jsonl \\
        --gt $UMBRA_DATA_DIR/mot/MOT15/PETS09-S2L1/gt/gt.txt

`--crossings`: the device's own line counts (the loop's line counter, `[output] crossings_file`, per time
bucket), the counts the device releases; the bench run counts from the same file. `--records`: a recount from
the released track records (JSON lines, umbra.track/2, one per pseudonym per time bucket, each with the
crossings the device confirmed for it in that bucket; umbra.track/1 ones recounted from cells), the cloud's view,
printed after the device's counts and labelled as such. Hand counts: see firmware.installer.countaudit. With
--gt, frame n of the gt is at --start-wall + (n-1)/fps (the bench's fixed clock start and the config's detect
rate by default) and the period is the whole run."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from firmware.errors import InstallerError
from firmware.installer.countaudit import (
    Crossing,
    gt_crossings,
    read_hand_counts,
    read_line_counts,
    record_crossings,
    report,
    within,
)

BENCH_START_WALL = 1_700_000_000.0  # the bench run's fake clock starts here (bench.run.PETS_START_WALL)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the device's config (its count lines)")
    parser.add_argument("--crossings", type=Path, help="the device's own line counts ([output] crossings_file)")
    parser.add_argument("--records", type=Path, help="released track records (JSON lines): a recount from them, "
                        "the cloud's view, after the device's counts")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--hand", type=Path, help="hand counts: CSV of crossings or of tallies per interval")
    src.add_argument("--gt", type=Path, help="bench: MOT15 gt with world coordinates instead of hand counts")
    parser.add_argument("--fps", type=float, default=None, help="--gt: frames per second (default: detect_hz)")
    parser.add_argument("--start-wall", type=float, default=BENCH_START_WALL, help="--gt: wall time of frame 1")
    parser.add_argument("--frames", type=int, default=None, help="--gt: only the first N frames (a partial run)")
    parser.add_argument("--band", type=float, default=0.5, help="hysteresis each side of a line, metres")
    parser.set_defaults(func=_cmd_audit)


def _read_records(path: Path) -> list[dict]:
    try:
        with path.open(encoding="utf-8") as f:
            return [json.loads(x) for x in f if x.strip()]
    except (OSError, ValueError) as e:
        raise InstallerError(f"cannot read track records {path}: {e}") from None


def _cmd_audit(args: argparse.Namespace) -> int:
    from firmware import config as cfgmod

    if args.crossings is None and args.records is None:
        raise InstallerError("give the device's line counts (--crossings, [output] crossings_file), or track "
                             "records to recount (--records), or both")
    cfg = cfgmod.load(args.config)
    lines = list(cfg.geometry.lines)
    if not lines:
        raise InstallerError(f"{args.config} has no count lines ([[geometry.lines]]): nothing to audit")
    sources: list[tuple[str, list[Crossing]]] = []
    if args.crossings is not None:
        sources.append((f"the device's own line counts {args.crossings}", read_line_counts(args.crossings)))
    if args.records is not None:
        sources.append((f"a recount from the device's track records {args.records} (the cloud's view, "
                        f"{cfg.quantize.time_bucket_s} s buckets; secondary)",
                        record_crossings(_read_records(args.records), lines, args.band)))
    for k, (name, device) in enumerate(sources):
        if k:
            print()
        _audit_one(args, cfg, lines, name, device)
    return 0


def _audit_one(args: argparse.Namespace, cfg, lines: list, name: str, device: list[Crossing]) -> None:
    if args.gt is not None:
        truth = gt_crossings(args.gt, lines, args.fps or cfg.loop.detect_hz, args.start_wall, args.band, args.frames)
        hand = within(truth, [(float("-inf"), float("inf"))])
        dev = within(device, [(float("-inf"), float("inf"))])
        print(f"count audit: {name} against the ground truth {args.gt} (whole run)")
        table, _ = report(hand, dev, lines, "truth")
    else:
        counts = read_hand_counts(args.hand, lines)
        b = cfg.quantize.time_bucket_s  # a device crossing carries its bucket's start: widen to whole buckets
        periods = [(math.floor(s / b) * b, math.ceil(e / b) * b) for s, e in counts.periods]
        dev = within(device, periods)
        span = ", ".join(f"{a:.0f}-{b:.0f}" for a, b in periods[:4]) + (" ..." if len(periods) > 4 else "")
        print(f"count audit: {name} against hand counts {args.hand} ({counts.kind}; period {span}; device "
              f"crossings timed by their {cfg.quantize.time_bucket_s} s bucket)")
        table, _ = report(counts.counts, dev, lines, "hand")
    print(table)
