"""`umbra ota`: the ops commands of ota.cli, and the device's own `umbra ota check [--install]`, which reads
the sensor's config ([ota] and [sync])."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from firmware import __version__
from firmware.cli.assemble import build_clock
from firmware.config import load
from ota import agent
from ota import cli as ota_cli


def add_parser(parser: argparse.ArgumentParser) -> None:
    sub = ota_cli.add_parser(parser)
    p = sub.add_parser("check", help="(on the device) check for an update now; --install installs it")
    p.add_argument("--config", type=Path, required=True, help="the sensor's config (its [ota] and [sync])")
    p.add_argument("--install", action="store_true", help="download, verify, install and boot it on trial")
    p.set_defaults(func=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    base = args.config.resolve().parent
    boot = agent.make_boot(cfg.ota.boot, base)
    # the sensor's clock rules ([device] clock): with "ntp", held until NTP has synchronised the clock
    client = agent.make_client(cfg.ota, cfg.sync.tls, boot, cfg.sync.uploader.device_id or cfg.device.id,
                               __version__, build_clock(cfg, base))
    if not args.install:
        update = client.check()
        print(f"update available: {update.version} ({update.length} bytes)" if update else "up to date")
        return 0
    reports: list[dict] = []
    release = agent.check_and_install(client, reports.append)
    for r in reports:
        print(json.dumps(r))
    if release:
        print(f"{release} installed into slot {boot.state().get('trying')}; it runs on trial at the next boot")
    return 0
