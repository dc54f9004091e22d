"""Zones, lines and the homography saved on the installer page are applied to the running sensor from its
next frame, without a restart: the loop counts on the new lines, the run's counts and the view follow, the
change is audited with the counts before it, and a new homography makes no crossing of its own."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import pytest

from firmware import config as cfgmod
from firmware.sensing.loop import TickResult

GRID_LINES = [{"name": f"v{i}", "points": [[i / 16, 0.0], [i / 16, 1.0]]} for i in range(1, 16)]


def _crossings_by_tick(rig, grounds: list | None = None) -> list[list]:
    seen: list[list] = []

    def sink(result: TickResult) -> None:
        seen.append([(c.line, c.direction) for c in result.crossings])
        if grounds is not None:
            grounds.append(result.ground.xy.copy())

    rig.loop.sinks.append(sink)
    return seen


async def _post(rig, route: str, body: dict, ticks_before: int) -> tuple[int, dict, dict]:
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        async with s.post(rig.base + "/session", data={"token": rig.token()}, allow_redirects=False):
            pass
        async with s.get(rig.base + "/state"):  # someone watches: views are made
            pass
        await asyncio.to_thread(rig.loop.run, ticks_before)
        async with s.post(rig.base + route, json=body) as r:
            answer = (r.status, await r.json())
        async with s.get(rig.base + "/state") as r:
            state = await r.json()
    return answer[0], answer[1], state


def _more(rig, ticks: int) -> None:
    rig.loop.run(rig.loop.stats.ticks + ticks)  # run()'s bound counts every tick the loop has run


def _state(rig) -> dict:
    async def go():
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar) as s:
            async with s.post(rig.base + "/session", data={"token": rig.token()}, allow_redirects=False):
                pass
            async with s.get(rig.base + "/state") as r:
                return await r.json()

    return asyncio.run(go())


def test_lines_saved_on_the_page_are_counted_by_the_running_loop_from_its_next_frame(rig) -> None:
    seen = _crossings_by_tick(rig)
    body = {"zones": [], "lines": GRID_LINES, "replace": False}
    status, answer, pending = asyncio.run(_post(rig, "/geometry", body, 10))
    assert status == 200 and answer["change"] == 1 and "applied live" in answer["note"]
    assert pending["live"]["pending"] is True  # the loop has not had a frame since
    before = len(seen)
    _more(rig, 30)
    state = _state(rig)
    assert state["live"]["pending"] is False and state["live"]["applied"] == 1
    assert state["live"]["applied_seq"] is not None
    names = {ln.name for ln in rig.loop.quantizer.geometry.config.lines}
    assert names == {"mid"} | {ln["name"] for ln in GRID_LINES}  # added to the config's line
    after = [c for tick in seen[before:] for c in tick]
    assert any(line.startswith("v") for line, _ in after), "the walkers cross the new lines"
    counted = rig.installer.live.counts.snapshot().lines
    assert sum(n for (line, _), n in counted.items() if line.startswith("v")) == \
        sum(1 for line, _ in after if line.startswith("v"))  # the run's counts follow the loop's crossings
    assert {ln.name for ln in rig.installer.view.geometry.lines} == names  # the view draws them
    applied = [e["fields"] for e in rig.events() if e["event"] == "installer_geometry_applied"]
    assert len(applied) == 1 and applied[0]["change"] == 1 and applied[0]["frame"] == state["live"]["applied_seq"]
    assert {(c["line"], c["direction"]) for c in applied[0]["counts_before"]} == {("mid", "+"), ("mid", "-")}
    assert {ln.name for ln in cfgmod.load(rig.path).geometry.lines} == names


def test_unchanged_lines_and_zones_keep_their_counts_and_a_moved_line_starts_from_zero(rig) -> None:
    cfg = cfgmod.load(rig.path).geometry
    grid = tuple(replace(cfg.lines[0], name=f"v{i}", a=(i * 0.96, 0.0), b=(i * 0.96, 11.0)) for i in range(1, 16))
    rig.installer.view.watch()
    rig.installer.live.submit(replace(cfg, lines=grid))
    rig.loop.run(30)
    first = rig.installer.live.counts.snapshot()
    busiest = max(grid, key=lambda ln: first.lines[(ln.name, "+")] + first.lines[(ln.name, "-")])
    assert first.lines[(busiest.name, "+")] + first.lines[(busiest.name, "-")] > 0
    assert first.zones_peak["door"] > 0
    moved = tuple(replace(ln, a=(ln.a[0] + 0.3, 0.0), b=(ln.a[0] + 0.3, 11.0)) if ln is busiest else ln
                  for ln in grid)
    rig.installer.live.submit(replace(cfg, lines=moved))
    _more(rig, 1)
    assert rig.installer.live.status().applied == 2
    snap = rig.installer.live.counts.snapshot()
    assert snap.lines[(busiest.name, "+")] == snap.lines[(busiest.name, "-")] == 0  # moved: counted afresh
    assert {k: n for k, n in snap.lines.items() if k[0] != busiest.name} == \
        {k: n for k, n in first.lines.items() if k[0] != busiest.name}  # the others kept (no crossing this tick)
    assert snap.zones_peak["door"] >= first.zones_peak["door"]  # same name, same corners: kept
    applied = [e["fields"] for e in rig.events() if e["event"] == "installer_geometry_applied"]
    assert {(c["line"], c["direction"]): c["count"] for c in applied[1]["counts_before"]} == first.lines


def test_a_new_homography_makes_no_crossing_of_its_own(rig) -> None:
    """Shifted 8 m east, every walker west of the line at x = 7 m would jump across it in one tick if the
    loop compared a position on the old ground with one on the new; it counts none."""
    grounds: list = []
    seen = _crossings_by_tick(rig, grounds)
    rig.installer.view.watch()
    rig.loop.run(20)
    west = sum(1 for x in grounds[-1][:, 0] if x < 7.0)
    assert west >= 1, "some walker is west of the line when the homography changes"
    cfg = cfgmod.load(rig.path).geometry
    shifted = [list(r) for r in cfg.homography]
    shifted[0][2] += 8.0
    rig.installer.live.submit(replace(cfg, homography=tuple(tuple(r) for r in shifted)))
    _more(rig, 1)
    assert rig.installer.live.status().applied == 1
    assert seen[-1] == []
    assert rig.loop.quantizer.geometry.config.homography[0][2] == pytest.approx(8.0)


def test_an_applied_change_is_handed_to_its_listeners_once_the_loop_takes_it_up(rig) -> None:
    got: list = []
    rig.installer.live.on_applied.append(got.append)  # umbra run: the status record's zone plan (StatusSink.replan)
    cfg = cfgmod.load(rig.path).geometry
    fewer = replace(cfg, lines=cfg.lines[:1])
    rig.installer.live.submit(fewer)
    assert got == []  # handed over, not yet applied
    _more(rig, 1)
    assert got == [fewer]
