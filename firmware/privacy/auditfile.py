"""Reading the audit log's bytes as a writer resumes them: where its complete entries end, whether what
follows them is a torn last line, and which lines are not entries at all.

A power cut can leave only one kind of damage behind a writer that fsyncs each line before its head: the line
being written, cut short (a prefix of a JSON object) and, on ext4 with delayed allocation, padded with NUL
bytes up to the size the metadata already recorded. That tail, after the last complete entry and not covered
by the head, is a torn last line, and the writer may cut it. Anything else (NUL bytes or other garbage where
complete entries were, a tail that is not the start of an entry) is damage: it is never cut, so `verify()`
keeps naming it, and the writer records it (`audit_tamper_found`) and chains on after the last good entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
KEYS = ("seq", "t", "event", "fields", "prev_hash", "hash")
SIGNING_MARKER = b'"event":"audit_signing"'  # canonical JSON: a string value cannot hold it unescaped
TAMPER_MARKER = b'{"event":"audit_tamper_found"'
ENTRY_START = b'{"event":'  # canonical JSON sorts the keys: every entry line begins so


@dataclass(frozen=True, slots=True)
class Tail:
    """What resuming needs from a log: its last two (seq, hash), the signing keys it names by seq, and the
    time of its last entry."""

    last: tuple[int, str]
    before_last: tuple[int, str]
    keys: tuple[tuple[int, str, str], ...]  # (seq of the audit_signing entry, alg, key)
    last_t: float = 0.0

    def key_at(self, seq: int) -> tuple[str, str] | None:
        named = [(alg, key) for s, alg, key in self.keys if s <= seq]
        return named[-1] if named else None


def is_torn(tail: bytes) -> bool:
    """Whether the bytes after a log's last newline are what a power cut leaves of one line being written: a
    start of a JSON object with no NUL in it, then NULs only (or NULs only). Garbage is not."""
    s = tail.rstrip(b"\0")
    if not s:
        return True
    if not s.startswith(b"{") or b"\0" in s:
        return False
    try:
        s.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def as_entry(raw: bytes) -> dict[str, Any] | None:
    """The entry a line holds, or None when it is not one (not JSON, NULs, other keys)."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(entry, dict) or set(entry) != set(KEYS):
        return None
    if not isinstance(entry["seq"], int) or not isinstance(entry["hash"], str):
        return None
    return entry


def describe(raw: bytes) -> str:
    """What a line that is not an entry holds, in a few words."""
    if not raw.strip(b"\0"):
        return f"{len(raw)} NUL bytes in place of entries (zeroed)"
    if b"\0" in raw:
        nuls = raw.count(b"\0")
        return f"{len(raw)} bytes with {nuls} NULs in place of entries"
    return "not an audit entry (not JSON, torn or edited)"


def damaged_lines(data: bytes, first: int = 1) -> list[str]:
    """Lines of complete log bytes (ending in a newline) that are not entries, named by line number (the first
    is line `first`). Cheap when there are none: every entry line starts with ENTRY_START, none holds a NUL."""
    lines = data.count(b"\n") - data.count(b"\n\n") - data.startswith(b"\n")  # blank lines are no entries
    starts = data.count(b"\n" + ENTRY_START) + data.startswith(ENTRY_START)
    if lines == starts and b"\0" not in data:
        return []
    out = []
    for lineno, raw in enumerate(data.split(b"\n")[:-1], first):
        if raw and (b"\0" in raw or as_entry(raw) is None):
            out.append(f"line {lineno}: {describe(raw)}")
    return out


def scan(data: bytes) -> Tail:
    """The tail of complete log bytes: the last two lines that are entries (lines that are not are passed over:
    `damaged_lines` names them); `audit_signing` entries are found by their marker, so a long log is not parsed
    line by line (verify() does that)."""
    ends: list[dict[str, Any]] = []
    stop = len(data.rstrip(b"\n"))
    while len(ends) < 2 and stop > 0:
        start = data.rfind(b"\n", 0, stop) + 1
        entry = as_entry(data[start:stop]) if data[start:stop] else None
        if entry is not None:
            ends.insert(0, entry)
        stop = start - 1
    pairs = [(int(e["seq"]), str(e["hash"])) for e in ends]
    pairs = [(0, GENESIS)] * (2 - len(pairs)) + pairs
    keys = []
    pos = data.find(SIGNING_MARKER)
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        stop = data.find(b"\n", pos)
        entry = as_entry(data[start:stop if stop >= 0 else len(data)])
        if entry is not None and entry.get("event") == "audit_signing" and isinstance(entry["fields"], dict):
            keys.append((int(entry["seq"]), str(entry["fields"].get("alg")), str(entry["fields"].get("key"))))
        pos = data.find(SIGNING_MARKER, pos + 1)
    last_t = ends[-1]["t"] if ends and isinstance(ends[-1]["t"], (int, float)) else 0.0
    return Tail(pairs[1], pairs[0], tuple(keys), float(last_t))


def unrecorded_damage(data: bytes) -> list[str]:
    """`damaged_lines` after the last `audit_tamper_found` entry: damage before it was found and recorded by an
    earlier opening (verify() still names it), so a restart does not record it again."""
    pos = data.rfind(TAMPER_MARKER)
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        stop = data.find(b"\n", pos)
        if stop >= 0 and as_entry(data[start:stop]) is not None:
            return damaged_lines(data[stop + 1:], data.count(b"\n", 0, stop) + 2)
        pos = data.rfind(TAMPER_MARKER, 0, pos)
    return damaged_lines(data)
