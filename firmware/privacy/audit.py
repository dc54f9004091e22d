"""The privacy audit log: append-only, hash-chained JSON lines, fsynced, with an anchored head.

Each line is one entry `{"seq", "t", "event", "fields", "prev_hash", "hash"}` where
`hash = sha256(canonical JSON of the entry without "hash")` and `prev_hash` is the previous entry's hash
(64 zeros for the first). Editing, removing, inserting or reordering any entry breaks the chain at that
point, and `verify()` names it. A head file beside the log (`<log>.head`, replaced atomically after every
append) holds the last seq and hash, signed by the device key on devices: it exposes truncation from the
tail. Someone who can rewrite the whole file AND the head can forge a consistent log unless the head is
signed and checked against the device key (`verify(..., cert=)`): the running sensor signs it with its TLS
client key (`trust.devicekey`). The log names each key that signs its heads in an `audit_signing` entry
(the first signed append, and after each certificate renewal), so a head re-written unsigned or with another
key fails even without the certificate, unless the whole log was forged. A writer that opens the log (or
finds it shrunk under it) checks the head against it; a mismatch means entries were cut or the log was
rewritten while nobody was writing, and is recorded for good as an `audit_tamper_found` entry, so a restart
cannot hide it under a fresh, valid signature.

Frame events are aggregated (`firmware.privacy.frameaudit`): one `frames` entry per wall-clock minute with the counts
of frames processed, destroyed (buffers zeroed) and dropped, not one row per frame. Other events are written
as they happen, each before what it vouches for leaves (one that cannot be written: it does not leave):
`records_released` (kind aggregate, track or alert), `budget_spent`, the holds while wall time is untrusted
(`authorization_held`, `authorizations_held`, `alerts_held`, `flowgroups_held`, `demographics_held`),
`sample_taken`, `sample_dropped` (reason `not-clean`, `worker-busy`, `error` or `shutdown`), `samples_purged`,
`authorization_accepted`/`_refused`/`_used`/`_dropped`/`_revoked`, `dsr_access`, `dsr_erasure`, and the log's
own `audit_signing`, `audit_tamper_found` and
`audit_unanchored` (on opening, the last entry was not yet under a head: a crash between the two writes, or
an entry appended by someone else while nobody was writing; the chain cannot tell which).

Damage (`firmware.privacy.auditfile`): a power cut can only leave a torn last line after the last complete
entry (each line is fsynced before its head), which a writer cuts and `verify()` accepts (`torn_tail`).
Anything else that removes entries (NUL bytes or garbage where entries were, a zeroed file whose head is gone
but whose high-water mark remembers its entries) is named by `verify()` and recorded by the writer in the
chain it continues after the last good entry: `umbra run` keeps running, and the budget ledger releases
nothing more that day (`budget_day_withheld`).

CLI: `umbra audit verify FILE [--cert DEVICE_CERT.pem | --public-key B64]` exits 0 when the log verifies,
1 when it does not.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from firmware.config import UmbraConfig, resolve_path
from firmware.errors import AuditError
from firmware.privacy.auditfile import GENESIS, KEYS, Tail, describe, is_torn, scan, unrecorded_damage
from trust.devicekey import device_signer, key_b64, public_key_from_b64, public_key_from_cert, signature_ok
from trust.errors import DeviceKeyError
from trust.files import canonical, check_regular, write_atomic

log = logging.getLogger(__name__)



class AuditSink(Protocol):
    """What the parts that audit need: `AuditLog` fits, and so does `NoAudit`."""

    def append(self, event: str, t: float, **fields: Any) -> Any: ...


class NoAudit:
    """An audit sink that keeps nothing (a device configured without an audit log)."""

    def append(self, event: str, t: float, **fields: Any) -> None:
        return None


def audited(audit: AuditSink | Callable[..., Any], event: str, t: float, **fields: Any) -> bool:
    """Writes the entry that vouches for a release, before the release: False (logged) when it cannot be written
    (a full disk, a read-only file system), and then what it vouches for must not leave. The failure is counted
    by the log (`AuditLog.failures`); the caller counts what it withheld."""
    try:
        (audit.append if hasattr(audit, "append") else audit)(event, t, **fields)
    except AuditError as e:
        log.error("%s not written, so nothing it vouches for is released: %s", event, e)
        return False
    return True


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: entry[k] for k in KEYS[:-1]})).hexdigest()


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _mark_path(path: Path) -> Path:
    return path.with_name(path.name + ".hwm")


def _head_message(seq: int, digest: str, counter: int | None = None) -> bytes:
    if counter is None:  # a head written before heads carried a counter
        return canonical({"seq": seq, "hash": digest})
    return canonical({"seq": seq, "hash": digest, "counter": counter})


def head_counter(head: Mapping[str, Any]) -> int:
    """A head's monotonic counter (its seq for a head written before heads carried one)."""
    c = head.get("counter", head.get("seq", 0))
    return int(c) if isinstance(c, int) else 0


