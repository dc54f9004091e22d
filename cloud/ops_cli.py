"""`umbra-cloud` ops commands over the cloud's database (a SQLite file in --dir, or --database URL):

    umbra-cloud key create --tenant acme [--role customer|ops]   # prints the key once (only its hash is kept)
    umbra-cloud key revoke --key-id 0123456789abcdef
    umbra-cloud sensor assign --device umbra-0042 --tenant acme [--name "Front door"]
    umbra-cloud fleet [--json] [--offline]                       # inventory and health; exits 1 if any offline
    umbra-cloud rollout --repo R [--devices]                     # each stage's devices; exits 3 on a halt
    umbra-cloud rollout --repo R --watch [--every 30]            # the controller: halts by itself
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from cloud import customers
from cloud.fleet import ControllerConfig, RolloutController, fleet, fleet_summary, rollout_view
from cloud.store import Store
from hal.clock import SystemClock
from ota.cli import EXIT_HALTED
from ota.repo import Repository


def add_parsers(sub: argparse._SubParsersAction) -> None:
    def db_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", default="cloud-data", help="the cloud's data folder (its SQLite store)")
        p.add_argument("--database", default="", help="postgresql:// URL instead of the folder's SQLite")

    k = sub.add_parser("key", help="create or revoke an API key")
    ks = k.add_subparsers(dest="key_cmd", required=True)
    p = ks.add_parser("create")
    db_args(p)
    p.add_argument("--tenant", required=True)
    p.add_argument("--role", choices=customers.ROLES, default="customer")
    p.set_defaults(func=_key_create)
    p = ks.add_parser("revoke")
    db_args(p)
    p.add_argument("--key-id", required=True)
    p.set_defaults(func=_key_revoke)
    p = sub.add_parser("sensor", help="give a sensor to a tenant").add_subparsers(dest="s", required=True) \
        .add_parser("assign")
    db_args(p)
    p.add_argument("--device", required=True)
    p.add_argument("--tenant", required=True)
    p.add_argument("--name", default="")
    p.set_defaults(func=_sensor_assign)
    p = sub.add_parser("fleet", help="the fleet's inventory and health")
    db_args(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--online-within", type=float, default=900.0, help="seconds since last heard to count as online")
    p.set_defaults(func=_fleet)
    p = sub.add_parser("rollout", help="a rollout's stages from the cloud's reports; --watch halts by itself")
    db_args(p)
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--devices", action="store_true", help="name each stage's devices")
    p.add_argument("--watch", action="store_true", help="run the controller until stopped")
    p.add_argument("--every", type=float, default=30.0, help="seconds between budget checks (--watch)")
    p.set_defaults(func=_rollout)


def _store(args: argparse.Namespace) -> Store:
    return Store(args.database or Path(args.dir) / "cloud.sqlite")


def _key_create(args: argparse.Namespace) -> int:
    print(customers.create_key(_store(args), args.tenant, args.role, time.time()))
    return 0


def _key_revoke(args: argparse.Namespace) -> int:
    if not customers.revoke_key(_store(args), args.key_id):
        print(f"umbra-cloud: no key {args.key_id}")
        return 2
    return 0


def _sensor_assign(args: argparse.Namespace) -> int:
    customers.assign_sensor(_store(args), args.device, args.tenant, args.name)
    return 0


def _fleet(args: argparse.Namespace) -> int:
    devices = fleet(_store(args), time.time(), args.online_within)
    if args.json:
        print(json.dumps({"summary": fleet_summary(devices), "devices": devices}, indent=1))
    else:
        print(f"{'device':24} {'online':6} {'firmware':10} {'slot':4} {'fps':>6} {'overruns':>8} {'detector':10} "
              f"{'outbox':>6} {'cert expires':12} last error")
        for d in devices:
            exp = time.strftime("%Y-%m-%d", time.gmtime(d["cert_expires"])) if d["cert_expires"] else "-"
            print(f"{d['device_id']:24} {'yes' if d['online'] else 'NO':6} {d['firmware'] or '-':10} "
                  f"{d['slot'] or '-':4} {d['fps'] if d['fps'] is not None else '-':>6} {d['overruns'] or 0:>8} "
                  f"{d['detector'] or '-':10} {d['outbox_records'] or 0:>6} {exp:12} {d['last_error'] or ''}")
        s = fleet_summary(devices)
        print(f"{s['devices']} devices, {s['online']} online, {s['with_errors']} reporting an error")
    return 1 if any(not d["online"] for d in devices) else 0


def _rollout(args: argparse.Namespace) -> int:
    repo, store = Repository(args.repo), _store(args)
    if args.watch:
        ctl = RolloutController(repo, store, SystemClock(), ControllerConfig(every_s=args.every))
        try:
            asyncio.run(ctl.run(asyncio.Event()))
        except KeyboardInterrupt:
            pass
        return 0
    plan = repo.rollout()
    if not plan:
        print("umbra-cloud: no rollout in this repository")
        return 2
    view = rollout_view(plan, store, time.time())
    print(f"release {view['release']}: {view['state']}{' (' + view['reason'] + ')' if view['reason'] else ''}")
    failed_stage = False
    for st in view["stages"]:
        n = sum(len(st[k]) for k in ("installed", "healthy", "failed", "pending"))
        bad = st["started"] and st["failed"] and len(st["failed"]) / max(n, 1) > st["failure_budget"]
        failed_stage |= bool(bad)
        print(f"  stage {st['stage']} ({st['percent']:g}%{'' if st['started'] else ', not started'}): {n} devices, "
              f"{len(st['healthy'])} healthy, {len(st['installed'])} installed, {len(st['failed'])} failed, "
              f"{len(st['pending'])} pending{'  FAILED (over budget)' if bad else ''}")
        if args.devices:
            for kind in ("failed", "installed", "healthy", "pending"):
                for d in st[kind]:
                    print(f"    {kind:9} {d}")
    return EXIT_HALTED if failed_stage or view["state"] in ("halted", "aborted") else 0
