"""`umbra ota ...` (or `umbra-ota ...`): the ops tooling.

    umbra ota init --repo R                                   # keys (root 2 of 3) and signed metadata
    umbra ota build --src TREE --version 1.4.0 --hardware umbra-pi4 --min-from 1.2.0 --out umbra-1.4.0.tar
    umbra ota publish --repo R --bundle umbra-1.4.0.tar       # a signed target per hardware
    umbra ota stage --repo R --release 1.4.0 --percents 1 10 50 100 --every-hours 24 --budget 0.02
    umbra ota stage --repo R --pause | --resume | --abort
    umbra ota status --repo R --fleet devices.txt --reports reports.jsonl [--apply] [--devices]
      (exits 3 when the rollout is halted or aborted, or a started stage is over its failure budget;
       `umbra-cloud rollout` reads the fleet and results from the cloud's database instead)
    umbra ota rotate-keys --repo R --role timestamp
    umbra ota timestamp --repo R                              # re-sign the timestamp (daily)
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tarfile
import time
from pathlib import Path

from ota import bundle
from ota.errors import OtaError
from ota.repo import ROLES, Repository
from ota.rollout import evaluate, make_plan, outcome, stage_views, transition

EXIT_HALTED = 3  # `status`: the rollout is halted or aborted, or a started stage is over its budget


def add_parser(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """Fills the `umbra ota` parser with the ops commands; returns the subparsers, so the device's own command
    (`umbra ota check`, which reads the sensor's config: firmware.cli.ota) can join them."""
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="ota_command", required=True)
    p = sub.add_parser("init", help="create a repository and its keys")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--root-keys", type=int, default=3)
    p.add_argument("--threshold", type=int, default=2)
    p.set_defaults(func=_init)
    p = sub.add_parser("build", help="build a release bundle from a tree")
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--version", required=True)
    p.add_argument("--hardware", action="append", required=True)
    p.add_argument("--min-from", default="0")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_build)
    p = sub.add_parser("publish", help="sign a bundle into the repository")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--bundle", type=Path, required=True)
    p.set_defaults(func=_publish)
    p = sub.add_parser("stage", help="set, pause, resume or abort a staged rollout")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--release")
    p.add_argument("--percents", type=float, nargs="+", default=[1, 10, 50, 100])
    p.add_argument("--every-hours", type=float, default=24.0, help="hours between stage starts")
    p.add_argument("--budget", type=float, default=0.02, help="failure share that halts a stage")
    g = p.add_mutually_exclusive_group()
    for flag in ("pause", "resume", "abort"):
        g.add_argument(f"--{flag}", action="store_true")
    p.set_defaults(func=_stage)
    p = sub.add_parser("status", help="a rollout's progress across the fleet; halts it when over budget")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--fleet", type=Path, required=True, help="device ids, one per line")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--reports", type=Path, help='JSON lines {"device": ..., "result": ...}')
    src.add_argument("--cloud-data", type=Path, help="a reference cloud's folder: its umbra.ota/1 records")
    p.add_argument("--apply", action="store_true", help="publish the halt when a stage is over budget")
    p.add_argument("--devices", action="store_true", help="list each stage's devices by state")
    p.set_defaults(func=_status)
    p = sub.add_parser("rotate-keys", help="replace a role's keys (a new root version)")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--role", choices=ROLES, required=True)
    p.set_defaults(func=_rotate)
    p = sub.add_parser("timestamp", help="re-sign the timestamp (run daily)")
    p.add_argument("--repo", type=Path, required=True)
    p.set_defaults(func=_timestamp)
    return sub


def _timestamp(args: argparse.Namespace) -> int:
    Repository(args.repo).refresh_timestamp()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="umbra-ota")
    add_parser(ap)
    args = ap.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OtaError as e:
        print(f"umbra-ota: {e}", file=sys.stderr)
        return 2


def _init(args: argparse.Namespace) -> int:
    root = Repository(args.repo).init(args.root_keys, args.threshold)
    print(f"repository in {args.repo}: serve {args.repo}/public; embed {args.repo}/public/metadata/root.json "
          f"({len(root)} bytes) in devices at provisioning; keep {args.repo}/keys offline")
    return 0


def _build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    total = sum(p.stat().st_size for p in args.src.rglob("*") if p.is_file())
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"bundle {args.version}",
              disable=not sys.stderr.isatty()) as bar:
        man = bundle.build(args.src, args.out, args.version, args.hardware, args.min_from, progress=bar.update)
    print(f"{args.out}: {args.version} for {', '.join(man.hardware)}, {len(man.files)} files")
    return 0


