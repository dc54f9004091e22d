"""Customer-flow groups in the running loop: the real MobileNet embedder on real PETS09 frames (vtest.avi
through `hal.video.VideoCamera`, boxes replayed from the gt), the flow-group hook as `umbra run` adds it.
Records per zone and window, every group padded; crops and the model's input zeroed after each embedding;
nothing image-like reachable from the hook after a tick; nothing per person in what is released or kept
after a window; with the section off, no embedding at all."""

from __future__ import annotations

import gc
import json
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from firmware import schemas
from firmware.cli.assemble import build_loop
from firmware.config import load
from firmware.config.flows import FlowGroupConfig
from firmware.flows.hook import FlowGroupHook, build_flow_hook
from firmware.sensing.geometry import Geometry
from firmware.sensing.loop import EndsRun
from hal.clock import FakeClock
from hal.embedder import Embedder, FakeEmbedder

ROOT = Path(__file__).resolve().parents[3]
WALL0 = 1_700_000_000.0  # a multiple of the 10 s window
FLOW = FlowGroupConfig(enabled=True, window_s=10, basis_min=16, crops_per_track=5, crop_gap_s=0.5)


class ListAudit:
    def __init__(self) -> None:
        self.entries: list[tuple[str, float, dict]] = []

    def append(self, event: str, t: float, **fields) -> None:
        self.entries.append((event, t, fields))


class SpyEmbedder:
    """The real embedder, with every crop it was given kept so the test can look at it afterwards."""

    def __init__(self, real) -> None:
        self.real, self.crops = real, []

    def embed(self, crop: np.ndarray) -> np.ndarray:
        self.crops.append(crop)
        return self.real.embed(crop)


def image_like_arrays(root: object, spy: SpyEmbedder) -> list[np.ndarray]:
    """Every numpy array reachable from `root` (not through modules, classes or function globals; the spy
    counts as the real embedder it wraps) that holds pixels: 2-d or more and uint8, or nonzero and 3-d."""
    seen, stack, found = set(), [root], []
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if o is spy:
            stack.append(spy.real)
            continue
        if isinstance(o, np.ndarray):
            if o.base is not None:
                stack.append(o.base)
            if (o.ndim >= 2 and o.dtype == np.uint8 and o.any()) or (o.ndim >= 3 and o.any()):
                found.append(o)
            continue
        if isinstance(o, types.ModuleType | type):
            continue
        if isinstance(o, types.FunctionType):
            stack.extend(c.cell_contents for c in o.__closure__ or ())
            stack.extend(o.__defaults__ or ())
            continue
        stack.extend(gc.get_referents(o))
    return found


