"""Counting accuracy. The product's counts are the device's own line counts (`umbra bench run` prints them first;
`umbra audit-counts --crossings` reads the same file). This module's `--records` is the secondary figure: line
crossings recounted from the quantized track records a device released (the cloud's view, one record per
pseudonym per time bucket) against crossings in the ground-truth tracks, per line and direction. Both sides go
through the same counter: a crossing counts when a path moves from beyond `band` metres on one side of the line
to beyond `band` on the other (hysteresis, so a path hovering on the line counts once, not on every wobble).

`python -m bench.counting --records tracks.jsonl [--gt gt.txt] [--config pets09.toml]`;
`python -m bench.counting --explain` replays the bench run on cached detections and says, crossing by
crossing, what was missed or counted falsely and why (bench.lib.explain): the device's own counts first, then
the recount from records."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.lib.crossings import compare, count_crossings, count_records, paths_from_gt

Key = tuple[str, str]  # (line name, "+" or "-")


def main(argv: list[str] | None = None) -> int:
    from firmware.config import load

    ap = argparse.ArgumentParser(prog="umbra bench counting", description=__doc__)
    ap.add_argument("--records", type=Path, help="JSON lines of released track records")
    ap.add_argument("--explain", action="store_true",
                    help="replay the bench run on cached detections and explain each unmatched crossing")
    ap.add_argument("--tiles", type=int, nargs=2, default=None, help="--explain: detections of this tiling "
                    "(default: the config's)")
    ap.add_argument("--overlap", type=float, default=None, help="--explain: tile overlap (default: the config's)")
    ap.add_argument("--gt", type=Path, help="MOT15 gt.txt with world coordinates (default: PETS09-S2L1)")
    ap.add_argument("--config", type=Path, default=Path(__file__).parent / "configs" / "pets09.toml")
    ap.add_argument("--band", type=float, default=0.5)
    args = ap.parse_args(argv)
    from bench.lib import data

    if args.explain:
        from bench.lib.explain import run

        print(run(args.config, args.band, args.tiles, args.overlap))
        return 0
    if args.records is None:
        ap.error("--records is required (or --explain)")

    gt = args.gt or data.find("mot/MOT15/PETS09-S2L1/gt/gt.txt")
    if gt is None:
        print(data.missing_message(["mot/MOT15/PETS09-S2L1/gt/gt.txt"]), file=sys.stderr)
        return 1
    lines = load(args.config).geometry.lines
    with args.records.open(encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    table, _ = compare(count_records(records, lines, args.band),
                       count_crossings(paths_from_gt(gt), lines, args.band), lines)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
