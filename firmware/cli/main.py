"""The `umbra` command line: the sensor's own commands, and the commands of the packages above the firmware
(factory provisioning, bench runs), which plug in through the `umbra.commands` entry points (pyproject.toml),
so the firmware never imports them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from firmware.cli import audit, auditcounts, calibrate, draw, installer, ota, privacy, samples, track
from firmware.cli.run import cmd_run
from firmware.errors import FirmwareError

log = logging.getLogger("umbra")

AddParser = Callable[[argparse.ArgumentParser], object]
BUILTIN: tuple[tuple[str, AddParser, str], ...] = (
    ("track", track.add_parser, "run the tracker alone on a MOTChallenge detection file"),
    ("audit", audit.add_parser, "verify the privacy audit log"),
    ("samples", samples.add_parser, "customer sampling authorizations: key pair, tokens, intake"),
    ("privacy", privacy.add_parser, "the DPIA of a config; data-subject access and erasure requests"),
    ("ota", ota.add_parser, "OTA releases and rollouts (ops); `ota check` on the device"),
    ("calibrate", calibrate.add_parser, "the image-to-ground homography from point pairs (or MOT15 gt)"),
    ("installer", installer.add_parser, "installer mode: the operator's key pair and short-lived tokens"),
    ("draw", draw.add_parser, "the installer view's overlay on a de-identified snapshot, as PNG"),
    ("audit-counts", auditcounts.add_parser, "the device's counts against an installer's hand counts"),
)
PLUGINS = "umbra.commands"  # entry points: name = "module:add_parser"; the module's HELP (or docstring) is the help
# Error families of the other packages: their messages are for the user, like FirmwareError's.
USER_ERRORS = {"hal", "trust", "ota", "provisioning", "models", "cloud", "bench"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="umbra", description="Umbra people-flow sensor firmware")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the sensor loop from a config file")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument("--max-frames", type=int, default=None)
    run.set_defaults(func=cmd_run)

    for name, add, help_text in BUILTIN:
        add(sub.add_parser(name, help=help_text))
    for ep in sorted(entry_points(group=PLUGINS), key=lambda e: e.name):
        add = ep.load()
        module = sys.modules[add.__module__]
        add(sub.add_parser(ep.name, help=getattr(module, "HELP", None) or (module.__doc__ or ep.name).splitlines()[0]))

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except FirmwareError as e:
        print(f"umbra: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the config names that cannot be opened, made or written
        print(f"umbra: {e.filename or 'a file'}: {e.strerror or e}", file=sys.stderr)
        return 2
    except Exception as e:  # errors of other packages' families (HalError, OtaError, ...)
        if type(e).__module__.split(".")[0] in USER_ERRORS:
            print(f"umbra: {e}", file=sys.stderr)
            return 2
        raise
