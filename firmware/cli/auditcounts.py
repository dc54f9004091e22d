"""`umbra audit-counts`: the device's counts against an installer's hand counts (or, on the bench, the
ground truth) over the same period, per line and direction, net and gross, and the in/out balance.

    umbra audit-counts --config umbra.toml --records tracks.jsonl --hand hand.csv
    umbra audit-counts --config bench/configs/pets09.toml --records out/bench/tracks.jsonl \\
        --gt $UMBRA_DATA_DIR/mot/MOT15/PETS09-S2L1/gt/gt.txt

`--records`: the device's released track records (JSON lines, umbra.track/1), e.g. the bench's tracks file.
Hand counts: see firmware.installer.countaudit. With --gt, frame n of the gt is at --start-wall + (n-1)/fps
(the bench's fixed clock start and the config's detect rate by default) and the period is the whole run."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from firmware.errors import InstallerError
from firmware.installer.countaudit import gt_crossings, read_hand_counts, record_crossings, report, within

BENCH_START_WALL = 1_700_000_000.0  # the bench run's fake clock starts here (bench.run.PETS_START_WALL)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="the device's config (its count lines)")
    parser.add_argument("--records", required=True, type=Path, help="JSON lines of released track records")
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

    cfg = cfgmod.load(args.config)
    lines = list(cfg.geometry.lines)
    if not lines:
        raise InstallerError(f"{args.config} has no count lines ([[geometry.lines]]): nothing to audit")
    device = record_crossings(_read_records(args.records), lines, args.band)
    if args.gt is not None:
        truth = gt_crossings(args.gt, lines, args.fps or cfg.loop.detect_hz, args.start_wall, args.band, args.frames)
        hand = within(truth, [(float("-inf"), float("inf"))])
        dev = within(device, [(float("-inf"), float("inf"))])
        print(f"count audit: device records {args.records} against the ground truth {args.gt} (whole run)")
        table, _ = report(hand, dev, lines, "truth")
    else:
        counts = read_hand_counts(args.hand, lines)
        b = cfg.quantize.time_bucket_s  # a device crossing carries its bucket's start: widen to whole buckets
        periods = [(math.floor(s / b) * b, math.ceil(e / b) * b) for s, e in counts.periods]
        dev = within(device, periods)
        span = ", ".join(f"{a:.0f}-{b:.0f}" for a, b in periods[:4]) + (" ..." if len(periods) > 4 else "")
        print(f"count audit: device records {args.records} against hand counts {args.hand} ({counts.kind}; "
              f"period {span}; device crossings timed by their records' {cfg.quantize.time_bucket_s} s bucket)")
        table, _ = report(counts.counts, dev, lines, "hand")
    print(table)
    return 0