def pets_config(shared_data: Path, flow: FlowGroupConfig):
    cfg = load(ROOT / "bench/configs/pets09.toml")
    gt = str(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt")
    return replace(cfg, camera=replace(cfg.camera, source=str(shared_data / "video/vtest.avi")),
                   detector=replace(cfg.detector, kind="scripted", ground_truth=gt), flowgroups=flow)


@pytest.fixture(scope="module")
def pets_run(shared_data):
    """25 s of PETS09 at 7 fps through the loop with the flow-group hook; after every tick (a sink runs
    once the frame is released) the crops, the model's input and what the hook can reach are checked."""
    from hal.video import VideoCamera

    cfg = pets_config(shared_data, FLOW)
    clock = FakeClock(start_wall=WALL0)
    camera = VideoCamera(shared_data / "video/vtest.avi", clock=clock, lores_size=(300, 300),
                         main_size=(640, 480), fps=7.0)
    released: list[dict] = []
    audit = ListAudit()
    with Embedder() as real:
        spy = SpyEmbedder(real)
        loop = build_loop(cfg, ROOT / "bench/configs", clock, camera=camera)
        hook = build_flow_hook(cfg.flowgroups, loop, [released.extend], audit, embedder=spy,
                               rng=np.random.default_rng(3))
        assert isinstance(hook, FlowGroupHook)
        checks = {"ticks": 0, "crops_nonzero": 0, "input_dirty": 0, "image_like": 0, "max_new_crops": 0}
        last = [0]

        def after_tick() -> None:
            checks["ticks"] += 1
            checks["max_new_crops"] = max(checks["max_new_crops"], len(spy.crops) - last[0])
            last[0] = len(spy.crops)
            checks["crops_nonzero"] += sum(bool(c.any()) for c in spy.crops)
            checks["input_dirty"] += not real.input_is_blank()
            checks["image_like"] += len(image_like_arrays(hook, spy))

        class AfterTick(EndsRun):  # after every tick, and at the end of the run
            def __call__(self, _result) -> None:
                after_tick()

            def end_run(self, _end) -> None:
                after_tick()

        loop.sinks.append(AfterTick())
        loop.track_hooks.append(hook)
        loop.run(max_ticks=175)
        hook.close_window(clock.wall())
        yield {"records": released, "audit": audit.entries, "checks": checks, "spy": spy, "hook": hook,
               "zones": [z.name for z in cfg.geometry.zones], "end": clock.wall()}


def test_records_per_zone_and_window_with_every_group_padded(pets_run) -> None:
    recs, zones = pets_run["records"], pets_run["zones"]
    windows = sorted({r["window_start"] for r in recs})
    assert len(windows) >= 2 and all(w % 10 == 0 for w in windows)  # 25 s of video, 10 s windows
    for w in windows:
        assert sorted(r["zone"] for r in recs if r["window_start"] == w) == sorted(zones)  # every zone, once
    assert all(c >= FLOW.min_count for r in recs for _, c in r["groups"])
    assert any(len(r["groups"]) > 0 for r in recs)
    for r in recs:
        schemas.validate(r)  # what the reference cloud checks
    released = [f for e, _, f in pets_run["audit"] if e == "flowgroups_released"]
    assert sum(f["records"] for f in released) == len(recs)
    assert pets_run["spy"].crops, "the real model embedded crops"


def test_crops_and_model_input_zeroed_and_nothing_image_like_kept(pets_run) -> None:
    c = pets_run["checks"]
    assert c["ticks"] == 175 + 1  # and the end of the run: the checks hold then too
    assert len(pets_run["spy"].crops) > 20
    assert c["crops_nonzero"] == 0  # every crop the model saw was zeroed within its tick
    assert c["input_dirty"] == 0  # and so was the model's input tensor
    assert c["image_like"] == 0  # no frame-sized array nor crop reachable from the hook between ticks
    assert c["max_new_crops"] <= FLOW.max_embeds_per_tick  # the per-tick bound held


def test_nothing_per_person_released_or_kept(pets_run) -> None:
    keys = {"schema", "window_start", "window_s", "zone", "min_count", "groups"}
    for r in pets_run["records"]:
        assert set(r) == keys
        assert all(isinstance(g, int) and 0 <= g < FLOW.groups and isinstance(n, int) for g, n in r["groups"])
        text = json.dumps(r)
        assert "." not in text.replace("umbra.flowgroups", "")  # no floats: no embedding, no coordinate
    for event, _, fields in pets_run["audit"]:
        assert set(fields) <= {"window_start", "window_s", "records", "groups", "min_count", "reason", "crops",
                               "deferred_ticks"}, event
    hook = pets_run["hook"]
    assert hook.held_tracks() == 0  # track ids, schedules and embedding sums dropped at window close


def test_crops_are_spread_over_a_track_life_and_bounded_per_tick() -> None:
    cfg = load(ROOT / "bench/configs/pets09.toml")
    geometry = Geometry(cfg.geometry)
    out: list[dict] = []
    calls: list[tuple[int, int]] = []  # (tick, crop height): which track was embedded at which tick

    class Recorder(FakeEmbedder):
        def embed(self, crop):
            calls.append((tick, crop.shape[0]))
            return super().embed(crop)

    hook = FlowGroupHook(replace(FLOW, window_s=3600, crop_gap_s=1.0), Recorder(), geometry, out.extend,
                         rng=np.random.default_rng(0))
    from firmware.sensing.tracker import Track
    from hal.frame import Frame

    rng = np.random.default_rng(1)
    main = rng.integers(1, 255, (480, 640, 3), dtype=np.uint8)
    # two people standing in the plaza (the east zone), 100 px and 120 px tall in the 768 x 576 source
    people = [Track(1, (400.0, 300.0, 440.0, 400.0), 0.9, (0.0, 0.0), 0.0, 5),
              Track(2, (500.0, 280.0, 550.0, 400.0), 0.9, (0.0, 0.0), 0.0, 5)]
    for tick in range(300):  # 30 s at 10 Hz
        frame = Frame(main.copy(), main.copy(), 1_000_000_000 + tick * 100_000_000, tick, (768, 576))
        hook(frame, people, WALL0 + tick / 10)
    per_tick = np.bincount([t for t, _ in calls])
    assert per_tick.max() == 1  # max_embeds_per_tick
    first = [t for t, h in calls if h == 84]  # track 1's crops: 100 px in the source, 84 in the main stream
    assert len(first) == FLOW.crops_per_track == len({t for t, _ in calls if t in first})
    gaps = np.diff(first)
    assert gaps.min() >= 10 and np.all(np.diff(gaps) > 0)  # 1 s apart or more, each gap longer: not consecutive
    assert len(calls) == 2 * FLOW.crops_per_track  # then no more work for these two


def test_loop_track_hooks_see_this_ticks_tracks_with_the_pixels_alive(shared_data) -> None:
    from hal.video import VideoCamera

    cfg = pets_config(shared_data, FlowGroupConfig())
    clock = FakeClock(start_wall=WALL0)
    camera = VideoCamera(shared_data / "video/vtest.avi", clock=clock, fps=7.0)
    loop = build_loop(cfg, ROOT / "bench/configs", clock, camera=camera)
    returned: list = []
    real_update = loop.tracker.update

    def update(boxes, scores, dt, frame_size=None):
        returned.append(real_update(boxes, scores, dt, frame_size))
        return returned[-1]

    loop.tracker.update = update  # type: ignore[method-assign]
    seen: list[tuple[bool, int, bool]] = []
    loop.track_hooks.append(lambda frame, tracks, wall: seen.append(
        (tracks is returned[-1], len(tracks), bool(frame.pixels.any()))))
    loop.run(max_ticks=20)
    assert len(seen) == len(returned) == 20
    assert all(same and alive for same, _, alive in seen)
    assert sum(n for _, n, _ in seen) > 20  # the hooks saw people


def test_with_the_section_off_umbra_run_does_no_embedding_work(tmp_path, shared_data, monkeypatch) -> None:
    from firmware.cli import run as flowhook  # where umbra run looks the hook builder up
    from firmware.cli.main import main
    from firmware.config import to_toml

    monkeypatch.setenv("UMBRA_DATA_DIR", str(shared_data))
    built: list[object] = []
    embeds: list[object] = []

    def fake_init(self, *a, **k) -> None:  # the model stays unloaded: count constructions and embeddings
        built.append(self)
        self.backend = "counted"

    monkeypatch.setattr(Embedder, "__init__", fake_init)
    monkeypatch.setattr(Embedder, "embed", lambda self, crop: embeds.append(crop) or np.ones(1024, np.float32))
    hooks: list[object] = []
    real_build = flowhook.build_flow_hook
    monkeypatch.setattr(flowhook, "build_flow_hook", lambda *a, **k: hooks.append(real_build(*a, **k)) or hooks[-1])
    cfg = pets_config(shared_data, FlowGroupConfig())
    table = {"camera": {"kind": "video", "source": cfg.camera.source, "fps": 7.0},
             "detector": {"kind": "scripted", "ground_truth": cfg.detector.ground_truth},
             "loop": {"detect_hz": 50.0, "emit_hz": 2.0},
             "geometry": {"homography": [list(r) for r in cfg.geometry.homography],
                          "zones": [{"name": z.name, "polygon": [list(p) for p in z.polygon]}
                                    for z in cfg.geometry.zones]},
             "output": {"aggregates_file": str(tmp_path / "agg.jsonl")},
             "privacy": {"profile": "aggregates", "window_s": 60, "budget_file": str(tmp_path / "b.sqlite")},
             "samples": {"enabled": False}}
    (tmp_path / "off.toml").write_text(to_toml(table))
    assert main(["run", "--config", str(tmp_path / "off.toml"), "--max-frames", "15"]) == 0
    assert hooks == [None] and built == [] and embeds == []  # no hook, no model loaded, no embedding
    table["flowgroups"] = {"enabled": True, "window_s": 10}  # the same run with it on does build one
    (tmp_path / "on.toml").write_text(to_toml(table))
    assert main(["run", "--config", str(tmp_path / "on.toml"), "--max-frames", "15"]) == 0
    assert isinstance(hooks[-1], FlowGroupHook) and len(built) == 1 and embeds  # what the check would catch


def test_population_stats_give_the_basis_without_keeping_embeddings() -> None:
    """Exact (as fit_basis, up to signs) while the population's rank fits the kept rank; close beyond it on
    embedding-like data (a few strong directions in noise); small (no array near a frame's size)."""
    from firmware.flows.groups import PopulationStats, fit_basis

    rng = np.random.default_rng(0)
    for n, tol in ((30, 1e-9), (400, 2e-2)):
        strong = rng.standard_normal((n, 6)) * [5, 4, 3, 2.5, 1, 1] @ rng.standard_normal((6, 1024))
        x = np.abs(0.05 * strong + 0.3 * rng.standard_normal((n, 1024)) + 2)
        stats = PopulationStats()
        for e in x:
            stats.add(e)
        got, want = stats.basis(4), fit_basis(x, 4)
        assert np.allclose(got.center, want.center)
        assert np.abs(np.abs(got.apply(x)) - np.abs(want.apply(x))).max() < tol  # the same, up to each sign
        held = [a for a in (stats._mean, stats._sv, stats._dirs, stats._batch)]
        assert max(a.size for a in held) <= 32 * 1024 and not stats._batch.any()  # rows folded and zeroed
    stats.clear()
    assert stats.count() == 0 and not stats._mean.any() and not len(stats._dirs)
    with pytest.raises(ValueError, match="at least"):
        stats.basis(4)


def test_umbra_run_releases_flow_groups_that_the_reference_cloud_accepts(tmp_path, shared_data, monkeypatch):
    """End to end: `umbra run` with sync on and [flowgroups] on (the real embedder), a real reference cloud
    over mutual TLS; the cloud holds exactly the flow-group records the audit log says were released."""
    from cloud.app import DEV_DEVICE
    from cloud.harness import CloudThread, device_setup
    from firmware.cli.main import main
    from firmware.config import to_toml
    from firmware.privacy.audit import verify
    from hal.clock import SystemClock

    monkeypatch.setenv("UMBRA_DATA_DIR", str(shared_data))
    cfg = pets_config(shared_data, FLOW)
    cloud = CloudThread(tmp_path / "cloud", SystemClock())
    try:
        dev = device_setup(cloud.cloud, tmp_path / "device", cloud.port)
        table = {
            "device": {"id": DEV_DEVICE},
            "camera": {"kind": "video", "source": cfg.camera.source, "fps": 7.0},
            "detector": {"kind": "scripted", "ground_truth": cfg.detector.ground_truth},
            # 2 Hz: a 500 ms tick. At 10 Hz (100 ms) the hook's embedding-cost estimate, set by the first (cold)
            # embedding, 390 ms on a loaded 2-core machine, exceeded the tick and no crop was embedded again: the
            # basis never got its 12 crops and nothing was released, in 5 runs of 9 (a timing race, not what
            # this test is about: the time budget has its own test on a fake clock below)
            "loop": {"detect_hz": 2.0, "emit_hz": 2.0},
            "geometry": {"homography": [list(r) for r in cfg.geometry.homography],
                         "zones": [{"name": z.name, "polygon": [list(p) for p in z.polygon]}
                                   for z in cfg.geometry.zones]},
            "samples": {"enabled": False},
            "privacy": {"profile": "aggregates", "window_s": 60, "budget_file": str(tmp_path / "budget.sqlite"),
                        "audit_file": str(tmp_path / "audit.jsonl")},
            # a short window, crops 0.1 s apart and the whole tick open to them: the 24 frames (12 s) give the
            # basis its 12 crops (about 17) whichever window edge the run crosses
            "flowgroups": {"enabled": True, "window_s": 10, "basis_min": 12, "crop_gap_s": 0.1,
                           "max_embeds_per_tick": 2, "tick_share": 1.0},
            "sync": dev.sync_table(),
        }
        (tmp_path / "sensor.toml").write_text(to_toml(table))
        real_init = Embedder.__init__

        def warmed(self, *a, **k) -> None:  # the real model, its cold first call (allocation) made before the run
            real_init(self, *a, **k)
            self.embed(np.zeros((64, 32, 3), np.uint8))

        monkeypatch.setattr(Embedder, "__init__", warmed)
        assert main(["run", "--config", str(tmp_path / "sensor.toml"), "--max-frames", "24"]) == 0
        held = [json.loads(b) for b in cloud.cloud.store.bodies(DEV_DEVICE)]
    finally:
        cloud.close()
    flows = [r for r in held if r["schema"] == "umbra.flowgroups/1"]
    assert verify(tmp_path / "audit.jsonl").ok
    entries = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    released = [e["fields"] for e in entries if e["event"] == "flowgroups_released"]
    assert released and sum(f["records"] for f in released) == len(flows)  # all of it arrived, once
    zones = sorted(z.name for z in cfg.geometry.zones)
    for w in {r["window_start"] for r in flows}:
        assert sorted(r["zone"] for r in flows if r["window_start"] == w) == zones
    assert all(c >= FLOW.min_count for r in flows for _, c in r["groups"]) and any(r["groups"] for r in flows)
    assert not [r for r in held if r["schema"].startswith("umbra.track/")]  # the aggregates profile: no tracks


def test_the_dpia_of_the_running_config_states_flow_groups_only_when_on(shared_data) -> None:
    from firmware.privacy.dpia import generate_dpia

    off = generate_dpia(pets_config(shared_data, FlowGroupConfig()))
    on = generate_dpia(pets_config(shared_data, replace(FLOW, window_s=60, min_count=7)))
    assert "customer-flow group counts" not in off and "population statistics" not in off
    assert "customer-flow group counts (1000 groups) per zone and window of 60 s" in on
    assert "padded to at least 7" in on and "flow-group population statistics" in on


@pytest.mark.parametrize(("detect_ms", "embeds"), [(50, "some"), (100, "none")])
def test_embedding_waits_when_the_tick_has_no_time_left(shared_data, detect_ms, embeds) -> None:
    """The loop's period is 143 ms (7 Hz); a detector taking `detect_ms` and an embedding 40 ms on the
    loop's clock: with tick_share 0.8 (114 ms), crops are embedded only where they fit, and the loop keeps
    its cadence either way."""
    from hal.scripted import ScriptedDetector
    from hal.video import VideoCamera

    cfg = pets_config(shared_data, replace(FLOW, max_embeds_per_tick=3, tick_share=0.8))
    clock = FakeClock(start_wall=WALL0)
    camera = VideoCamera(shared_data / "video/vtest.avi", clock=clock, fps=7.0)
    detector = ScriptedDetector.from_mot(Path(cfg.detector.ground_truth), clock=clock, cost_s=detect_ms / 1000)
    loop = build_loop(cfg, ROOT / "bench/configs", clock, camera=camera, detector=detector)

    class Slow(FakeEmbedder):
        def embed(self, crop):
            clock.advance(0.040)
            return super().embed(crop)

    hook = build_flow_hook(cfg.flowgroups, loop, [lambda recs: None], embedder=Slow(), rng=np.random.default_rng(0))
    assert hook is not None
    loop.track_hooks.append(hook)
    stats = loop.run(max_ticks=60)
    assert stats.overruns <= 1  # at most the first embedding, before its cost is known
    if embeds == "some":
        assert hook.embedded >= 20
    else:
        assert hook.embedded <= 1 and hook.deferred > 30


def test_the_flowgroups_section_is_off_by_default_and_checked_key_by_key() -> None:
    from firmware.config import parse
    from firmware.errors import ConfigError

    assert parse("").flowgroups.enabled is False
    cfg = parse("[flowgroups]\nenabled = true\nwindow_s = 60\nmax_embeds_per_tick = 2\nedgetpu = \"off\"\n")
    assert cfg.flowgroups == FlowGroupConfig(enabled=True, window_s=60, max_embeds_per_tick=2, edgetpu="off")
    for bad, name in (("tick_share = 0.0", "tick_share"), ("min_count = 1", "min_count"),
                      ("basis_min = 3", "basis_min"), ("crops = 3", "flowgroups.crops"),
                      ('edgetpu = "maybe"', "edgetpu")):
        with pytest.raises(ConfigError, match=name):
            parse(f"[flowgroups]\n{bad}\n")


def test_the_cloud_schema_refuses_a_small_group_or_an_extra_field(pets_run) -> None:
    record = pets_run["records"][0]
    schemas.validate(record)
    for bad in (record | {"groups": [[3, 1]]}, record | {"track_ids": [1, 2]}, record | {"min_count": 1}):
        with pytest.raises(schemas.SchemaError):
            schemas.validate(bad)
