"""bench runs and benchmarks (python -m bench.<name> too)"""

from __future__ import annotations

import argparse
import importlib

BENCH = {
    "run": "bench.run",
    "speed": "bench.loop_speed",
    "tracking": "bench.tracking",
    "counting": "bench.counting",
    "privacy": "bench.privacy",
    "privacy-loso": "bench.privacy_loso",
    "privacy-cost": "bench.privacy_cost",
}


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Fills `umbra bench NAME [ARGS...]`: each bench is a module with a main(argv), loaded when it runs."""
    parser.add_argument("name", choices=sorted(BENCH), help="which bench to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for that bench (see --help)")
    parser.set_defaults(func=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    return int(importlib.import_module(BENCH[args.name]).main(args.args) or 0)
