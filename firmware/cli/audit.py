"""`umbra audit verify`: check a privacy audit log's hash chain and its signed head."""

from __future__ import annotations

import argparse
from pathlib import Path

from firmware.errors import AuditError
from firmware.privacy.audit import verify


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Fills the `umbra audit` parser (the app creates it and calls this)."""
    sub = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    ver = sub.add_parser("verify", help="check the hash chain and head of an audit log")
    ver.add_argument("file", type=Path)
    ver.add_argument("--public-key", default=None,
                     help="the device key that signs the head: base64 of a raw Ed25519 key or of a DER SPKI")
    ver.add_argument("--cert", type=Path, default=None, help="the device certificate (PEM) whose key signs the head")
    ver.add_argument("--seen-counter", type=int, default=None,
                     help="the last audit head counter the cloud recorded for this device")
    ver.set_defaults(func=_cmd_verify)


def _cmd_verify(args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise AuditError(f"no audit log at {args.file}; give the path of the log (e.g. <state_dir>/audit.jsonl)")
    if args.cert is not None and args.public_key is not None:
        raise AuditError("give --cert or --public-key, not both")
    result = verify(args.file, args.public_key, cert=args.cert, seen_counter=args.seen_counter)
    if result.ok:
        signed = ("head signature checked against the device key" if args.cert or args.public_key else
                  "head signature NOT checked against the device key (give --cert DEVICE_CERT.pem)")
        print(f"{args.file}: OK, {result.entries} entries, chain and head intact; {signed}")
        if result.torn_tail:
            print(f"  a torn last line of {result.torn_tail} bytes after the last entry (a write cut by a power cut, "
                  "not under the head): the device cuts it when it next opens the log")
        return 0
    print(f"{args.file}: TAMPERED or damaged ({result.entries} entries); first bad seq {result.first_bad_seq}")
    for problem in result.problems:
        print(f"  - {problem}")
    return 1
