"""Demographics in the frame's scope: the real estimator (BlazeFace and dlib's ONNX networks) on frames made of
the shared face photos, through the hook as the loop calls it. Crops, chips and tensors zeroed within the tick;
nothing face-sized reachable from the hook after a tick; no per-person estimate in a record, a log line or
the audit log; each person counted once per window; the per-tick bound and the time guard hold."""

from __future__ import annotations

import csv
import gc
import json
import logging
import random
import types
from pathlib import Path

import numpy as np
import pytest

from firmware import schemas
from firmware.config.demographics import STREAM, DemographicsConfig
from firmware.config.sensing import GeometryConfig, ZoneConfig
from firmware.demographics.hook import DemographicsHook
from firmware.privacy.accountant import Accountant
from firmware.sensing.geometry import Geometry
from firmware.sensing.tracker import Track
from hal.agegender import Estimate, OnnxAgeGender, ScriptedAgeGender
from hal.clock import FakeClock
from hal.errors import DetectorError
from hal.frame import Frame

WALL0 = 1_700_000_100.0  # a multiple of 60 s (and of the 10 s windows below)
CFG = DemographicsConfig(enabled=True, window_s=60, crops_per_track=3, crop_gap_s=0.5, k=2)
# two zones in source pixels (identity homography): the left and the right half of a 640 x 480 frame
GEOMETRY = Geometry(GeometryConfig(zones=(ZoneConfig("left", ((0, 0), (320, 0), (320, 480), (0, 480))),
                                          ZoneConfig("right", ((320, 0), (640, 0), (640, 480), (320, 480))))))


class ListAudit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, float, dict]] = []

    def append(self, event: str, t: float, **fields) -> None:
        self.entries.append((event, t, fields))


class Spy:
    """The real estimator; every crop it is handed is kept (to check it was zeroed) and every estimate noted
    (to look for it in the logs and the audit)."""

    def __init__(self, real) -> None:
        self.real, self.crops, self.estimates = real, [], []
        self.backend = real.backend

    def estimate(self, crop):
        self.crops.append(crop)
        e = self.real.estimate(crop)
        if e is not None:
            self.estimates.append(e)
        return e

    def close(self) -> None:
        pass


