"""`umbra track`: the tracker alone on a MOTChallenge detection file, writing MOTChallenge results, so anyone
can score it with the standard tools (TrackEval, motmetrics) on any sequence.

    umbra track --det det/det.txt --seqinfo seqinfo.ini --out RESULT.txt [--config umbra.toml]

Detections are `frame, id, x, y, w, h, score, ...` (pixels, 1-based frames). Scores outside 0..1 (MOT15's ACF
detections) are replaced by their rank within the file, 0..1, unless `--raw-scores` is given. The frame rate
from seqinfo.ini sets the time step, and its imWidth and imHeight (when given) the frame, so a lost track's
guess is not reported once it has left the picture; the tracker's settings come from `[tracker]` of a config
file if given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from firmware.config import load
from firmware.errors import ConfigError
from firmware.sensing.mot import read_detections, read_seqinfo, track, write_results


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--det", required=True, type=Path, help="MOTChallenge det.txt")
    parser.add_argument("--seqinfo", required=True, type=Path, help="the sequence's seqinfo.ini")
    parser.add_argument("--out", required=True, type=Path, help="where to write the results")
    parser.add_argument("--config", type=Path, help="an umbra TOML config whose [tracker] to use")
    parser.add_argument("--raw-scores", action="store_true", help="use scores as they are, even outside 0..1")
    parser.set_defaults(func=_cmd_track)


def _cmd_track(args: argparse.Namespace) -> int:
    cfg = None
    if args.config:
        cfg = load(args.config).tracker
    fps, frames, size = read_seqinfo(args.seqinfo)
    det = read_detections(args.det, args.raw_scores)
    if len(det) and det[:, 0].max() > frames:
        raise ConfigError(f"{args.det}: detections for frame {int(det[:, 0].max())}, but seqinfo says {frames}")
    rows = track(det, fps, frames, cfg, size)
    write_results(rows, args.out)
    print(f"{len(rows)} boxes in {len(np.unique(rows[:, 1]))} tracks over {frames} frames -> {args.out}",
          file=sys.stderr)
    return 0
