"""The ops side of OTA: a TUF repository on disk, built with python-tuf's metadata API.

Roles: root (threshold 2 of 3 keys), targets, snapshot, timestamp; Ed25519 keys (securesystemslib's
CryptoSigner; in production the root keys live offline and the others in an HSM, behind the same Signer
interface). Consistent snapshots: metadata as N.role.json, targets as <sha256>.<name>, so a device never mixes
files from two publications. Releases are targets `releases/<hardware>/<version>.tar` whose custom fields
carry version, hardware and min_from; the rollout plan is a signed target `rollout.json` too, so stages,
pauses and halts reach devices with the same guarantees as the firmware.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from securesystemslib.signer import CryptoSigner, Signer
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from ota.errors import OtaError
from trust.files import write_atomic

ROLES = ("root", "targets", "snapshot", "timestamp")
EXPIRY_DAYS = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 1}
ROLLOUT = "rollout.json"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _signer_from_pem(pem: bytes) -> CryptoSigner:
    return CryptoSigner(serialization.load_pem_private_key(pem, password=None))


MAX_ROOT_KEYS = 64  # root keys of a repository (TUF's root role), each an offline key to keep

class Repository:
    """`Repository(dir)`: dir/keys/<role>-<n>.pem (ops secrets, never served), dir/public/metadata and
    dir/public/targets (what a server publishes: the reference cloud serves dir/public at /ota/)."""

    def __init__(self, root: Path, now: dt.datetime | None = None) -> None:
        self.dir = Path(root)
        self.public = self.dir / "public"
        self.keys_dir = self.dir / "keys"
        self.meta_dir, self.targets_dir = self.public / "metadata", self.public / "targets"
        self.now = now or _now()

    # -- keys ---------------------------------------------------------------------------------------------

    def signers(self, role: str) -> list[Signer]:
        return [_signer_from_pem(p.read_bytes()) for p in sorted(self.keys_dir.glob(f"{role}-*.pem"))]

    def _new_key(self, role: str, n: int) -> CryptoSigner:
        signer = CryptoSigner.generate_ed25519()
        path = self.keys_dir / f"{role}-{n}.pem"
        write_atomic(path, signer.private_bytes, private=True)  # 0600 from its first byte
        return signer

    # -- metadata io --------------------------------------------------------------------------------------

    def load(self, role: str) -> Metadata:
        path = self.meta_dir / f"{role}.json"
        if not path.exists():
            raise OtaError(f"no {role} metadata in {self.meta_dir}: run `umbra ota init` first")
        return Metadata.from_file(str(path))

    def _write(self, md: Metadata, role: str) -> None:
        data = md.to_bytes(JSONSerializer(compact=False))
        (self.meta_dir / f"{role}.json").write_bytes(data)
        if role != "timestamp":
            (self.meta_dir / f"{md.signed.version}.{role}.json").write_bytes(data)

    def _sign(self, md: Metadata, role: str, signers: list[Signer] | None = None) -> None:
        md.signatures.clear()
        for s in signers or self.signers(role):
            md.sign(s, append=True)

    def _expires(self, role: str, days: int | None = None) -> dt.datetime:
        return self.now + dt.timedelta(days=days if days is not None else EXPIRY_DAYS[role])

    # -- operations ---------------------------------------------------------------------------------------

    def init(self, root_keys: int = 3, root_threshold: int = 2) -> bytes:
        """New repository; returns root.json (to embed in devices at provisioning)."""
        if (self.meta_dir / "root.json").exists():
            raise OtaError(f"{self.dir} already holds a repository")
        if not 1 <= root_keys <= MAX_ROOT_KEYS:  # before any key is made: 10**8 of them never ends
            raise OtaError(f"root keys: {root_keys} is not allowed; use 1 to {MAX_ROOT_KEYS}")
        if not 1 <= root_threshold <= root_keys:
            raise OtaError("root threshold must be between 1 and the number of root keys")
        for d in (self.keys_dir, self.meta_dir, self.targets_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.keys_dir.chmod(0o700)
        root = Root(expires=self._expires("root"), consistent_snapshot=True)
        for role in ROLES:
            count = root_keys if role == "root" else 1
            for n in range(count):
                root.add_key(self._new_key(role, n).public_key, role)
        root.roles["root"].threshold = root_threshold
        md = Metadata(root)
        self._sign(md, "root")
        self._write(md, "root")
        targets = Metadata(Targets(expires=self._expires("targets")))
        self._sign(targets, "targets")
        self._write(targets, "targets")
        self._snapshot_and_timestamp()
        return (self.meta_dir / "root.json").read_bytes()

    def add_target(self, name: str, path: Path, custom: dict[str, Any] | None = None) -> TargetFile:
        """Copy a file in as a target (under its hash name) and sign new targets/snapshot/timestamp."""
        data = Path(path).read_bytes()
        tf = TargetFile.from_data(name, data, ["sha256"])
        if custom:
            tf.unrecognized_fields["custom"] = custom
        dest = self.targets_dir / Path(name).parent / f"{tf.hashes['sha256']}.{Path(name).name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
        md = self.load("targets")
        md.signed.targets[name] = tf
        md.signed.version += 1
        md.signed.expires = self._expires("targets")
        self._sign(md, "targets")
        self._write(md, "targets")
        self._snapshot_and_timestamp()
        return tf

    def publish_release(self, bundle: Path, version: str, hardware: list[str], min_from: str) -> list[str]:
        names = []
        for hw in hardware:
            name = f"releases/{hw}/{version}.tar"
            self.add_target(name, bundle, {"version": version, "hardware": hw, "min_from": min_from})
            names.append(name)
        return names

    def set_rollout(self, plan: dict[str, Any]) -> None:
        """Sign `plan` (one release's stages and state) into the rollout document beside the others."""
        doc = self.rollout_document()
        doc.setdefault("plans", {})[plan["release"]] = plan
        doc["latest"] = plan["release"]
        tmp = self.dir / "staging" / ROLLOUT
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, sort_keys=True, indent=1))
        self.add_target(ROLLOUT, tmp)

    def rollout_document(self) -> dict[str, Any]:
        md = self.load("targets")
        tf = md.signed.targets.get(ROLLOUT)
        if tf is None:
            return {}
        return json.loads((self.targets_dir / f"{tf.hashes['sha256']}.{ROLLOUT}").read_text())

    def rollout(self, release: str | None = None) -> dict[str, Any]:
        """The plan of `release` (default: the one set last), or {}."""
        doc = self.rollout_document()
        return doc.get("plans", {}).get(release or doc.get("latest", ""), {})

    def _snapshot_and_timestamp(self) -> None:
        targets = self.load("targets")
        try:
            snap = self.load("snapshot")
            snap.signed.version += 1
        except OtaError:
            snap = Metadata(Snapshot(expires=self._expires("snapshot")))
        snap.signed.meta["targets.json"] = MetaFile(version=targets.signed.version)
        snap.signed.expires = self._expires("snapshot")
        self._sign(snap, "snapshot")
        self._write(snap, "snapshot")
        self.refresh_timestamp(snap)

    def refresh_timestamp(self, snap: Metadata | None = None, days: int | None = None) -> None:
        """A new timestamp (ops run this daily: a device refuses a timestamp past its expiry)."""
        snap = snap or self.load("snapshot")
        raw = (self.meta_dir / "snapshot.json").read_bytes()
        try:
            ts = self.load("timestamp")
            ts.signed.version += 1
        except OtaError:
            ts = Metadata(Timestamp(expires=self._expires("timestamp", days)))
        ts.signed.snapshot_meta = MetaFile(version=snap.signed.version, length=len(raw),
                                           hashes={"sha256": hashlib.sha256(raw).hexdigest()})
        ts.signed.expires = self._expires("timestamp", days)
        self._sign(ts, "timestamp")
        self._write(ts, "timestamp")

    def rotate_key(self, role: str) -> None:
        """Replace `role`'s key(s): a new root version lists the new key and is signed by the old root keys
        (threshold) and, for root itself, by the new ones too, so devices follow the chain of trust."""
        if role not in ROLES:
            raise OtaError(f"no role {role!r}; roles: {', '.join(ROLES)}")
        root = self.load("root")
        old_root_signers = self.signers("root")
        old_paths = sorted(self.keys_dir.glob(f"{role}-*.pem"))
        for keyid in list(root.signed.roles[role].keyids):
            root.signed.revoke_key(keyid, role)
        new = [self._new_key(f"{role}-new", n) for n in range(len(old_paths))]
        for s in new:
            root.signed.add_key(s.public_key, role)
        root.signed.version += 1
        root.signed.expires = self._expires("root")
        signers = old_root_signers + (new if role == "root" else [])
        self._sign(root, "root", signers)
        self._write(root, "root")
        for p in old_paths:
            p.unlink()
        for n, p in enumerate(sorted(self.keys_dir.glob(f"{role}-new-*.pem"))):
            p.rename(self.keys_dir / f"{role}-{n}.pem")
        # everything the rotated role signs must be signed again with the new key
        if role in ("targets", "snapshot", "timestamp"):
            md = self.load("targets")
            md.signed.version += 1
            self._sign(md, "targets")
            self._write(md, "targets")
            self._snapshot_and_timestamp()
