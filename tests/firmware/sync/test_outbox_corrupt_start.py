"""An outbox file found corrupt at start, as a bad card or a stray tool leaves it: not a database, an SQLite
header over garbage, or a database whose tables of our names have other columns. Each is an OutboxError when
the outbox opens (the sensor's one-line refusal at start), never a failure later in the run. Before the fix a
`batches` or `dropped` table of another shape opened fine and every upload cycle then failed on it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from firmware.config.sync import OutboxConfig
from firmware.errors import OutboxError
from firmware.sync.outbox import Outbox


def _db(path: Path, sql: str) -> None:
    c = sqlite3.connect(path)
    c.executescript(sql)
    c.commit()
    c.close()


@pytest.mark.parametrize("damage", ["zeros", "header", "text", "records(x)", "batches(x)", "dropped(a, b, c)",
                                    "meta(a, b, c)"])
def test_a_corrupt_outbox_is_refused_when_it_opens(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "outbox.sqlite"
    if damage == "zeros":
        path.write_bytes(bytes(4096))
    elif damage == "header":
        path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4080)
    elif damage == "text":
        path.write_text("records\n")
    else:
        _db(path, f"CREATE TABLE {damage};")
    with pytest.raises(OutboxError) as e:
        Outbox(OutboxConfig(path=str(path)))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_an_outbox_of_ours_still_opens_with_its_records(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    ob = Outbox(OutboxConfig(path=str(path)), validate=lambda r: None)
    ob.enqueue([{"schema": "umbra.track/1", "t": 1}])
    ob.close()
    again = Outbox(OutboxConfig(path=str(path)), validate=lambda r: None)
    assert len(again) == 1
    again.close()