def _publish(args: argparse.Namespace) -> int:
    with tarfile.open(args.bundle) as tar:
        member = tar.extractfile("manifest.json")
        if member is None:
            raise OtaError(f"{args.bundle} has no manifest.json: build it with `umbra ota build`")
        man = json.loads(member.read())
    names = Repository(args.repo).publish_release(args.bundle, man["version"], man["hardware"], man["min_from"])
    print(f"published {', '.join(names)}")
    return 0


def _stage(args: argparse.Namespace) -> int:
    repo = Repository(args.repo)
    if args.pause or args.resume or args.abort:
        plan = repo.rollout(args.release)
        if not plan:
            raise OtaError("no rollout to change: set one with --release first")
        plan = transition(plan, "paused" if args.pause else ("running" if args.resume else "aborted"))
    else:
        if not args.release:
            raise OtaError("--release is needed to set stages")
        if repo.rollout(args.release).get("state") == "aborted":
            raise OtaError(f"the rollout of {args.release} was aborted, and an abort is final: "
                           "build and stage a new release instead")
        now = time.time()
        starts = [now + i * args.every_hours * 3600 for i in range(len(args.percents))]
        plan = make_plan(args.release, args.percents, starts, [args.budget] * len(args.percents))
    repo.set_rollout(plan)
    print(json.dumps(plan, indent=1))
    return 0


def _status(args: argparse.Namespace) -> int:
    repo = Repository(args.repo)
    plan = repo.rollout()
    if not plan:
        raise OtaError("no rollout in this repository")
    fleet, reports = _fleet_and_reports(args, plan["release"])
    return report_status(repo, plan, fleet, reports, apply=args.apply, devices=args.devices)


def report_status(repo: Repository, plan: dict, fleet: list[str], reports: dict[str, str], *, apply: bool,
                  devices: bool) -> int:
    """Print a rollout's progress and each stage's devices; publish a halt with `apply`. Returns the exit code."""
    new_plan, st = evaluate(plan, reports, fleet)
    print(f"release {plan['release']}: stage {st.stage + 1} of {len(plan['stages'])}, {st.members} devices in it, "
          f"{st.updated} reported, {st.failed} failed ({st.failure_share:.1%}); state {new_plan['state']}")
    over = False
    for v in stage_views(new_plan, reports, fleet):
        budget = float(new_plan["stages"][v.stage]["failure_budget"])
        bad = v.started and v.over_budget(budget)
        over |= bad
        print(f"  stage {v.stage + 1} ({v.percent:g}%{'' if v.started else ', not started'}): {v.members} devices, "
              f"{len(v.healthy)} healthy, {len(v.installed)} installed, {len(v.failed)} failed, "
              f"{len(v.pending)} pending{'  FAILED (over budget)' if bad else ''}")
        if devices:
            for kind in ("failed", "installed", "healthy", "pending"):
                for d in getattr(v, kind):
                    print(f"    {kind:9} {d}")
    if new_plan is not plan and new_plan["state"] == "halted":
        print(f"HALT: {new_plan['reason']}")
        if apply:
            repo.set_rollout(new_plan)
            print("halt published")
    return EXIT_HALTED if over or new_plan["state"] in ("halted", "aborted") else 0


def _fleet_and_reports(args: argparse.Namespace, release: str) -> tuple[list[str], dict[str, str]]:
    reports = _cloud_reports(args.cloud_data, release) if args.cloud_data else {}
    for n, line in enumerate(args.reports.read_text().splitlines() if args.reports else [], 1):
        if line.strip():
            try:
                r = json.loads(line)
                device, result = str(r["device"]), r["result"]
            except (ValueError, KeyError, TypeError):
                raise OtaError(f"{args.reports}:{n}: not a JSON object with device and result") from None
            outcome(result)
            reports[device] = result
    return _read_fleet(args.fleet), reports


def _read_fleet(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _cloud_reports(folder: Path, release: str) -> dict[str, str]:
    """Each device's latest outcome for `release` from what it reported to the reference cloud (the
    umbra.ota/1 records its uploader sent); "installed" alone is not an outcome yet, nor overrides one."""

    db = sqlite3.connect(f"file:{folder / 'cloud.sqlite'}?mode=ro", uri=True)
    out: dict[str, str] = {}
    for device, body in db.execute("SELECT device_id, body FROM records WHERE schema = 'umbra.ota/1' "
                                   "ORDER BY device_id, outbox_id, seq"):
        r = json.loads(body)
        if r.get("release") == release and not (r["result"] == "installed" and device in out):
            out[device] = r["result"]
    db.close()
    return out


def _rotate(args: argparse.Namespace) -> int:
    Repository(args.repo).rotate_key(args.role)
    print(f"{args.role} keys rotated; devices follow through the new root version")
    return 0
