"""Attacks on the privacy budget and the audit log, each run on a real signed audit log (the device key an
ECDSA P-256 file key), a real SQLite budget store and the cloud's PrivacyWatch; prints whether the device
detected and recorded it, the epsilon granted on the attacked day against its budget (more than the budget =
epsilon spent twice), the epsilon of that day's releases that reached the cloud, and what the cloud flagged
from the batches it saw.

The fork rows: the cloud holds head N; offline, the device writes N+1.. (its releases queued in a real outbox),
then its files are rolled back to the state at N and it writes another N+1.. before it is back online. With the
outbox rolled back too, the first fork's releases never leave (nothing is caught, and nothing past the budget
reaches the cloud; an attacker who read the outbox off the disk between the forks has both, which no check
here can see); with the outbox kept, both forks' releases reach the cloud and its ledger flags the day.

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
from firmware.config.sync import OutboxConfig
from firmware.privacy.accountant import Accountant
from firmware.privacy.audit import AuditLog
from firmware.sync.outbox import Outbox
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
    outbox: Outbox | None = None
    granted: Fraction = Fraction(0)  # epsilon granted on the attacked day, over the whole scenario
    left: Fraction = Fraction(0)  # epsilon of the attacked day's releases that reached the cloud
    windows: int = 0
    online: bool = True  # offline, releases wait in the outbox (a real SQLite outbox in the state folder)

    def open(self) -> None:
        self.close()
        self.log = AuditLog(self.state / "audit.jsonl", signer=KeyFileSigner(self.key))
        self.acc = Accountant(self.state / "budget.sqlite", {STREAM: BUDGET}, ledger=self.log)
        self.outbox = Outbox(OutboxConfig(path=str(self.state / "outbox.sqlite")))

    def close(self) -> None:
        for part in (self.acc, self.outbox):
            if part is not None:
                part.close()
        self.acc = self.outbox = None

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
                                "window_start": int(t // 900 * 900), "window_s": 900, "epsilon": 1,
                                "values": [3], "k": 5, "sensitivity": 1, "mechanism": "discrete_laplace"})
            if self.online:
                self.send({"audit_head": self.log.head, "records": records})
            elif records:
                assert self.outbox is not None
                self.outbox.enqueue(records)

    def send(self, batch: dict) -> None:
        self.left += sum(Fraction(str(r["epsilon"])) for r in batch["records"]
                         if r["window_start"] // 86_400 == DAY)
        self.watch.observe("dev-1", batch, T0)

    def reconnect(self) -> None:
        """Back online: the outbox is sent, each batch with the audit head as it stands (as the uploader does)."""
        assert self.outbox is not None and self.log is not None
        self.online = True
        while (batch := self.outbox.take_batch()) is not None:
            self.send(json.loads(batch.payload("dev-1", self.log.head)))
            self.outbox.ack(batch.batch_id)

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


def _snapshot(d: Device) -> Path:
    snap = d.state.parent / (d.state.name + "-snap")
    shutil.copytree(d.state, snap)
    return snap


def _restore(d: Device, snap: Path, names: Sequence[str]) -> None:
    d.close()
    for name in names:
        _unlink(d.state, name)
        for p in _files(snap, name):
            shutil.copy(p, d.state / p.name)
    d.open()


def _snapshot_rollback(d: Device, names: Sequence[str]) -> None:
    d.spend(1)
    snap = _snapshot(d)
    d.spend(2)
    _restore(d, snap, names)
    d.spend(3)


def log_and_head_rolled_back(d: Device) -> None:
    _snapshot_rollback(d, ("audit.jsonl", "audit.jsonl.head", "budget.sqlite"))


def every_file_rolled_back(d: Device) -> None:
    _snapshot_rollback(d, ("audit.jsonl", "audit.jsonl.head", "audit.jsonl.hwm", "budget.sqlite"))


AUDIT_FILES = ("audit.jsonl", "audit.jsonl.head", "audit.jsonl.hwm", "budget.sqlite")


def _fork_past_the_head(d: Device, names: Sequence[str], same_windows: bool = False) -> None:
    """The cloud holds head N; offline, the device writes N+1.. (fork A, its releases queued in the outbox),
    then `names` are rolled back to the state at N and it writes another N+1.. (fork B) before it is online
    again. `same_windows`: fork B releases fork A's windows again (the clock put back with the files)."""
    d.spend(1)
    snap = _snapshot(d)
    d.online = False
    at = d.windows
    d.spend(2)
    _restore(d, snap, names)
    d.online = False
    d.windows = at if same_windows else d.windows
    d.spend(2)
    d.reconnect()


