"""Attacks on the privacy budget and the audit log, each run on a real signed audit log (the device key an
ECDSA P-256 file key), a real SQLite budget store and the cloud's PrivacyWatch; prints whether the device
detected and recorded it, the epsilon granted on the attacked day against its budget (more than the budget =
epsilon spent twice), and what the cloud flagged from the batches it saw.

    python -m bench.privacy_attacks
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from cloud.privacy_watch import PrivacyWatch
from firmware.privacy.accountant import Accountant
from firmware.privacy.audit import AuditLog
from trust import pki
from trust.devicekey import KeyFileSigner

DAY = 20_000
T0 = DAY * 86_400 + 3_600
BUDGET = 3
STREAM = "occupancy"
RECORDED = ("audit_tamper_found", "budget_store_behind_log", "budget_clock_back", "budget_day_withheld")


@dataclass
class Device:
    """One device's state folder: its signed audit log and budget store, reopened as a restart would."""

    state: Path
    key: Path
    watch: PrivacyWatch
    log: AuditLog | None = None
    acc: Accountant | None = None
    granted: Fraction = Fraction(0)  # epsilon granted on the attacked day, over the whole scenario
    windows: int = 0

    def open(self) -> None:
        if self.acc is not None:
            self.acc.close()
        self.log = AuditLog(self.state / "audit.jsonl", signer=KeyFileSigner(self.key))
        self.acc = Accountant(self.state / "budget.sqlite", {STREAM: BUDGET}, ledger=self.log)

    def spend(self, n: int, day_offset: int = 0) -> None:
        """n windows' releases (one epsilon each), each in a batch to the cloud with the audit head."""
        assert self.acc is not None and self.log is not None
        for _ in range(n):
            records = []
            t = T0 + day_offset * 86_400 + 900 * (self.windows % 90)
            self.windows += 1
            c = self.acc.charge(STREAM, 1, t)
            if c.granted:
                self.granted += c.epsilon if day_offset == 0 else 0
                records.append({"schema": "umbra.aggregate/1", "metric": STREAM, "zone": "all",
                                "window_start": int(t // 900 * 900), "window_s": 900, "epsilon": 1})
            self.watch.observe("dev-1", {"audit_head": self.log.head, "records": records}, T0)

    def events(self) -> list[str]:
        path = self.state / "audit.jsonl"
        return [json.loads(x)["event"] for x in path.read_text().splitlines()] if path.exists() else []


def _files(folder: Path, name: str) -> list[Path]:
    """The file and, for the SQLite store, its -wal and -shm."""
    return [p for p in folder.glob(name + "*") if p.name == name or p.name[len(name):] in ("-wal", "-shm")]


def _unlink(state: Path, *names: str) -> None:
    for name in names:
        for p in _files(state, name):
            p.unlink()


def store_deleted(d: Device) -> None:
    d.spend(3)
    _unlink(d.state, "budget.sqlite")
    d.open()
    d.spend(3)


def store_edited(d: Device) -> None:
    d.spend(3)
    with sqlite3.connect(d.state / "budget.sqlite") as db:  # while the sensor runs
        db.execute("UPDATE spent SET epsilon='0', releases=0")
    d.spend(3)


def clock_back_a_day(d: Device) -> None:
    d.spend(3)
    d.open()
    d.spend(3, day_offset=-1)
    d.spend(1)


def log_cut_head_deleted(d: Device) -> None:
    d.spend(3)
    path = d.state / "audit.jsonl"
    path.write_bytes(path.read_bytes().split(b"\n")[0] + b"\n")
    _unlink(d.state, "audit.jsonl.head", "audit.jsonl.hwm", "budget.sqlite")
    d.open()
    d.spend(3)


def _snapshot_rollback(d: Device, names: Sequence[str]) -> None:
    d.spend(1)
    snap = d.state.parent / (d.state.name + "-snap")
    shutil.copytree(d.state, snap)
    d.spend(2)
    assert d.acc is not None
    d.acc.close()
    for name in names:
        _unlink(d.state, name)
        for p in _files(snap, name):
            shutil.copy(p, d.state / p.name)
    d.acc = None
    d.open()
    d.spend(3)


def log_and_head_rolled_back(d: Device) -> None:
    _snapshot_rollback(d, ("audit.jsonl", "audit.jsonl.head", "budget.sqlite"))


def every_file_rolled_back(d: Device) -> None:
    _snapshot_rollback(d, ("audit.jsonl", "audit.jsonl.head", "audit.jsonl.hwm", "budget.sqlite"))


ATTACKS: dict[str, Callable[[Device], None]] = {
    "budget store deleted": store_deleted,
    "budget store edited": store_edited,
    "clock moved back a day": clock_back_a_day,
    "log cut to 1st entry, head deleted": log_cut_head_deleted,
    "(log, head, store) rolled back": log_and_head_rolled_back,
    "every file rolled back (+ mark)": every_file_rolled_back,
}


def run(name: str, tmp: Path) -> dict:
    """One attack in its own folder: what the device recorded, epsilon granted on the day, the cloud's flags."""
    folder = tmp / name.replace(" ", "_").replace("/", "_")
    state = folder / "state"
    state.mkdir(parents=True)
    key = pki.make_key()
    pki.write_atomic(folder / "device.key", pki.key_pem(key), private=True)
    d = Device(state, folder / "device.key", PrivacyWatch(folder / "cloud.sqlite", {STREAM: BUDGET}))
    d.open()
    ATTACKS[name](d)
    recorded = sorted({e for e in d.events() if e in RECORDED})
    flags = sorted({f["kind"] for f in d.watch.flags("dev-1")})
    if d.acc is not None:
        d.acc.close()
    d.watch.close()
    return {"attack": name, "device": bool(recorded), "recorded": recorded, "granted": d.granted,
            "twice": d.granted > BUDGET, "cloud": flags}


def main(argv: Sequence[str] | None = None) -> int:
    print(f"{'attack':36s} {'device':>6s} {'eps on day':>10s} {'twice':>5s}  recorded on the device / cloud flags")
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in ATTACKS:
            r = run(name, Path(tmp))
            caught = r["device"] or bool(r["cloud"])
            missed += not caught
            spent = f"{r['granted']}/{BUDGET}"
            print(f"{r['attack']:36s} {'yes' if r['device'] else 'NO':>6s} {spent:>10s} "
                  f"{'YES' if r['twice'] else 'no':>5s}  {', '.join(r['recorded']) or '-'} / "
                  f"{', '.join(r['cloud']) or '-'}")
    print(f"budget {BUDGET} epsilon a day (the cloud knows it too); 'twice': the device granted more than its budget "
          f"on the attacked day; a batch goes to the cloud after every release.\n"
          f"Attacks neither the device nor the cloud caught: {missed}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