def face_photos(shared_data: Path, n: int) -> list[np.ndarray]:
    import cv2

    with (shared_data / "faces" / "labels.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["age_band"] in ("28-37", "38-47")][:n]
    return [cv2.cvtColor(cv2.imread(str(shared_data / "faces" / r["file"])), cv2.COLOR_BGR2RGB) for r in rows]


def scene(faces: list[np.ndarray]) -> tuple[np.ndarray, list[Track]]:
    """A 640 x 480 frame with each face (scaled to 96 px) on a grey body, and the tracks of those people."""
    import cv2

    img = np.full((480, 640, 3), 60, np.uint8)
    tracks = []
    for i, face in enumerate(faces):
        x0 = 40 + i * 200
        img[100:196, x0:x0 + 96] = cv2.resize(face, (96, 96), interpolation=cv2.INTER_AREA)
        img[196:400, x0:x0 + 96] = 120
        tracks.append(Track(i + 1, (float(x0), 100.0, float(x0 + 96), 400.0), 0.9, (0.0, 0.0), 1.0, 10))
    return img, tracks


def image_like(root: object, skip: object) -> list[np.ndarray]:
    """Arrays reachable from `root` (not through modules, classes, functions' globals, nor `skip`) that
    could hold a face: 2-d or more, uint8 or float, nonzero, at least 16 x 16."""
    seen, stack, found = set(), [root], []
    while stack:
        o = stack.pop()
        if id(o) in seen or o is skip:
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            if o.base is not None:
                stack.append(o.base)
            if o.ndim >= 2 and o.size >= 256 and o.any():
                found.append(o)
            continue
        if isinstance(o, types.ModuleType | type | types.FunctionType):
            continue
        stack.extend(gc.get_referents(o))
    return found


@pytest.fixture(scope="module")
def run(shared_data, tmp_path_factory):
    """Three people in view for 8 s at 10 fps, then the window closes; after every tick the checks run. The
    true histograms handed to the release are noted (three people: too few to be released at k=2)."""
    from firmware.demographics import hook as hook_module

    tmp = tmp_path_factory.mktemp("demo")
    true: list[dict] = []
    real_release = hook_module.release

    def noting(counts, *a, **k):
        true.append({z: h.copy() for z, h in counts.items()})
        return real_release(counts, *a, **k)

    hook_module.release = noting
    released: list[dict] = []
    audit = ListAudit()
    accountant = Accountant(tmp / "budget.sqlite", CFG.budgets())
    clock = FakeClock(start_wall=WALL0)
    records = logging.getLogger()
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: lines.append(r.getMessage())  # type: ignore[method-assign]
    records.addHandler(handler)
    old = records.level
    records.setLevel(logging.DEBUG)
    try:
        with OnnxAgeGender() as real:
            spy = Spy(real)
            hook = DemographicsHook(CFG, spy, GEOMETRY, accountant, released.extend, audit,
                                    rng=random.Random(1), clock=clock, period_s=0.1)
            img, tracks = scene(face_photos(shared_data, 3))
            checks = {"ticks": 0, "dirty_crops": 0, "image_like": 0, "max_new": 0, "dirty_tensors": 0}
            last = 0
            for tick in range(80):
                with Frame(img.copy(), img.copy(), clock.monotonic_ns(), tick, (640, 480)) as frame:
                    hook(frame, tracks, clock.wall())
                checks["ticks"] += 1
                checks["max_new"] = max(checks["max_new"], len(spy.crops) - last)
                last = len(spy.crops)
                checks["dirty_crops"] += sum(bool(c.any()) for c in spy.crops)
                checks["dirty_tensors"] += sum(bool(n.tensor.any()) for n in (real._age, real._gender))
                checks["dirty_tensors"] += bool(real._marker._tensor.any())
                checks["image_like"] += len(image_like(hook, spy))
                clock.advance(0.1)
            hook.close_window(clock.wall())
            yield {"records": released, "audit": audit.entries, "checks": checks, "spy": spy, "hook": hook,
                   "lines": lines, "accountant": accountant, "true": true}
    finally:
        hook_module.release = real_release
        records.removeHandler(handler)
        records.setLevel(old)
        accountant.close()


def test_each_person_is_estimated_a_few_times_and_counted_once(run):
    spy, hook = run["spy"], run["hook"]
    assert len(spy.estimates) == 3 * CFG.crops_per_track  # three faces found, three crops each
    assert all(25 <= e.age <= 55 for e in spy.estimates)  # adults, as the photos are
    (true,) = run["true"]
    assert true["left"].sum() == 2 and true["right"].sum() == 1  # one count per person, in their zone
    assert true["left"][2:4].sum() + true["right"][2:4].sum() >= 2  # 28-47 year olds, mostly in their bands
    for rec in run["records"]:
        schemas.validate(rec)
    assert run["accountant"].spent(STREAM, WALL0) == 1  # paid whatever the data (the spend says nothing)
    released = [f for e, _, f in run["audit"] if e == "demographics_released"]
    assert released == [{"window_start": WALL0 // 60 * 60, "window_s": 60, "records": len(run["records"]),
                         "zones": 2, "estimates": 9, "deferred_ticks": 0, "k": 2}]
    assert hook.held_tracks() == 0  # schedule, zones, slots, join points and the estimate sums dropped at the close


def test_crops_and_tensors_are_zeroed_in_the_tick_and_nothing_face_sized_is_kept(run):
    c = run["checks"]
    assert c["ticks"] == 80 and len(run["spy"].crops) >= 9
    assert c["dirty_crops"] == 0 and c["dirty_tensors"] == 0
    assert c["image_like"] == 0
    assert c["max_new"] <= CFG.max_estimates_per_tick


def test_no_estimate_in_a_record_a_log_line_or_the_audit(run):
    values = set()
    for e in run["spy"].estimates:
        values |= {repr(e.age), repr(e.p_male), f"{e.age:.1f}", f"{e.age:.2f}", f"{e.p_male:.2f}",
                   str(round(e.age))}
    audit_text = json.dumps([f for _, _, f in run["audit"]])
    for event, _, fields in run["audit"]:
        assert set(fields) <= {"window_start", "window_s", "records", "zones", "estimates", "deferred_ticks", "k",
                               "stream", "epsilon", "reason"}, event
        assert all(isinstance(v, int | str) or (k == "epsilon") for k, v in fields.items())
    text = " ".join(run["lines"]) + json.dumps(run["records"]) + audit_text
    assert not any(f"{v}" in text for v in values if len(v) >= 4)  # no age or probability, to 2 decimals
    for r in run["records"]:
        assert all(isinstance(c, int) for row in r["counts"] for c in row)
        assert not ({"track_id", "pseudonym", "group", "t"} & set(r))


def test_the_time_guard_defers_estimates_when_the_tick_has_no_room():
    clock = FakeClock(start_wall=WALL0)

    class Slow(ScriptedAgeGender):
        def estimate(self, rgb):
            clock.advance(0.09)  # 90 ms an estimate, in a 100 ms period with 80% for the work
            return super().estimate(rgb)

    est = Slow([Estimate(30.0, 0.9, 1.0)])
    acc = Accountant(":memory:", CFG.budgets())
    hook = DemographicsHook(CFG, est, GEOMETRY, acc, lambda r: None, rng=random.Random(0), clock=clock,
                            period_s=0.1)
    img = np.full((480, 640, 3), 50, np.uint8)
    tracks = [Track(i, (10.0 + 100 * i, 10.0, 90.0 + 100 * i, 300.0), 0.9, (0, 0), 1.0, 5) for i in range(4)]
    for tick in range(30):
        with Frame(img.copy(), None, clock.monotonic_ns(), tick, (640, 480)) as frame:
            hook(frame, tracks, clock.wall())
        clock.advance(0.1)
    assert est.calls == 1 and hook.deferred >= 28  # once its cost is known, nothing more fits in a tick


def test_a_cold_first_estimate_over_the_budget_does_not_stop_estimates_for_good():
    from firmware.sensing.tickbudget import STALE_S

    clock = FakeClock(start_wall=WALL0)
    costs = iter([0.5] + [0.01] * 10_000)  # a cold first estimate of 500 ms, then 10 ms, in a 100 ms period

    class Cold(ScriptedAgeGender):
        def estimate(self, rgb):
            clock.advance(next(costs))
            return super().estimate(rgb)

    est = Cold([Estimate(30.0, 0.9, 1.0)])
    hook = DemographicsHook(CFG, est, GEOMETRY, Accountant(":memory:", CFG.budgets()), lambda r: None,
                            rng=random.Random(0), clock=clock, period_s=0.1)
    img = np.full((480, 640, 3), 50, np.uint8)
    tracks = [Track(i, (10.0 + 100 * i, 10.0, 90.0 + 100 * i, 300.0), 0.9, (0, 0), 1.0, 5) for i in range(4)]
    for tick in range(int(2 * STALE_S / 0.1)):
        with Frame(img.copy(), None, clock.monotonic_ns(), tick, (640, 480)) as frame:
            hook(frame, tracks, clock.wall())
        clock.advance(0.1)
    assert est.calls > 4  # tried again once the cold figure had gone stale, and within the budget since


def test_a_failing_estimator_is_counted_and_logged_once_without_a_value(caplog):
    est = ScriptedAgeGender([Estimate(33.0, 0.7, 1.0)], fail_every=2)
    acc = Accountant(":memory:", CFG.budgets())
    out: list = []
    hook = DemographicsHook(CFG, est, GEOMETRY, acc, out.extend, rng=random.Random(0))
    img = np.full((480, 640, 3), 50, np.uint8)
    tracks = [Track(1, (10.0, 10.0, 90.0, 300.0), 0.9, (0, 0), 1.0, 5)]
    clock = FakeClock(start_wall=WALL0)
    with caplog.at_level(logging.WARNING):
        for tick in range(60):
            with Frame(img.copy(), None, clock.monotonic_ns(), tick, (640, 480)) as frame:
                hook(frame, tracks, clock.wall())
            clock.advance(0.1)
    assert hook.errors >= 1 and len([r for r in caplog.records if "failed" in r.getMessage()]) == 1
    assert "33" not in caplog.text and "0.7" not in caplog.text


def test_a_spent_budget_withholds_the_window_and_says_so():
    est = ScriptedAgeGender([Estimate(40.0, 0.2, 1.0)])
    cfg = DemographicsConfig(enabled=True, window_s=60, daily_epsilon=1.0, k=1, max_estimates_per_tick=4)
    acc = Accountant(":memory:", cfg.budgets())
    audit = ListAudit()
    out: list = []
    hook = DemographicsHook(cfg, est, GEOMETRY, acc, out.extend, audit, rng=random.Random(0))
    img = np.full((480, 640, 3), 50, np.uint8)
    tracks = [Track(i, (10.0 + 10 * i, 10.0, 90.0 + 10 * i, 300.0), 0.9, (0, 0), 1.0, 5) for i in range(30)]
    clock = FakeClock(start_wall=WALL0)
    for tick in range(1300):  # two windows and a bit
        with Frame(img.copy(), None, clock.monotonic_ns(), tick, (640, 480)) as frame:
            hook(frame, tracks, clock.wall())
        clock.advance(0.1)
    events = [e for e, _, _ in audit.entries]
    assert events[:2] == ["budget_spent", "demographics_released"] and "demographics_withheld" in events
    assert {r["window_start"] for r in out} == {WALL0}


def test_the_head_crop_is_the_top_of_the_box_and_small_people_are_skipped():
    hook = DemographicsHook(CFG, ScriptedAgeGender(), GEOMETRY, Accountant(":memory:", CFG.budgets()),
                            lambda r: None)
    frame = types.SimpleNamespace(source_size=(640, 480))
    box = hook.head_box(frame, (100.0, 50.0, 180.0, 350.0))
    assert np.allclose(box * [640, 480, 640, 480], [80, 50, 200, 170])  # 120 px: 40% of 300, centred
    assert hook.head_box(frame, (100.0, 50.0, 110.0, 90.0)) is None


def test_estimator_errors_are_hal_errors():
    assert issubclass(DetectorError, Exception)


# the same two zones in ground metres, 100 source pixels a metre: the join rule's distances are a walker's
METRIC = Geometry(GeometryConfig(homography=((0.01, 0.0, 0.0), (0.0, 0.01, 0.0), (0.0, 0.0, 1.0)),
                                 zones=(ZoneConfig("left", ((0, 0), (3.2, 0), (3.2, 4.8), (0, 4.8))),
                                        ZoneConfig("right", ((3.2, 0), (6.4, 0), (6.4, 4.8), (3.2, 4.8))))))
GENDERED = [Estimate(30.0, 0.9, 1.0), Estimate(31.0, 0.8, 1.0)]


def person(tid: int, x: float) -> Track:
    return Track(tid, (x, 60.0, x + 80.0, 360.0), 0.9, (0.0, 0.0), 1.0, 5)


def counted(monkeypatch, script, geometry=METRIC) -> tuple[int, DemographicsHook]:
    """Runs `script` (per tick at 10 fps, the tracks seen) through a hook and returns how many the window's
    true histograms counted (all zones) and the hook, closed."""
    from firmware.demographics import hook as hook_module

    true: list[int] = []
    real = hook_module.release

    def noting(counts, *a, **k):
        true.append(int(sum(h.sum() for h in counts.values())))
        return real(counts, *a, **k)

    monkeypatch.setattr(hook_module, "release", noting)
    clock = FakeClock(start_wall=WALL0)
    hook = DemographicsHook(CFG, ScriptedAgeGender(GENDERED), geometry, Accountant(":memory:", CFG.budgets()),
                            lambda r: None, rng=random.Random(0), clock=clock, period_s=0.1)
    img = np.full((480, 640, 3), 50, np.uint8)
    for tick, tracks in enumerate(script):
        with Frame(img.copy(), None, clock.monotonic_ns(), tick, (640, 480)) as frame:
            hook(frame, tracks, clock.wall())
        clock.advance(0.1)
    hook.close_window(clock.wall())
    (n,) = true
    return n, hook


def test_a_fragmented_track_counts_once(monkeypatch):
    # one walker: track 1 for 2 s, lost for 0.5 s, born again as track 2 a few cm on, for 3 s; then lost
    # again and born as track 3 (1.5 s later, 1 m on: within 1 m + 2 m/s of the gap)
    script = ([[person(1, 100.0)]] * 20 + [[]] * 5 + [[person(2, 104.0)]] * 30 + [[]] * 15
              + [[person(3, 204.0)]] * 20)
    n, hook = counted(monkeypatch, script)
    assert n == 1
    assert hook.held_tracks() == 0
    assert per_track_kept(hook) == []


def per_track_kept(hook: DemographicsHook) -> list[object]:
    """What the hook still reaches (not through its estimator, config, geometry, accountant, modules, classes or
    functions) that could be per track: a dict keyed by ints (track ids, slots), a ground point, or a float
    equal to one of the scripted estimates."""
    skip = {id(o) for o in (hook.estimator, hook.config, hook.geometry, hook.accountant)}
    values = {v for e in GENDERED for v in (e.age, e.p_male)}
    seen, stack, found = set(), [hook], []
    while stack:
        o = stack.pop()
        if id(o) in seen or id(o) in skip or isinstance(o, types.ModuleType | type | types.FunctionType):
            continue
        seen.add(id(o))
        if isinstance(o, dict) and any(isinstance(k, int) for k in o):
            found.append(o)
        elif isinstance(o, np.ndarray) and o.size and o.any():
            found.append(o)
        elif isinstance(o, float) and o in values:
            found.append(o)
        stack.extend(gc.get_referents(o))
    return found


def test_a_second_person_nearby_still_counts(monkeypatch):
    # two people 0.3 m apart, seen together: neither is a fragment of the other
    together = [[person(1, 100.0), person(2, 130.0)]] * 30
    assert counted(monkeypatch, together)[0] == 2
    # one leaves, another comes in 2.5 m away 0.6 s after its last sighting (beyond 1 m + 2 m/s x 0.6 s): two
    apart = [[person(1, 100.0)]] * 20 + [[]] * 5 + [[person(2, 350.0)]] * 20
    assert counted(monkeypatch, apart)[0] == 2
    # one person, lost for longer than the join time (count_join_s, 2 s): counts again, as the DPIA says
    late = [[person(1, 100.0)]] * 20 + [[]] * 25 + [[person(2, 100.0)]] * 20
    assert counted(monkeypatch, late)[0] == 2
    # two tracks lost together, two newborns where they were: each joins its own, two people
    pair = [[person(1, 100.0), person(2, 400.0)]] * 20 + [[]] * 3 + [[person(3, 402.0), person(4, 101.0)]] * 20
    assert counted(monkeypatch, pair)[0] == 2


def test_with_the_join_off_each_track_counts(monkeypatch):
    off = Geometry(GeometryConfig(homography=METRIC.config.homography, zones=METRIC.config.zones, count_join_s=0.0))
    script = [[person(1, 100.0)]] * 20 + [[]] * 5 + [[person(2, 104.0)]] * 30
    assert counted(monkeypatch, script, off)[0] == 2
