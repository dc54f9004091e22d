"""`umbra samples`: the customer's side (a key pair, signed tokens) and the installer's (intake on the device).

    umbra samples keygen --out customer.pem            # customer: prints the public key for the config
    umbra samples sign-token --key customer.pem --device ID --rate N --days D [--out token.txt]
    umbra samples authorize --config umbra.toml TOKEN_OR_FILE   # device: verify, store, audit
    umbra samples list --config umbra.toml
    umbra samples revoke --config umbra.toml TOKEN_ID

The running sensor picks a stored or revoked token up within a minute (`firmware.samples.grantstore.GrantRefresher`).
The device's commands keep the sensor's clock rules ([device] clock, `firmware.cli.assemble.build_clock`): while
its wall time is not trusted (a Pi before NTP), `authorize` holds the token (not judged, not stored: audited as
`authorization_held`, exit 1), `list` does not say whether a token is in force, and `revoke` (no time decision)
goes ahead, its audit entry at the clock's best estimate.
Exit codes: 0 done, 1 token refused or held (or nothing to revoke), 2 a usage or file error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.cli.assemble import build_clock
from firmware.config import load
from firmware.config.checks import flag, number, whole
from firmware.config.samples import MAX_RATE_PER_HOUR, MAX_VALIDITY_DAYS
from firmware.errors import AuthorizationRefused, SamplesCommandError
from firmware.privacy.audit import NoAudit, audit_log_for
from firmware.samples.authorization import Authorizer, public_key_b64, sign_token
from firmware.samples.grantstore import _token_id, accept, authorizer_for, device_id_of, revoke, store_for, token_text
from hal.trustedtime import TrustedClock
from trust.files import write_atomic

LAST_UNIX_S = 253_402_300_799  # 9999-12-31T23:59:59Z


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Fills the `umbra samples` parser."""
    sub = parser.add_subparsers(dest="samples_command", required=True, metavar="ACTION")
    kg = sub.add_parser("keygen", help="customer: make a sampling-authorization key pair")
    kg.add_argument("--out", required=True, type=Path, help="where the private key goes (PEM, mode 0600)")
    kg.set_defaults(func=_cmd_keygen)
    st = sub.add_parser("sign-token", help="customer: sign a token raising a device's sampling rate")
    st.add_argument("--key", required=True, type=Path, help="the customer's private key (PEM, from keygen)")
    st.add_argument("--device", required=True, help="the device id the token is for")
    st.add_argument("--rate", required=True, type=int, help="samples per hour")
    st.add_argument("--days", required=True, type=float, help="validity from --not-before, in days")
    st.add_argument("--not-before", type=int, default=None, help="start, Unix seconds (default: now)")
    st.add_argument("--token-id", default=None, help="the token's id (default: a random one)")
    st.add_argument("--out", type=Path, default=None, help="write the token to this file instead of stdout")
    st.set_defaults(func=_cmd_sign)
    au = sub.add_parser("authorize", help="device: verify a token against the config and store it")
    au.add_argument("--config", required=True, type=Path)
    au.add_argument("token", help="the token, or a file holding it")
    au.set_defaults(func=_cmd_authorize)
    ls = sub.add_parser("list", help="device: the stored tokens and whether each is in force")
    ls.add_argument("--config", required=True, type=Path)
    ls.set_defaults(func=_cmd_list)
    rv = sub.add_parser("revoke", help="device: withdraw a stored token (its id is refused from then on)")
    rv.add_argument("--config", required=True, type=Path)
    rv.add_argument("token_id")
    rv.set_defaults(func=_cmd_revoke)


