"""CPU per record of the schema check the cloud runs on every record of every batch (and the device on what it
queues): the fast compiled check against jsonschema alone, for the records a fleet sends most.

`python -m bench.schema_speed [--n 20000]`"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from firmware import schemas

_AGG = {"schema": "umbra.aggregate/1", "window_start": 1_700_000_000, "window_s": 300, "metric": "line_flow",
        "zone": "door", "values": [3, 2], "k": 5, "epsilon": 0.1, "sensitivity": 1, "mechanism": "discrete_laplace"}
RECORDS: dict[str, dict[str, Any]] = {
    "aggregate line_flow": _AGG,
    "aggregate occupancy": {**_AGG, "metric": "occupancy", "values": [3, 2.5, 4], "sensitivity": [1, 0.1, 1]},
    "status with zone plan": {"schema": "umbra.status/1", "t": 1_700_000_000, "firmware": "1.9.0",
                              "profile": "aggregates", "uptime_s": 0.0, "outbox_records": 0, "dropped": {},
                              "zone_plan": {"zones": [{"name": "shop", "polygon": [[0, 0], [8, 0], [8, 6], [0, 6]]}],
                                            "lines": [{"name": "door", "a": [0, 2], "b": [0, 4]}]}},
}


def per_record_us(check: Callable[[Any], object], rec: dict[str, Any], n: int) -> float:
    check(rec)
    t = time.process_time()
    for _ in range(n):
        check(rec)
    return (time.process_time() - t) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.schema_speed", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args(argv)
    print(f"{'record':24} {'fast check':>12} {'jsonschema':>12}   (CPU us a record, {args.n} checks)")
    for name, rec in RECORDS.items():
        fast, slow = schemas._validators(rec["schema"])
        assert fast is not None and fast(rec), name
        print(f"{name:24} {per_record_us(schemas.validate, rec, args.n):12.1f} "
              f"{per_record_us(slow.is_valid, rec, args.n // 4):12.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
