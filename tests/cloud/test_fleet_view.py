"""The ops fleet view's kept renderings (cloud.fleet.FleetView), on both backends: its bytes equal the plain
rendering of `fleet()` and `fleet_summary()` on every request, as rows change, appear and go, and for every page."""

from __future__ import annotations

import json
from pathlib import Path

from cloud.fleet import FleetView, fleet, fleet_summary
from cloud.store import Peer, Store


def _plain(store: Store, now: float, after: str = "", limit: int = 100_000) -> bytes:
    rows = fleet(store, now, 900.0, after, limit)
    return json.dumps({"summary": fleet_summary(rows), "devices": rows}).encode()


def test_the_kept_fleet_view_equals_the_plain_one_as_rows_change(cloud_db: str, tmp_path: Path) -> None:
    store = Store(cloud_db or tmp_path / "cloud.sqlite")
    now = 1_800_000_000.0
    rows = [(f"d{i:03d}", now - 300 * i, None if i % 5 == 0 else "1.9.0", "edgetpu", 10.0 + i / 7, i % 3,
             "boom" if i % 4 == 0 else ("" if i % 6 == 0 else None), None if i % 2 else 1_900_000_000 + i)
            for i in range(40)]
    with store.db.tx() as db:
        db.executemany("INSERT INTO devices (device_id, last_seen, firmware, detector, fps, overruns, last_error, "
                       "cert_expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    view = FleetView()
    assert view.page(store, now, 900.0) == _plain(store, now)
    # every column but last_seen changing, last_seen alone changing, a new device, a device gone
    store.db.execute("UPDATE devices SET fps = 3.5, last_error = 'x' WHERE device_id = 'd007'")
    store.db.execute("UPDATE devices SET last_seen = ? WHERE device_id = 'd030'", (now,))
    store.db.execute("UPDATE devices SET firmware = '' WHERE device_id = 'd011'")
    store.db.execute("UPDATE devices SET firmware = NULL, last_error = '' WHERE device_id = 'd012'")
    store.store_batch("new-1", "b" * 32, "o" * 16, 1, now + 5, [], Peer("ab12", 1_900_000_000))
    store.db.execute("DELETE FROM devices WHERE device_id = 'd003'")
    for t in (now, now + 600.0, now + 5000.0):  # online follows the clock, the kept rows do not change
        assert view.page(store, t, 900.0) == _plain(store, t)
    for after, limit in (("", 1), ("d010", 5), ("d039", 10), ("zzz", 10)):
        assert view.page(store, now, 900.0, after, limit) == _plain(store, now, after, limit)
    assert json.loads(view.page(store, now, 900.0))["summary"]["devices"] == 40
    store.close()
