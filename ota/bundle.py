"""Release bundles: a tar of the firmware tree (a wheel and its locked dependencies, or a whole tree) with a
manifest that names the version, the hardware it runs on, the oldest version it may upgrade from, and every
file's sha256 and length. The TUF targets metadata carries the bundle's own hash, length and the same
version/hardware/min_from (so a device can decide before it downloads)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def verify_and_extract(bundle: Path, dest: Path, hardware: str) -> Manifest:
    """Check every member against the manifest (no paths outside, no links, nothing extra) and write the
    files under `dest`. Raises Refused."""
    try:
        with tarfile.open(bundle, "r:") as tar:
            members = {m.name: m for m in tar.getmembers()}
            if "manifest.json" not in members:
                raise Refused("bad_bundle", "no manifest.json")
            doc = json.loads(tar.extractfile(members["manifest.json"]).read())  # type: ignore[union-attr]
            if doc.get("schema") != SCHEMA:
                raise Refused("bad_bundle", f"manifest is not {SCHEMA}")
            man = Manifest(doc["version"], tuple(doc["hardware"]), doc["min_from"], doc["files"])
            if hardware not in man.hardware:
                raise Refused("wrong_hardware", f"release is for {', '.join(man.hardware)}, this is {hardware}")
            expected = {"manifest.json"} | {"files/" + k for k in man.files}
            if set(members) != expected:
                raise Refused("bad_bundle", f"members differ from the manifest: {sorted(set(members) ^ expected)[:3]}")
            for name, entry in man.files.items():
                m = members["files/" + name]
                if not m.isfile() or ".." in Path(name).parts or name.startswith("/"):
                    raise Refused("bad_bundle", f"member {name!r} is not a plain file inside the bundle")
                data = tar.extractfile(m).read()  # type: ignore[union-attr]
                if len(data) != entry["length"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise Refused("bad_bundle", f"{name} does not match its manifest hash")
                target = dest / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    except (tarfile.TarError, KeyError, ValueError, OSError) as e:
        raise Refused("bad_bundle", f"unreadable bundle: {e}") from e
    (dest / "manifest.json").write_text(json.dumps(man.to_json(), sort_keys=True))
    return man
