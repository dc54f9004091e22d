"""The factory station: drives a blank sensor on a serial port through hello, key, certificate, configuration,
verification, self-test and lock; signs with the manufacturing CA; keeps a SQLite log of every device.

One certificate per hardware id: the log records a certificate before the device receives it, so a rerun
after a cable pull reuses it (when the device still holds the same key) instead of issuing a second one; a
different key for a hardware id already issued is refused unless `force` is given.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hal.serial import open_serial
from provisioning.agent import NAME
from provisioning.errors import IssuanceRefused, ProvisioningError
from provisioning.protocol import Client
from trust import pki
from trust.errors import PkiError

STEPS = ("hello", "generate_key", "sign", "install_chain", "set_config", "verify", "self_test", "lock")
Progress = Callable[[str, str, int, int], None]  # (port, step, index, total)


class ManufacturingCA(Protocol):
    """Signs device CSRs. A file-based key here; an HSM can stand behind the same two methods."""

    def cert_pem(self) -> bytes: ...

    def sign(self, csr_pem: bytes, device_id: str) -> bytes: ...


class FileCA:
    def __init__(self, key_path: Path, cert_path: Path, days: int = 3650) -> None:
        self.key = pki.load_key(Path(key_path))
        self.cert = pki.load_cert(Path(cert_path))
        self.days = days
        self.issued = 0

    @classmethod
    def create(cls, folder: Path, name: str = "Umbra manufacturing CA") -> FileCA:
        key, cert = pki.make_ca(name, pki.utcnow())
        pki.write_atomic(Path(folder) / "ca.key", pki.key_pem(key), private=True)
        pki.write_atomic(Path(folder) / "ca.pem", pki.cert_pem(cert))
        return cls(Path(folder) / "ca.key", Path(folder) / "ca.pem")

    def cert_pem(self) -> bytes:
        return pki.cert_pem(self.cert)

    def sign(self, csr_pem: bytes, device_id: str) -> bytes:
        cert = pki.sign_csr(self.key, self.cert, csr_pem, pki.utcnow(), self.days, expect_common_name=device_id)
        self.issued += 1
        return pki.cert_pem(cert)


@dataclass(frozen=True, slots=True)
class FleetSettings:
    """What every device of the fleet is told at provisioning."""

    cloud_url: str
    pins_message: dict[str, Any]  # signed by the fleet root key (trust.pki.sign_pin_update)
    fleet_root_public_key: str
    ota_root: bytes  # the TUF root metadata the device will trust
    signing_key: Callable[[str], dict[str, Any]]  # device id -> its first batch-signing key (from the cloud)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    hardware_id: str
    device_id: str
    serial: str
    firmware: str
    tests: dict[str, Any]
    status: str
    at: str


class StationLog:
    """The station's log: one row per hardware id, each device id on one row at most (a unique index), so
    one identity can never be given to two devices. `issuing()` holds the write lock of the database (and of
    this process's threads) across check, sign and record, so issuance is atomic per hardware id and per
    device id even with several station processes on one log."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.RLock()
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS devices (hardware_id TEXT PRIMARY KEY, device_id TEXT, "
                        "serial TEXT, cert TEXT, firmware TEXT, tests TEXT, status TEXT, at TEXT)")
        try:
            self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS devices_device_id ON devices(device_id) "
                            "WHERE device_id IS NOT NULL")
        except sqlite3.IntegrityError as e:
            raise IssuanceRefused("log_conflict", f"{path}: two hardware ids already share a device id") from e

    @contextlib.contextmanager
    def issuing(self) -> Iterator[None]:
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def holder_of(self, device_id: str) -> str | None:
        row = self.db.execute("SELECT hardware_id FROM devices WHERE device_id=?", (device_id,)).fetchone()
        return row[0] if row else None

    def get(self, hardware_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM devices WHERE hardware_id=?", (hardware_id,)).fetchone()
        cols = ("hardware_id", "device_id", "serial", "cert", "firmware", "tests", "status", "at")
        return dict(zip(cols, row, strict=True)) if row else None

    def put(self, **row: Any) -> None:
        with self._lock:
            row.setdefault("at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
            cols = ", ".join(row)
            self.db.execute(f"INSERT INTO devices ({cols}) VALUES ({', '.join('?' * len(row))}) "
                            f"ON CONFLICT(hardware_id) DO UPDATE SET "
                            + ", ".join(f"{c}=excluded.{c}" for c in row if c != "hardware_id"),
                            tuple(row.values()))

    def count_issued(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM devices WHERE cert IS NOT NULL").fetchone()[0]


class Station:
    def __init__(self, ca: ManufacturingCA, log: StationLog, fleet: FleetSettings, *, baudrate: int = 115_200,
                 timeout_s: float = 3.0, progress: Progress | None = None) -> None:
        self.ca, self.log, self.fleet = ca, log, fleet
        self.baudrate, self.timeout_s = baudrate, timeout_s
        self.progress = progress or (lambda port, step, i, n: None)

    def provision(self, port: str, *, device_id: str | None = None, force: bool = False,
                  on_bytes: Callable[[str, bytes], None] | None = None) -> DeviceRecord:
        link = open_serial(port, self.baudrate)
        try:
            return self._run(port, Client(link, timeout_s=self.timeout_s, on_bytes=on_bytes), device_id, force)
        finally:
            link.close()

    def provision_many(self, ports: list[str], **kw: Any) -> dict[str, DeviceRecord | Exception]:
        """Several ports at once, one thread each; a failure on one port does not stop the others."""
        with ThreadPoolExecutor(max_workers=max(len(ports), 1)) as pool:
            futures = {p: pool.submit(self.provision, p, **kw) for p in ports}
        out: dict[str, DeviceRecord | Exception] = {}
        for p, f in futures.items():
            try:
                out[p] = f.result()
            except Exception as e:  # reported per port
                out[p] = e
        return out

    def _step(self, port: str, name: str) -> None:
        self.progress(port, name, STEPS.index(name) + 1, len(STEPS))

    def _run(self, port: str, c: Client, device_id: str | None, force: bool) -> DeviceRecord:
        self._step(port, "hello")
        hello = c.call("hello")
        hw, firmware, state = (_answer(hello, "hello", k, str) for k in ("hardware_id", "firmware", "state"))
        if not NAME.match(hw) or len(firmware) > 64:
            raise ProvisioningError("bad_answer", f"hello: hardware id {hw[:80]!r} is not 1 to 64 of A-Z a-z 0-9 . _ - "
                                                  "(or the firmware version is longer than 64)")
        known = self.log.get(hw)
        if state == "locked":
            if known and known["status"] == "done":
                return _record(known)
            if known and known.get("cert") and known["status"] == "tested":  # the lock's answer was lost
                self._prove(c, hw, known["cert"].encode())
                self.log.put(hardware_id=hw, status="done")
                return _record(self.log.get(hw) or known)
            raise ProvisioningError("locked", f"device {hw} is locked but this station has no record of it")
        device_id = device_id or (known["device_id"] if known else f"umbra-{hw}")
        self._step(port, "generate_key")
        csr_pem = _answer(c.call("generate_key", device_id=device_id), "generate_key", "csr", bytes)
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
            self._step(port, "sign")
            cert_pem = self._certificate(hw, device_id, csr, csr_pem, force)
        except (ValueError, PkiError) as e:  # the device's CSR: not PEM, another name, another kind of key
            raise ProvisioningError("bad_csr", f"device {hw}: {str(e).splitlines()[0][:200]}") from e
        self._step(port, "install_chain")
        serial = _answer(c.call("install_chain", chain=[cert_pem, self.ca.cert_pem()]), "install_chain", "serial", str)
        self._step(port, "set_config")
        c.call("set_config", device_id=device_id, cloud_url=self.fleet.cloud_url, pins=self.fleet.pins_message,
               fleet_root_public_key=self.fleet.fleet_root_public_key, ota_root=self.fleet.ota_root,
               signing_key=self.fleet.signing_key(device_id))
        self._step(port, "verify")
        self._prove(c, hw, cert_pem)
        self._step(port, "self_test")
        tests = c.call("self_test")
        failed = sorted(str(k) for k, v in tests.items() if not isinstance(v, dict) or not v.get("ok"))
        self.log.put(hardware_id=hw, device_id=device_id, serial=serial, firmware=firmware,
                     tests=json.dumps(tests), status="self_test_failed" if failed else "tested")
        if failed:
            raise ProvisioningError("self_test_failed", f"device {hw}: {', '.join(failed)} failed; not locked")
        self._step(port, "lock")
        try:
            c.call("lock")
        except ProvisioningError as e:
            if e.code != "locked":  # a retried lock whose first answer was lost: it is locked
                raise
        self.log.put(hardware_id=hw, status="done")
        rec = self.log.get(hw)
        assert rec is not None
        return _record(rec)

    def _prove(self, c: Client, hw: str, cert_pem: bytes) -> None:
        """The device signs a fresh challenge; the signature must verify with the certificate's key."""
        challenge = os.urandom(32)
        sig = _answer(c.call("verify", challenge=challenge), "verify", "signature", bytes)
        key = x509.load_pem_x509_certificate(cert_pem).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        try:
            key.verify(sig, b"umbra-provisioning-verify:" + challenge, ec.ECDSA(hashes.SHA256()))
        except Exception as e:  # InvalidSignature: the device does not hold the certified key
            raise ProvisioningError("verify_failed", f"device {hw} did not prove it holds the certified key") from e

    def _certificate(self, hw: str, device_id: str, csr: x509.CertificateSigningRequest, csr_pem: bytes,
                     force: bool) -> bytes:
        """The one certificate of this hardware id: reused when the device kept its key, else issued once;
        checked, signed and recorded in one transaction, so racing ports cannot both be issued one."""
        with self.log.issuing():
            known = self.log.get(hw)
            if known and known.get("cert"):
                issued = x509.load_pem_x509_certificate(known["cert"].encode())
                if _spki(issued.public_key()) == _spki(csr.public_key()):
                    return known["cert"].encode()
                if not force:
                    raise IssuanceRefused("already_issued", f"hardware id {hw} already has certificate "
                                          f"{known['serial']} for another key; rerun with force to reissue")
            holder = self.log.holder_of(device_id)
            if holder is not None and holder != hw:
                raise IssuanceRefused("device_id_taken", f"device id {device_id!r} already belongs to hardware id "
                                      f"{holder}; one identity is never given to two devices")
            cert_pem = self.ca.sign(csr_pem, device_id)
            serial = format(x509.load_pem_x509_certificate(cert_pem).serial_number, "x")
            self.log.put(hardware_id=hw, device_id=device_id, serial=serial, cert=cert_pem.decode(), status="issued")
        return cert_pem


def _answer(result: dict[str, Any], op: str, key: str, kind: type) -> Any:
    """`result[key]`, refused unless it is there and of `kind`: a device's answer is input like any other."""
    value: Any = result.get(key)
    if not isinstance(value, kind):
        raise ProvisioningError("bad_answer", f"{op}: the device's {key} is {type(value).__name__}, "
                                              f"not {kind.__name__}")
    if isinstance(value, str) and (len(value) > 4096 or "\x00" in value):
        raise ProvisioningError("bad_answer", f"{op}: the device's {key} is overlong or holds a NUL")
    return value


def _spki(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _record(row: dict[str, Any]) -> DeviceRecord:
    return DeviceRecord(row["hardware_id"], row["device_id"] or "", row["serial"] or "", row["firmware"] or "",
                        json.loads(row["tests"] or "{}"), row["status"], row["at"])


def wire_time_s(nbytes: int, baudrate: int) -> float:
    """Seconds the bytes take on a real UART at 8N1 (10 bits a byte); a pseudo-terminal has no baud rate."""
    return nbytes * 10 / baudrate