def _cmd_keygen(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise SamplesCommandError(f"{args.out} exists; a customer key is not overwritten (choose another --out)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_atomic(args.out, pem, private=True)
    print(f"# private key written to {args.out} (keep it with the customer; devices never hold it)")
    print("# put the public key in each device's config:")
    print("[authorization]")
    print(f'customer_public_key = "{public_key_b64(key)}"')
    return 0


def load_customer_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise SamplesCommandError(f"cannot read the customer key {path}: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SamplesCommandError(f"{path}: a customer key is Ed25519 (make one with `umbra samples keygen`)")
    return key


def _cmd_sign(args: argparse.Namespace) -> int:
    flag(whole, "--rate", args.rate, 1, MAX_RATE_PER_HOUR, unit="samples per hour (what a device may ever accept)")
    flag(number, "--days", args.days, 0, MAX_VALIDITY_DAYS, lo_open=True, unit="days")
    if args.not_before is not None:
        flag(whole, "--not-before", args.not_before, 0, LAST_UNIX_S, unit="Unix seconds")
    start = int(time.time()) if args.not_before is None else args.not_before
    token = sign_token(load_customer_key(args.key), device_id=args.device, rate_per_hour=args.rate,
                       not_before=start, expires=start + int(args.days * 86400),
                       token_id=args.token_id or f"tok-{secrets.token_hex(6)}")
    if args.out is not None:
        write_atomic(args.out, (token + "\n").encode("ascii"), private=True)
        print(f"token written to {args.out}")
    else:
        print(token)
    return 0


def _device(args: argparse.Namespace) -> tuple[Any, Any, Any, TrustedClock]:
    """(config, token store, audit sink, the sensor's clock) of the device a config describes."""

    cfg = load(args.config)
    base = args.config.resolve().parent
    audit = audit_log_for(cfg, base)
    return cfg, store_for(cfg, base), audit if audit is not None else NoAudit(), build_clock(cfg, base)


UNTRUSTED = "the device's wall time is not trusted yet ([device] clock: NTP has not synchronised it)"


def _cmd_authorize(args: argparse.Namespace) -> int:

    cfg, store, audit, clock = _device(args)
    now = clock.wall()
    if not clock.trusted:  # a token's window judged on a wrong clock could be refused (or taken) wrongly
        audit.append("authorization_held", now, reason="time-untrusted",
                     claimed_token_id=_token_id(token_text(args.token)))
        print(f"held: {UNTRUSTED}, so the token is not judged and nothing is stored; run this again once it is")
        return 1
    try:
        grant = accept(store, authorizer_for(cfg, store, audit), token_text(args.token), now)
    except AuthorizationRefused as e:
        print(f"refused ({e.reason}): {e.detail}; the stored tokens are unchanged")
        return 1
    when = "in force now" if grant.valid_at(now) else f"in force from {_iso(grant.not_before)}"
    print(f"accepted {grant.token_id}: {grant.rate_per_hour} samples per hour, {when}, until {_iso(grant.expires)}; "
          f"stored in {store.path} (the running sensor picks it up within a minute)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:

    cfg, store, _, clock = _device(args)
    held = store.read()
    check = Authorizer(cfg.authorization, device_id_of(cfg), NoAudit(), revoked=held.revoked)  # a look, not a use
    now = clock.wall()
    print(f"{len(held.tokens)} token(s) in {store.path}")
    if not clock.trusted:
        print(f"  whether each is in force is not judged: {UNTRUSTED}")
        for token in held.tokens:
            print(f"  {_token_id(token) or '?'}: not judged (time untrusted)")
    for token in held.tokens if clock.trusted else ():
        try:
            g = check.verify(token, now, accept_future=True)
            state = "in force" if g.valid_at(now) else "not yet valid"
            print(f"  {g.token_id}: {g.rate_per_hour}/h, {_iso(g.not_before)} to {_iso(g.expires)}, {state}")
        except AuthorizationRefused as e:

            print(f"  {_token_id(token) or '?'}: not usable ({e.reason})")
    if held.revoked:
        print(f"revoked ids: {', '.join(held.revoked)}")
    return 0


def _iso(t: int) -> str:

    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _cmd_revoke(args: argparse.Namespace) -> int:

    _, store, audit, clock = _device(args)
    found = revoke(store, args.token_id, clock.wall(), audit)  # withdrawing needs no trusted time
    print(f"{args.token_id}: {'revoked and removed' if found else 'not stored; its id is refused from now on'}")
    return 0 if found else 1
