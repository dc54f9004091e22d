"""Release bundles: a tar of the firmware tree (a wheel and its locked dependencies, or a whole tree) with a
manifest that names the version, the hardware it runs on, the oldest version it may upgrade from, and every
file's sha256 and length. The TUF targets metadata carries the bundle's own hash, length and the same
version/hardware/min_from (so a device can decide before it downloads)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from packaging.version import InvalidVersion, Version

from ota.errors import OtaError, Refused

SCHEMA = "umbra.release/1"


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str
    hardware: tuple[str, ...]
    min_from: str
    files: dict[str, dict[str, int | str]]

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "version": self.version, "hardware": list(self.hardware),
                "min_from": self.min_from, "files": self.files}


def parse_version(v: str) -> Version:
    try:
        return Version(v)
    except InvalidVersion as e:
        raise OtaError(f"{v!r} is not a version (PEP 440, e.g. 1.4.2)") from e


def build(src: Path, out: Path, version: str, hardware: list[str], min_from: str = "0",
          progress: Callable[[int], None] | None = None) -> Manifest:
    """Tar `src` into `out` with its manifest. Deterministic: same tree, same bytes."""
    parse_version(version), parse_version(min_from)
    if not hardware:
        raise OtaError("a release names the hardware it runs on (e.g. --hardware umbra-pi4)")
    src = Path(src)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if not files:
        raise OtaError(f"{src} holds no files to release")
    entries: dict[str, dict[str, int | str]] = {}
    for p in files:
        data = p.read_bytes()
        entries[p.relative_to(src).as_posix()] = {"sha256": hashlib.sha256(data).hexdigest(), "length": len(data)}
    man = Manifest(version, tuple(hardware), min_from, entries)
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "manifest.json", json.dumps(man.to_json(), sort_keys=True, indent=1).encode())
        for p in files:
            _add(tar, "files/" + p.relative_to(src).as_posix(), p.read_bytes())
            if progress:
                progress(p.stat().st_size)
    tmp.replace(out)
    return man


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


MAX_MANIFEST_BYTES = 4 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_NAME = 255 * 16  # a file's path in the release, in characters
# What a manifest may hold, checked before any of it is used: a file's name is a relative path of plain
# components (no "", ".", ".." nor a leading "/"), its length a whole number (a bool is no length) within the
# size the headers were checked against, its hash 64 hex digits.
MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["schema", "version", "hardware", "min_from", "files"],
    "properties": {
        "schema": {"const": SCHEMA}, "version": {"type": "string", "maxLength": 64},
        "min_from": {"type": "string", "maxLength": 64},
        "hardware": {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "string", "maxLength": 64}},
        "files": {"type": "object", "propertyNames": {
            "maxLength": MAX_NAME, "pattern": r"^(?!/)(?!.*(^|/)\.{0,2}(/|$))[^\x00]+$"},
            "additionalProperties": {"type": "object", "required": ["length", "sha256"], "properties": {
                "length": {"type": "integer", "minimum": 0},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
    },
}


def verify_and_extract(bundle: Path, dest: Path, hardware: str) -> Manifest:
    """Check every member against the manifest (no paths outside, no links, no sparse members, nothing extra,
    every declared size within the bundle's own) and write the files under `dest`, streaming. Raises Refused."""
    try:
        limit = Path(bundle).stat().st_size  # a plain member's bytes are inside the file: no more can be real
        with tarfile.open(bundle, "r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            names = [m.name for m in tar.getmembers()]
            if len(names) != len(members):  # a second member of one name would shadow the first
                raise Refused("bad_bundle", f"member {next(n for n in names if names.count(n) > 1)!r} appears twice")
            _check_declared_sizes(members, limit)
            man = _read_manifest(tar, members)
            if hardware not in man.hardware:
                raise Refused("wrong_hardware", f"release is for {', '.join(man.hardware)}, this is {hardware}")
            expected = {"manifest.json"} | {"files/" + k for k in man.files}
            if set(members) != expected:
                raise Refused("bad_bundle", f"members differ from the manifest: {sorted(set(members) ^ expected)[:3]}")
            for name, entry in man.files.items():
                m = members["files/" + name]
                if not m.isfile() or ".." in Path(name).parts or name.startswith("/"):
                    raise Refused("bad_bundle", f"member {name!r} is not a plain file inside the bundle")
                if m.size != entry["length"]:
                    raise Refused("bad_bundle", f"{name}: declared size {m.size} is not its manifest length")
            for name, entry in man.files.items():
                _extract_checked(tar, members["files/" + name], dest / name, str(entry["sha256"]))
    except (tarfile.TarError, KeyError, ValueError, TypeError, OSError) as e:
        raise Refused("bad_bundle", f"unreadable bundle: {e}") from e
    (dest / "manifest.json").write_text(json.dumps(man.to_json(), sort_keys=True))
    return man


def _read_manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> Manifest:
    """The manifest, refused unless it is a plain member holding JSON of MANIFEST_SCHEMA's shape."""
    m = members.get("manifest.json")
    if m is None or not m.isfile():
        raise Refused("bad_bundle", "no manifest.json" if m is None else "manifest.json is not a plain file")
    src = tar.extractfile(m)
    try:
        doc = json.loads(src.read(MAX_MANIFEST_BYTES), object_pairs_hook=_unique)  # type: ignore[union-attr]
    except RecursionError:
        raise Refused("bad_bundle", "manifest.json is nested too deep") from None
    try:
        jsonschema.validate(doc, MANIFEST_SCHEMA)
    except jsonschema.ValidationError as e:
        why = f"{e.instance!r} is not a relative path of plain parts" if e.validator == "pattern" and \
            e.schema is MANIFEST_SCHEMA["properties"]["files"]["propertyNames"] else e.message[:200]
        raise Refused("bad_bundle", f"manifest is not {SCHEMA}: {why}") from None
    return Manifest(doc["version"], tuple(doc["hardware"]), doc["min_from"], doc["files"])


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object whose keys are unique: a second "files" would otherwise replace the first unseen."""
    out = dict(pairs)
    if len(out) != len(pairs):
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise Refused("bad_bundle", f"manifest.json repeats the key {twice!r}")
    return out


def _check_declared_sizes(members: dict[str, tarfile.TarInfo], limit: int) -> None:
    """Refuse by the headers alone, before a byte is read: a sparse member (its holes read as gigabytes of
    zeros), or members declaring more bytes than the bundle file holds."""
    total = 0
    for m in members.values():
        if m.issparse() or m.size < 0 or m.size > limit:
            raise Refused("bad_bundle", f"member {m.name!r} declares {m.size} bytes (sparse or beyond the bundle's "
                                        f"{limit}); refused before reading it")
        total += m.size
    if total > limit:
        raise Refused("bad_bundle", f"members declare {total} bytes in a bundle of {limit}")
    if "manifest.json" in members and members["manifest.json"].size > MAX_MANIFEST_BYTES:
        raise Refused("bad_bundle", f"manifest.json is larger than {MAX_MANIFEST_BYTES} bytes")


def _extract_checked(tar: tarfile.TarFile, m: tarfile.TarInfo, target: Path, sha256: str) -> None:
    """Stream one member to `target` (a .part file, renamed once its hash matches)."""
    src = tar.extractfile(m)
    if src is None:
        raise Refused("bad_bundle", f"member {m.name!r} has no data")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    h, n = hashlib.sha256(), 0
    with part.open("wb") as out:
        while chunk := src.read(CHUNK):
            n += len(chunk)
            if n > m.size:
                break
            h.update(chunk)
            out.write(chunk)
    if n != m.size or h.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise Refused("bad_bundle", f"{m.name.removeprefix('files/')} does not match its manifest hash")
    part.replace(target)
