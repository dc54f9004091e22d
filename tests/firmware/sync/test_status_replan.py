"""The zone plan follows a live change: the status record after starting carries the zones and lines, and so
does the first tick's record after the installer applied new ones (`StatusSink.replan`), at once, not a status
period later; the records in between carry no plan."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from firmware.config import load
from firmware.config.sync import OutboxConfig
from firmware.sensing.loop import RunEnd, end_run
from firmware.sync.outbox import Outbox
from firmware.sync.service import StatusSink, zone_plan

ROOT = Path(__file__).resolve().parents[3]


def _statuses(ob: Outbox) -> list[dict]:
    batch = ob.take_batch()
    return [json.loads(b) for b in batch.bodies] if batch is not None else []


def test_a_live_change_sends_the_new_plan_with_the_next_tick(tmp_path: Path) -> None:
    geometry = load(ROOT / "bench/configs/pets09.toml").geometry
    ob = Outbox(OutboxConfig(path=str(tmp_path / "outbox.sqlite")))
    loop = SimpleNamespace(stats=SimpleNamespace(frames=0, overruns=0, camera_stalls=0, camera_lost=0, camera_fault=""),
                           detector=SimpleNamespace(backend="cpu"))
    sink = StatusSink(ob, loop, 1000.0, "aggregates", 300.0, geometry)  # type: ignore[arg-type]
    for wall in (1000.0, 1010.0, 1020.0):
        loop.stats.frames += 70
        sink(SimpleNamespace(wall=wall))  # type: ignore[arg-type]
    moved = replace(geometry, lines=(replace(geometry.lines[0], name="moved", a=(1.0, 1.0), b=(2.0, 5.0)),))
    sink.replan(moved)
    sink(SimpleNamespace(wall=1030.0))  # type: ignore[arg-type]
    sink(SimpleNamespace(wall=1040.0))  # type: ignore[arg-type]
    sink(SimpleNamespace(wall=1330.0))  # type: ignore[arg-type]  (the period after the replan's record)
    end_run(sink, RunEnd(1700.0, []))  # the loop stopping: not a tick (the status sink is not told)
    got = _statuses(ob)
    ob.close()
    assert [r["t"] for r in got] == [1000, 1030, 1330]
    assert got[0]["zone_plan"] == zone_plan(geometry)
    assert got[1]["zone_plan"] == zone_plan(moved) and got[1]["zone_plan"]["lines"][0]["name"] == "moved"
    assert "zone_plan" not in got[2]