def read_mark(path: str | os.PathLike[str]) -> int | None:
    """The high-water mark of the log at `path`: the highest head counter it has ever written (None: none)."""
    try:
        mark = json.loads(_mark_path(Path(path)).read_bytes())
        return int(mark["counter"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_mark_seq(path: str | os.PathLike[str]) -> int | None:
    """The seq of the log's last entry when the high-water mark was last written (None: no mark)."""
    try:
        seq = json.loads(_mark_path(Path(path)).read_bytes())["seq"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return seq if isinstance(seq, int) else None


def rollback_problems(head: Mapping[str, Any] | None, seen: int | None, by: str) -> list[str]:
    """A head older than a counter seen before (`by`: who saw it) means the log and its head were rolled back."""
    if seen is None or head is None or head_counter(head) >= seen:
        return []
    return [f"the head's counter {head_counter(head)} is below the {seen} {by} saw: the log and its head were "
            "rolled back to an earlier snapshot"]


class HeadSigner(Protocol):
    """A signer that names its key (`trust.devicekey.KeyFileSigner`): the head then carries `alg` and `key`
    (base64 DER SPKI) beside `sig`, and the log records each new key in an `audit_signing` entry."""

    @property
    def alg(self) -> str: ...

    def sign(self, message: bytes) -> bytes: ...

    def public_key_b64(self) -> str: ...


def head_problems(head: Mapping[str, Any] | None, last: tuple[int, str], before_last: tuple[int, str] | None,
                  named: tuple[str, str] | None) -> list[str]:
    """What is wrong with a head for a log ending at `last` (`before_last` accepted too: a crash between the
    line and its head), when the log names `named` = (alg, key) as the key of that head (None: unsigned)."""
    if head is None:  # every append writes a head: a log without one was cut and its head deleted
        return [] if last[0] == 0 else [f"no head file, though the log holds {last[0]} entries: the head was "
                                         "deleted (and the log perhaps cut back)"]
    anchored = (head.get("seq"), head.get("hash"))
    if anchored != last and (before_last is None or anchored != before_last):
        return [f"the head anchors seq {head.get('seq')} but the log ends at seq {last[0]}: entries were removed "
                "from the tail or the log was rewritten"]
    if named is None:
        return []
    if "sig" not in head:
        return ["the head is not signed, though the log says its heads are signed by the device key"]
    try:
        ok = signature_ok(public_key_from_b64(named[1]), base64.b64decode(head["sig"]),
                          _head_message(int(head["seq"]), str(head["hash"]), head.get("counter")))
    except (DeviceKeyError, ValueError, TypeError):
        ok = False
    return [] if ok else ["the head signature does not verify with the device key the log names"]


class AuditLog:
    """Appends entries to `path`. `signer` signs the head: a `HeadSigner` (the device key, see
    `audit_log_for`) or a plain `signer(message) -> signature` (e.g. an Ed25519 key's
    `sign`). Opening an existing log resumes its chain after its last entry; a torn last line (a crash
    mid-write after the last entry, perhaps NUL-padded, not covered by the head, nothing else wrong) is cut
    off. NULs or garbage in place of entries, or a tail that is not a torn line, are left as found and
    recorded as `audit_tamper_found` (once: damage before an earlier such entry was recorded by it).
    Opening also checks the head it finds against the log (and, when the log names a signing key, its
    signature): a mismatch means the log was cut or rewritten while nobody was writing, and
    is recorded for good as an `audit_tamper_found` entry (which `verify()` reports), so a restart cannot
    launder it under a fresh signature. Appends are serialized by a lock within a process and by an flock on
    the file across processes (the sensor and `umbra samples`/`umbra privacy` may append to one log)."""

    def __init__(self, path: str | os.PathLike[str], signer: HeadSigner | Callable[[bytes], bytes] | None = None
                 ) -> None:
        self.path = Path(path)
        self._signer: HeadSigner | None = signer if hasattr(signer, "public_key_b64") else None  # type: ignore[assignment]
        self._sign_raw: Callable[[bytes], bytes] | None = None if self._signer is not None else signer  # type: ignore[assignment]
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.seq, self.last_hash, self._size = 0, GENESIS, 0
        self.counter = 0  # the head's monotonic counter: one more on every head written, never reset
        self.head: dict[str, Any] | None = None  # the last head written (it travels with upload batches)
        self._logged_key: str | None = None
        self._unanchored: int | None = None
        self.failures = 0  # appends that raised AuditError (a full disk): counted, reported at stop
        with self._lock, self._locked_file() as f:
            problems = self._resume(f)
            self.tamper_found = tuple(problems)  # what opening found (the budget ledger then trusts no spend)
            if problems:
                log.error("audit log %s: %s", self.path, "; ".join(problems))
                self._append(f, "audit_tamper_found", self._last_t, {"problems": problems, "log_seq": self.seq})
            elif self._unanchored is not None:  # said in the log: that entry was never under a head before
                self._append(f, "audit_unanchored", self._last_t, {"seq": self._unanchored})

    def append(self, event: str, t: float, **fields: Any) -> dict[str, Any]:
        """Writes one entry (fsynced) and the new head; returns the entry. Raises AuditError (counted)."""
        try:
            with self._lock, self._locked_file() as f:
                if os.fstat(f.fileno()).st_size != self._size:  # another process appended since
                    self._refresh(f)
                return self._append(f, event, t, fields)
        except OSError as e:  # cutting a torn line, closing a file whose buffer cannot be written out
            self.failures += 1
            raise AuditError(f"cannot write the audit log {self.path}: {e.strerror}") from e
        except AuditError:
            self.failures += 1
            raise

    @contextlib.contextmanager
    def _locked_file(self) -> Iterator[Any]:
        try:
            check_regular(self.path)
            f = open(self.path, "a+b")
        except OSError as e:
            raise AuditError(f"cannot open the audit log {self.path}: {e.strerror}") from e
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            yield f
        finally:
            f.close()  # releases the flock

    def _append(self, f: BinaryIO, event: str, t: float, fields: Mapping[str, Any]) -> dict[str, Any]:
        key = self._signer.public_key_b64() if self._signer is not None else None
        if self._signer is not None and key != self._logged_key:  # a new device key (first signed run, renewal)
            self._logged_key = key
            self._append(f, "audit_signing", t, {"alg": self._signer.alg, "key": key})
        entry: dict[str, Any] = {
            "seq": self.seq + 1, "t": round(float(t), 3), "event": str(event),
            "fields": json.loads(canonical(fields)), "prev_hash": self.last_hash,
        }
        entry["hash"] = entry_hash(entry)
        line = canonical(entry) + b"\n"
        try:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
            self._write_head(entry["seq"], entry["hash"])
        except OSError as e:
            raise AuditError(f"cannot write the audit log {self.path}: {e.strerror}") from e
        self.seq, self.last_hash, self._last_t = entry["seq"], entry["hash"], entry["t"]
        self._size = os.fstat(f.fileno()).st_size
        return entry

    def _write_head(self, seq: int, digest: str) -> None:
        counter = self.counter + 1
        head: dict[str, Any] = {"seq": seq, "hash": digest, "counter": counter}
        message = _head_message(seq, digest, counter)
        if self._signer is not None:
            head.update(sig=base64.b64encode(self._signer.sign(message)).decode("ascii"), alg=self._signer.alg,
                        key=self._logged_key)
        elif self._sign_raw is not None:
            head["sig"] = base64.b64encode(self._sign_raw(message)).decode("ascii")
        write_atomic(_head_path(self.path), canonical(head))
        write_atomic(_mark_path(self.path), canonical({"counter": counter, "seq": seq}))
        self.counter, self.head = counter, head

    def _read(self, f: BinaryIO) -> bytes:
        try:
            f.seek(0)
            return f.read()
        except OSError as e:
            raise AuditError(f"cannot read the audit log {self.path}: {e.strerror}") from e

    def _resume(self, f: BinaryIO) -> list[str]:
        """Takes up the chain after the last entry in the file; returns what is wrong with the file and the head
        found beside it. Only a torn last line (`auditfile.is_torn`) with nothing else wrong is cut off; any
        other damage is left in place (verify() keeps naming it) and the chain goes on after the last entry."""
        data = self._read(f)
        cut = data.rfind(b"\n") + 1
        complete, rest = data[:cut], data[cut:]
        tail = scan(complete)
        self.seq, self.last_hash, self._last_t = tail.last[0], tail.last[1], tail.last_t
        self._logged_key = tail.keys[-1][2] if tail.keys else None
        head, problems = self._load_head()
        mark = read_mark(self.path)
        self.counter = max(head_counter(head) if head else 0, mark or 0, self.seq)
        self.head = head
        if not problems:
            named = tail.key_at(head["seq"]) if head is not None and isinstance(head.get("seq"), int) else None
            problems = head_problems(head, tail.last, tail.before_last, named)
            problems += rollback_problems(head, mark, "high-water mark beside the log")
            marked = read_mark_seq(self.path)
            if not problems and head is None and marked is not None and marked > tail.last[0]:
                problems.append(f"no head file, and the high-water mark says the log held {marked} entries but it "
                                f"ends at seq {tail.last[0]}: entries were removed or zeroed")
            if not problems and head is not None and (head.get("seq"), head.get("hash")) != tail.last:
                self._unanchored = tail.last[0]  # a crash between the last line and its head
        problems = unrecorded_damage(complete) + problems
        if rest and not is_torn(rest):
            problems.append(f"after the last entry (seq {self.seq}): {describe(rest)}, not a torn last line")
        if rest:
            self._end_tail(f, rest, cut, keep=bool(problems))
        self._size = os.fstat(f.fileno()).st_size
        if problems:
            self._unanchored = None
        return problems

    def _load_head(self) -> tuple[dict[str, Any] | None, list[str]]:
        try:
            head = json.loads(_head_path(self.path).read_bytes())
        except FileNotFoundError:
            return None, []
        except (OSError, ValueError):
            return None, ["the head file is unreadable"]
        if not isinstance(head, dict):
            return None, ["the head file is not a head"]
        return head, []

    def _end_tail(self, f: BinaryIO, rest: bytes, cut: int, *, keep: bool) -> None:
        """A torn last line, when nothing else is wrong, is cut off; with damage found it is kept (evidence)
        and ended with a newline, so the next entry starts on a line of its own."""
        if keep:
            log.error("audit log %s: %d bytes after the last entry kept as found (the log is damaged)",
                      self.path, len(rest))
            f.write(b"\n")
            f.flush()
        else:
            log.warning("audit log %s: cutting off a torn last line (%d bytes)", self.path, len(rest))
            f.truncate(cut)
        os.fsync(f.fileno())

    def _refresh(self, f: BinaryIO) -> None:
        """The file changed under us: another process appended (take up the chain after its entries, and any
        key it named: only the new bytes are read), or it shrank (checked as on opening, damage recorded)."""
        if os.fstat(f.fileno()).st_size < self._size:
            problems = self._resume(f)
            if problems:
                log.error("audit log %s: %s", self.path, "; ".join(problems))
                self._append(f, "audit_tamper_found", self._last_t, {"problems": problems, "log_seq": self.seq})
            return
        start = max(0, self._size - 1)
        try:
            f.seek(start)
            new = f.read()
        except OSError as e:
            raise AuditError(f"cannot read the audit log {self.path}: {e.strerror}") from e
        complete = new[:new.rfind(b"\n") + 1]
        if len(complete) < len(new):  # that process died mid-line: cut it, as opening would
            f.truncate(start + len(complete))
        tail = scan(complete)
        self.counter = max(self.counter, read_mark(self.path) or 0)  # that process wrote heads too
        if tail.last[0]:
            self.seq, self.last_hash = tail.last
        if tail.keys:
            self._logged_key = tail.keys[-1][2]
        self._size = start + len(complete)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    entries: int
    problems: tuple[str, ...] = field(default_factory=tuple)
    first_bad_seq: int | None = None
    torn_tail: int = 0  # bytes of a torn last line after the last entry (not a problem: the writer cuts it)


def verify(path: str | os.PathLike[str], public_key: str | None = None, *,
           cert: str | os.PathLike[str] | None = None, seen_counter: int | None = None) -> VerifyResult:
    """Checks every entry's hash, the chain, the sequence numbers and the head; reports every
    `audit_tamper_found` entry (damage the device itself found on opening the log). The head signature is
    checked against the key the log names for it (`audit_signing` entries) and, when given, against the device
    key: `cert` (the device certificate, PEM) or `public_key` (base64: raw Ed25519, or DER SubjectPublicKeyInfo).
    Only the given key proves the log against a forger who rewrote all of it. A head whose counter is below
    the log's high-water mark (`<log>.hwm`) or below `seen_counter` (the last counter the cloud recorded for
    the device) means (log, head) were rolled back to an earlier snapshot. Never raises on a bad log."""
    p = Path(path)
    try:
        raw_lines = p.read_bytes().split(b"\n")
    except OSError as e:
        return VerifyResult(False, 0, (f"cannot read {p}: {e.strerror}",), None)
    tail = raw_lines[-1]
    torn = len(tail) if tail and is_torn(tail) else 0
    if torn:  # a write cut by a power cut after the last entry: the writer cuts it (if the head covers no more)
        raw_lines[-1] = b""
    problems, first_bad, (prev_seq, prev_hash), n, keys = _check_lines(raw_lines)
    head_bad = _check_head(p, prev_seq, prev_hash, Tail((0, ""), (0, ""), tuple(keys)), public_key, cert,
                           seen_counter)
    if torn and head_bad:  # the head (or its absence) says entries may be missing: the tail is no torn line
        head_bad.append(f"after the last entry (seq {prev_seq}): {describe(tail)}, where the head or its absence "
                        "says entries may have been: not a torn last line")
        torn = 0
    problems.extend(head_bad)
    if problems and first_bad is None:
        first_bad = prev_seq + 1
    return VerifyResult(not problems, n, tuple(problems), first_bad, torn)


def _check_lines(raw_lines: list[bytes]) -> tuple[list[str], int | None, tuple[int, str], int,
                                                  list[tuple[int, str, str]]]:
    """Every line's hash, link and seq: (problems, first bad seq, last (seq, hash), entries, signing keys)."""
    problems: list[str] = []
    first_bad: int | None = None
    prev_hash, prev_seq, n = GENESIS, 0, 0
    keys: list[tuple[int, str, str]] = []
    for lineno, raw in enumerate(raw_lines, 1):
        if not raw:
            continue
        n += 1
        problem, entry = _check_line(raw, lineno, prev_hash, prev_seq)
        if problem is None and entry is not None:
            problem = _entry_note(entry, keys)
        if problem:
            problems.append(problem)
            if first_bad is None:
                first_bad = prev_seq + 1
        if entry is not None:
            prev_hash, prev_seq = entry["hash"], entry["seq"]
    return problems, first_bad, (prev_seq, prev_hash), n, keys


def _entry_note(entry: Mapping[str, Any], keys: list[tuple[int, str, str]]) -> str | None:
    fields = entry["fields"] if isinstance(entry["fields"], dict) else {}
    if entry["event"] == "audit_signing":
        keys.append((entry["seq"], str(fields.get("alg")), str(fields.get("key"))))
    if entry["event"] == "audit_tamper_found":
        return (f"seq {entry['seq']}: on opening the log the device found it damaged: "
                + "; ".join(map(str, fields.get("problems", []))))
    return None
def _check_line(raw: bytes, lineno: int, prev_hash: str, prev_seq: int) -> tuple[str | None, dict | None]:
    try:
        entry = json.loads(raw)
        if not isinstance(entry, dict) or set(entry) != set(KEYS):
            return f"line {lineno}: not an audit entry (keys {sorted(entry) if isinstance(entry, dict) else '?'})", None
    except ValueError:
        return f"line {lineno}: {describe(raw)}", None
    seq = entry["seq"]
    if entry["hash"] != entry_hash(entry):
        return f"line {lineno} (seq {seq}): hash does not match its content: the entry was edited", entry
    if entry["prev_hash"] != prev_hash:
        return (f"line {lineno} (seq {seq}): prev_hash does not match the entry before it: an entry was "
                f"removed, inserted or reordered before it"), entry
    if seq != prev_seq + 1:
        return f"line {lineno}: seq {seq} follows seq {prev_seq}: entries removed, inserted or reordered", entry
    return None, entry


def _check_head(p: Path, last_seq: int, last_hash: str, tail: Tail, public_key: str | None,
                cert: str | os.PathLike[str] | None, seen_counter: int | None = None) -> list[str]:
    head_path = _head_path(p)
    try:
        head = json.loads(head_path.read_bytes())
    except FileNotFoundError:
        return [f"no head file {head_path.name}: truncation from the tail cannot be ruled out"]
    except (OSError, ValueError):
        return [f"head file {head_path.name} is unreadable"]
    if not isinstance(head, dict):
        return [f"head file {head_path.name} is not a head"]
    named = tail.key_at(head["seq"]) if isinstance(head.get("seq"), int) else None
    problems = rollback_problems(head, read_mark(p), "high-water mark beside the log")
    problems += rollback_problems(head, seen_counter, "cloud (or another witness)")
    problems += head_problems(head, (last_seq, last_hash), None, named)
    if (public_key is not None or cert is not None) and ("sig" in head or named is None):  # else said above
        problems.extend(_check_head_signature(head, public_key, cert))
    return problems


def _check_head_signature(head: Mapping[str, Any], public_key: str | None,
                          cert: str | os.PathLike[str] | None) -> list[str]:
    try:
        key = public_key_from_cert(cert) if cert is not None else public_key_from_b64(str(public_key))
    except DeviceKeyError as e:
        return [str(e)]
    if "sig" not in head:
        return ["the head is not signed"]
    try:
        ok = signature_ok(key, base64.b64decode(head["sig"]),
                          _head_message(int(head["seq"]), str(head["hash"]), head.get("counter")))
    except (ValueError, TypeError):
        ok = False
    if ok:
        return []
    if head.get("key") and head["key"] != key_b64(key):
        return ["the head signature does not verify with the given key: the head names another key (a device "
                "key renewed since that certificate? use the current one) or the log was forged"]
    return ["the head signature does not verify with the given key"]


def audit_log_for(cfg: UmbraConfig, base: Path) -> AuditLog | None:
    """The config's privacy audit log (`[privacy] audit_file`, None when empty), its head signed with the device
    key (`[sync.tls] key_file`) when the device has one. Every writer of the log (umbra run, umbra privacy,
    umbra samples) opens it through here, so no writer leaves an unsigned head behind a signed one."""
    if not cfg.privacy.audit_file:
        return None
    path = resolve_path(cfg.privacy.audit_file, base)
    return AuditLog(path, signer=device_signer(cfg.sync.tls.key_file, path))