def fork_outbox_rolled_back(d: Device) -> None:
    _fork_past_the_head(d, (*AUDIT_FILES, "outbox.sqlite"))


def fork_outbox_kept(d: Device) -> None:
    _fork_past_the_head(d, AUDIT_FILES)


def fork_same_windows_outbox_kept(d: Device) -> None:
    _fork_past_the_head(d, AUDIT_FILES, same_windows=True)


ATTACKS: dict[str, Callable[[Device], None]] = {
    "budget store deleted": store_deleted,
    "budget store edited": store_edited,
    "clock moved back a day": clock_back_a_day,
    "log cut to 1st entry, head deleted": log_cut_head_deleted,
    "(log, head, store) rolled back": log_and_head_rolled_back,
    "every file rolled back (+ mark)": every_file_rolled_back,
    "fork past the head, outbox rolled back": fork_outbox_rolled_back,
    "fork past the head, outbox kept": fork_outbox_kept,
    "fork, same windows, outbox kept": fork_same_windows_outbox_kept,
}


def run(name: str, tmp: Path, watch: PrivacyWatch | None = None) -> dict:
    """One attack in its own folder: what the device recorded, epsilon granted on the day, the cloud's flags.
    `watch`: the cloud's (left open); default, a PrivacyWatch on SQLite in the folder that knows the budget."""
    folder = tmp / name.replace(" ", "_").replace("/", "_")
    state = folder / "state"
    state.mkdir(parents=True)
    key = pki.make_key()
    pki.write_atomic(folder / "device.key", pki.key_pem(key), private=True)
    d = Device(state, folder / "device.key", watch or PrivacyWatch(folder / "cloud.sqlite", {STREAM: BUDGET}))
    d.open()
    ATTACKS[name](d)
    recorded = sorted({e for e in d.events() if e in RECORDED})
    flags = sorted({f["kind"] for f in d.watch.flags("dev-1")})
    d.close()
    if watch is None:
        d.watch.close()
    return {"attack": name, "device": bool(recorded), "recorded": recorded, "granted": d.granted,
            "twice": d.granted > BUDGET, "left": d.left, "cloud": flags}


def main(argv: Sequence[str] | None = None) -> int:
    print(f"{'attack':40s} {'device':>6s} {'granted':>7s} {'left':>5s} {'twice':>5s}  "
          "recorded on the device / cloud flags")
    missed = leaked = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in ATTACKS:
            r = run(name, Path(tmp))
            caught = r["device"] or bool(r["cloud"])
            missed += not caught
            leaked += not caught and r["left"] > BUDGET
            print(f"{r['attack']:40s} {'yes' if r['device'] else 'NO':>6s} {str(r['granted']) + '/' + str(BUDGET):>7s} "
                  f"{str(r['left']) + '/' + str(BUDGET):>5s} {'YES' if r['twice'] else 'no':>5s}  "
                  f"{', '.join(r['recorded']) or '-'} / {', '.join(r['cloud']) or '-'}")
    print(f"budget {BUDGET} epsilon a day (the cloud knows it too); 'granted': epsilon the device granted on the "
          f"attacked day, 'twice': more than its budget; 'left': epsilon of that day's releases that reached the "
          f"cloud. Online, a batch goes to the cloud after every release; offline, releases wait in the outbox and "
          f"go with the head as it stands when the device is back.\n"
          f"Attacks neither the device nor the cloud caught: {missed}; of them, letting more than the budget reach "
          f"the cloud: {leaked}")
    return 1 if missed else 0

if __name__ == "__main__":
    raise SystemExit(main())
