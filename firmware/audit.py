"""The privacy audit log: append-only, hash-chained JSON lines, fsynced, with an anchored head.

Each line is one entry `{"seq", "t", "event", "fields", "prev_hash", "hash"}` where
`hash = sha256(canonical JSON of the entry without "hash")` and `prev_hash` is the previous entry's hash
(64 zeros for the first). Editing, removing, inserting or reordering any entry breaks the chain at that
point, and `verify()` names it. A head file beside the log (`<log>.head`, replaced atomically after every
append) holds the last seq and hash, optionally signed by the device key: it exposes truncation from the
tail. Someone who can rewrite the whole file AND the head can forge a consistent log unless the head is
signed (pass `signer` / `public_key`), so sign it on devices.

Frame events are aggregated: one `frames` entry per wall-clock minute with the counts of frames processed,
destroyed (buffers zeroed) and dropped, not one row per frame (10 fps would mean 864,000 rows a day and an
fsync per frame). Other events are written as they happen: `records_released`, `budget_spent`,
`sample_taken`, `samples_purged`, `authorization_accepted`/`_refused`/`_used`, `dsr_access`, `dsr_erasure`.

CLI: `umbra audit verify FILE [--public-key B64]` exits 0 when the log verifies, 1 when it does not.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from firmware.errors import FirmwareError
from firmware.pki import write_atomic

log = logging.getLogger(__name__)

GENESIS = "0" * 64
KEYS = ("seq", "t", "event", "fields", "prev_hash", "hash")


class AuditSink(Protocol):
    """What the parts that audit need: `AuditLog` fits, and so does `NoAudit`."""

    def append(self, event: str, t: float, **fields: Any) -> Any: ...


class NoAudit:
    """An audit sink that keeps nothing (a device configured without an audit log)."""

    def append(self, event: str, t: float, **fields: Any) -> None:
        return None


class AuditError(FirmwareError):
    """The audit log cannot be opened or written (the device must stop releasing data when this happens)."""


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: entry[k] for k in KEYS[:-1]})).hexdigest()


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _head_message(seq: int, digest: str) -> bytes:
    return canonical({"seq": seq, "hash": digest})


class AuditLog:
    """Appends entries to `path`. `signer(message) -> signature` (e.g. the device's Ed25519 key) signs the head.
    Opening an existing log resumes its chain; a torn last line (a crash mid-write, not covered by the head)
    is cut off. Appends are serialized by a lock (the loop, the uploader and the CLI may share one log object);
    one process should own the file."""

    def __init__(self, path: str | os.PathLike[str], signer: Callable[[bytes], bytes] | None = None) -> None:
        self.path = Path(path)
        self._signer = signer
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.seq, self.last_hash = self._resume()

    def append(self, event: str, t: float, **fields: Any) -> dict[str, Any]:
        """Writes one entry (fsynced) and the new head; returns the entry. Raises AuditError."""
        with self._lock:
            return self._append(event, t, fields)

    def _append(self, event: str, t: float, fields: Mapping[str, Any]) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "seq": self.seq + 1, "t": round(float(t), 3), "event": str(event),
            "fields": json.loads(canonical(fields)), "prev_hash": self.last_hash,
        }
        entry["hash"] = entry_hash(entry)
        line = canonical(entry) + b"\n"
        try:
            with open(self.path, "ab") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self._write_head(entry["seq"], entry["hash"])
        except OSError as e:
            raise AuditError(f"cannot write the audit log {self.path}: {e.strerror}") from e
        self.seq, self.last_hash = entry["seq"], entry["hash"]
        return entry

    def _write_head(self, seq: int, digest: str) -> None:
        head: dict[str, Any] = {"seq": seq, "hash": digest}
        if self._signer is not None:
            head["sig"] = base64.b64encode(self._signer(_head_message(seq, digest))).decode("ascii")
        target = _head_path(self.path)
        write_atomic(target, canonical(head))

    def _resume(self) -> tuple[int, str]:
        if not self.path.exists():
            return 0, GENESIS
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise AuditError(f"cannot read the audit log {self.path}: {e.strerror}") from e
        lines = data.split(b"\n")
        if lines and lines[-1] != b"":  # torn last line: written but never completed nor anchored
            log.warning("audit log %s: cutting off a torn last line (%d bytes)", self.path, len(lines[-1]))
            with open(self.path, "r+b") as f:
                f.truncate(len(data) - len(lines[-1]))
                os.fsync(f.fileno())
        complete = [ln for ln in lines[:-1] if ln]
        if not complete:
            return 0, GENESIS
        try:
            last = json.loads(complete[-1])
            return int(last["seq"]), str(last["hash"])
        except (ValueError, KeyError, TypeError) as e:
            raise AuditError(f"audit log {self.path}: last entry unreadable; run `umbra audit verify`") from e


class FrameAudit:
    """Counts frames (and released track records) and writes one `frames` entry per wall-clock minute, with a
    `records_released` entry beside it when records left (and on `flush`)."""

    def __init__(self, audit: AuditLog, period_s: float = 60.0) -> None:
        self._audit = audit
        self.period_s = period_s
        self._bucket: int | None = None
        self.counts = {"processed": 0, "destroyed": 0, "dropped": 0}
        self.released = 0

    def count(self, t: float, processed: int = 0, destroyed: int = 0, dropped: int = 0, released: int = 0) -> None:
        bucket = int(t // self.period_s)
        if self._bucket is not None and bucket != self._bucket:
            self.flush(t)
        self._bucket = bucket
        self.counts["processed"] += processed
        self.counts["destroyed"] += destroyed
        self.counts["dropped"] += dropped
        self.released += released

    def flush(self, t: float) -> None:
        if self._bucket is None:
            return
        start = self._bucket * self.period_s
        if any(self.counts.values()):
            self._audit.append("frames", t, minute_start=start, **self.counts)
        if self.released:
            self._audit.append("records_released", t, kind="track", count=self.released, minute_start=start)
        self.counts = dict.fromkeys(self.counts, 0)
        self.released = 0


class FrameAuditSink:
    """A loop sink feeding `FrameAudit` from the loop's counters (every frame taken is released, and so zeroed,
    within its tick) and, where quantized tracks leave the device, from the records each tick released."""

    def __init__(self, loop: Any, audit: AuditLog, tracks_leave: bool) -> None:
        self._loop, self._frames, self._tracks_leave = loop, FrameAudit(audit), tracks_leave
        self._seen = (0, 0)

    def __call__(self, result: Any) -> None:
        st = self._loop.stats
        taken, missed = st.frames - self._seen[0], st.overruns - self._seen[1]
        self._seen = (st.frames, st.overruns)
        self._frames.count(result.wall, processed=taken, destroyed=taken, dropped=missed,
                           released=len(result.records) if self._tracks_leave else 0)

    def flush(self, t: float) -> None:
        self._frames.flush(t)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    entries: int
    problems: tuple[str, ...] = field(default_factory=tuple)
    first_bad_seq: int | None = None


def verify(path: str | os.PathLike[str], public_key: str | None = None) -> VerifyResult:
    """Checks every entry's hash, the chain, the sequence numbers and the head (signature too when
    `public_key`, base64 of a raw Ed25519 key, is given). Never raises on a bad log: reports it."""
    p = Path(path)
    try:
        raw_lines = p.read_bytes().split(b"\n")
    except OSError as e:
        return VerifyResult(False, 0, (f"cannot read {p}: {e.strerror}",), None)
    problems: list[str] = []
    first_bad: int | None = None
    prev_hash, prev_seq, n = GENESIS, 0, 0
    for lineno, raw in enumerate(raw_lines, 1):
        if not raw:
            continue
        n += 1
        problem, entry = _check_line(raw, lineno, prev_hash, prev_seq)
        if problem:
            problems.append(problem)
            if first_bad is None:
                first_bad = prev_seq + 1
        if entry is not None:
            prev_hash, prev_seq = entry["hash"], entry["seq"]
    problems.extend(_check_head(p, prev_seq, prev_hash, public_key))
    if problems and first_bad is None:
        first_bad = prev_seq + 1
    return VerifyResult(not problems, n, tuple(problems), first_bad)


def _check_line(raw: bytes, lineno: int, prev_hash: str, prev_seq: int) -> tuple[str | None, dict | None]:
    try:
        entry = json.loads(raw)
        if not isinstance(entry, dict) or set(entry) != set(KEYS):
            return f"line {lineno}: not an audit entry (keys {sorted(entry) if isinstance(entry, dict) else '?'})", None
    except ValueError:
        return f"line {lineno}: not JSON (torn or edited)", None
    seq = entry["seq"]
    if entry["hash"] != entry_hash(entry):
        return f"line {lineno} (seq {seq}): hash does not match its content: the entry was edited", entry
    if entry["prev_hash"] != prev_hash:
        return (f"line {lineno} (seq {seq}): prev_hash does not match the entry before it: an entry was "
                f"removed, inserted or reordered before it"), entry
    if seq != prev_seq + 1:
        return f"line {lineno}: seq {seq} follows seq {prev_seq}: entries removed, inserted or reordered", entry
    return None, entry


def _check_head(p: Path, last_seq: int, last_hash: str, public_key: str | None) -> list[str]:
    head_path = _head_path(p)
    try:
        head = json.loads(head_path.read_bytes())
    except FileNotFoundError:
        return [f"no head file {head_path.name}: truncation from the tail cannot be ruled out"]
    except (OSError, ValueError):
        return [f"head file {head_path.name} is unreadable"]
    problems = []
    if head.get("seq") != last_seq or head.get("hash") != last_hash:
        problems.append(f"the head anchors seq {head.get('seq')} but the log ends at seq {last_seq}: "
                        "entries were removed from the tail or the log was rewritten")
    if public_key is not None:
        problems.extend(_check_head_signature(head, public_key))
    return problems


def _check_head_signature(head: Mapping[str, Any], public_key: str) -> list[str]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if "sig" not in head:
        return ["the head is not signed"]
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(base64.b64decode(head["sig"]), _head_message(head["seq"], head["hash"]))
    except (InvalidSignature, ValueError, TypeError):
        return ["the head signature does not verify with the given key"]
    return []


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Fills the `umbra audit` parser (the app creates it and calls this)."""
    sub = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    ver = sub.add_parser("verify", help="check the hash chain and head of an audit log")
    ver.add_argument("file", type=Path)
    ver.add_argument("--public-key", default=None, help="base64 Ed25519 key that signed the head")
    ver.set_defaults(func=_cmd_verify)


def add_audit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds `audit` to a subparsers object (for a CLI other than `umbra`)."""
    parser = subparsers.add_parser("audit", help="verify the privacy audit log")
    add_parser(parser)
    return parser


def _cmd_verify(args: argparse.Namespace) -> int:
    if not Path(args.file).is_file():
        raise AuditError(f"no audit log at {args.file}; give the path of the log (e.g. <state_dir>/audit.jsonl)")
    result = verify(args.file, args.public_key)
    if result.ok:
        print(f"{args.file}: OK, {result.entries} entries, chain and head intact")
        return 0
    print(f"{args.file}: TAMPERED or damaged ({result.entries} entries); first bad seq {result.first_bad_seq}")
    for problem in result.problems:
        print(f"  - {problem}")
    return 1
