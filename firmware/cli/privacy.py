"""`umbra privacy`: the DPIA of a config, and data-subject access and erasure requests answered from what the
device's outbox really holds, each audited in the config's audit log. Times are the sensor's ([device] clock,
`firmware.cli.assemble.build_clock`): while its wall time is not trusted the DPIA names no time and judges no
sampling token in force (it says so), and a request's audit entry carries the clock's best estimate."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from firmware.cli.assemble import build_clock
from firmware.config import load, resolve_path
from firmware.errors import AuthorizationRefused, ComplianceError
from firmware.privacy.audit import NoAudit, audit_log_for
from firmware.privacy.compliance import SubjectRequest, answer_access, answer_erasure
from firmware.privacy.dpia import generate_dpia
from firmware.samples.grantstore import authorizer_for, store_for
from firmware.sync.outbox import Outbox


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Fills the `umbra privacy` parser: the DPIA of a config, and data-subject requests answered from the
    device's outbox (what it really holds), each audited in the config's audit log."""
    sub = parser.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    dpia = sub.add_parser("dpia", help="the data-protection impact assessment of a config (Markdown)")
    dpia.add_argument("--config", required=True, type=Path)
    dpia.set_defaults(func=_cmd_dpia)
    for kind in ("access", "erasure"):
        p = sub.add_parser(kind, help=f"answer a data-subject {kind} request from what the device holds")
        p.add_argument("--config", required=True, type=Path)
        p.add_argument("--id", required=True, help="the request's reference")
        p.add_argument("--start", required=True, type=float, help="range start, Unix seconds")
        p.add_argument("--end", required=True, type=float, help="range end (exclusive), Unix seconds")
        if kind == "access":
            p.add_argument("--zone", default=None)
        p.add_argument("--json", action="store_true", help="the answer as JSON instead of Markdown")
        p.set_defaults(func=_cmd_request, kind=kind)


def _cmd_dpia(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    base = args.config.resolve().parent
    clock = build_clock(cfg, base)
    if not clock.trusted:  # which tokens are in force, and when this was made, cannot be said on a wrong clock
        print("umbra privacy dpia: the device's wall time is not trusted yet ([device] clock: NTP has not "
              "synchronised it): no time is given and no sampling token is judged in force", file=sys.stderr)
        print(generate_dpia(cfg, grants=[], now=None, grants_judged=False))
        return 0
    now = clock.wall()
    grants = []
    if cfg.authorization.customer_public_key:  # the stored tokens that verify now (a look: nothing audited)
        store = store_for(cfg, base)
        check = authorizer_for(cfg, store, NoAudit())
        for token in store.read().tokens:
            try:
                grants.append(check.verify(token, now, accept_future=True))
            except AuthorizationRefused:
                continue
    print(generate_dpia(cfg, grants=grants, now=now))
    return 0


def _cmd_request(args: argparse.Namespace) -> int:


    cfg = load(args.config)
    base = args.config.resolve().parent
    audit = audit_log_for(cfg, base)  # signed with the device key like umbra run's, so the head stays signed
    if audit is None:
        raise ComplianceError("[privacy] audit_file is empty: data-subject requests are audited, so set it")
    req = SubjectRequest(args.id, args.kind, args.start, args.end, getattr(args, "zone", None))
    with Outbox(replace(cfg.sync.outbox, path=str(resolve_path(cfg.sync.outbox.path, base)))) as store:
        answer = (answer_access if args.kind == "access" else answer_erasure)(
            req, store, audit, build_clock(cfg, base).wall(), cfg.pseudonym.rotate_s)
    print(json.dumps(answer.to_json(), indent=1) if args.json else answer.to_markdown())
    return 0
