"""The zone plan end to end: `umbra run` on the shared PETS09 footage (scripted boxes from its ground truth) with
sync on, against a real reference cloud over mutual TLS; the first status carries the sensor's zones and lines,
the cloud serves them at /api/v1/sensors/{sensor}/zones, and the dashboard in a real headless Chromium outlines
them on the heatmap, beside the heatmap cells and occupancy the device released.

The device's clock is `[device] clock = "system"` (trusted): under "ntp" without a synchronised clock the
analytics windows are held and nothing would be released (firmware/cli/assemble.py::build_clock)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
import requests

from cloud import customers
from cloud.app import DEV_DEVICE
from cloud.dashboard import CHART
from cloud.harness import CloudThread, device_setup
from firmware.cli.main import main
from firmware.config import load, to_toml
from hal.clock import SystemClock
from tests.cloud.test_dashboard import browser  # noqa: F401 - the shared headless Chromium fixture

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[tuple[CloudThread, str, dict]]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (bench/apt-packages.txt)")
    if not CHART.exists():
        pytest.skip("Chart.js is not installed: bash bench/setup-web.sh")
    tmp = tmp_path_factory.mktemp("dashdev")
    ct = CloudThread(tmp / "cloud", SystemClock())
    dev = device_setup(ct.cloud, tmp / "device", ct.port)
    base = load(ROOT / "bench/configs/pets09.toml")
    table = {
        "device": {"id": DEV_DEVICE, "clock": "system", "state_dir": str(tmp / "state")},
        "camera": {"kind": "video", "source": str(shared_data / "video/vtest.avi"), "fps": 7.0},
        "detector": {"kind": "scripted", "ground_truth": str(shared_data / "mot/MOT15/PETS09-S2L1/gt/gt.txt")},
        "loop": {"detect_hz": 25.0, "emit_hz": 2.0},
        "geometry": asdict(base.geometry),
        "samples": {"enabled": False},
        # an hour's window: the ~20 s run falls in one window (with 60 s windows, a run across a minute's edge
        # left a few seconds in the first, whose occupancy the k-threshold suppressed, and the rest unreleased)
        # and epsilon 10 (the most allowed): this tests what reaches the page, not the noise; at epsilon 1 the
        # occupancy of a 17 s run fell below its private threshold in about one run of three
        "privacy": {"profile": "aggregates", "window_s": 3600, "k": 2, "epsilon": 10.0,
                    "budget_file": str(tmp / "budget.sqlite"), "audit_file": str(tmp / "audit.jsonl")},
        "sync": dev.sync_table(),
    }
    cfg = tmp / "sensor.toml"
    cfg.write_text(to_toml(table))
    try:
        assert main(["run", "--config", str(cfg), "--max-frames", "120"]) == 0
        customers.assign_sensor(ct.cloud.store, DEV_DEVICE, "acme", "PETS09 plaza")
        key = customers.create_key(ct.cloud.store, "acme", "customer", time.time())
        yield ct, key, asdict(base.geometry)
    finally:
        ct.close()
        ct.cloud.store.close()


def _api(ct: CloudThread, key: str, path: str, **params: object) -> dict:
    r = requests.get(f"https://localhost:{ct.api_port}/api/v1/sensors/{DEV_DEVICE}/{path}", params=params,
                     headers={"Authorization": f"Bearer {key}"}, verify=str(ct.cloud.pki.ca_cert), timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_first_status_carries_the_zone_plan_and_the_dashboard_outlines_it(ran, browser) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ct, key, geometry = ran
    plan = _api(ct, key, "zones")
    assert plan["zones"] == [{"name": z["name"], "polygon": [list(p) for p in z["polygon"]]} for z in geometry["zones"]]
    assert plan["lines"] == [{"name": ln["name"], "a": list(ln["a"]), "b": list(ln["b"])} for ln in geometry["lines"]]
    occ = _api(ct, key, "occupancy", **{"from": int(plan["t"]) - 3600, "to": int(plan["t"]) + 3600})["rows"]
    assert occ, "the sensor released no occupancy (is its clock trusted?)"
    day = time.strftime("%Y-%m-%d", time.gmtime(occ[0]["window_start"]))
    heat = _api(ct, key, "heatmap", **{"from": occ[0]["window_start"] // 86400 * 86400,
                                       "to": occ[0]["window_start"] // 86400 * 86400 + 86400})["rows"]

    browser.get(f"https://localhost:{ct.api_port}/dashboard?sensor={DEV_DEVICE}&day={day}#key={key}")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert browser.find_element(By.ID, "error").text == ""
    drawn = browser.execute_script("return umbraCharts.heatmap.data.datasets.map(d => [d.label, d.data])")
    outlines = {label: [[p["x"], p["y"]] for p in pts] for label, pts in drawn if label != "people-seconds"}
    want = {f"zone {z['name']}": [*z["polygon"], z["polygon"][0]] for z in plan["zones"]}
    want |= {f"line {ln['name']}": [ln["a"], ln["b"]] for ln in plan["lines"]}
    assert outlines == want
    cells = dict(drawn)["people-seconds"]
    assert len(cells) == len({r["zone"] for r in heat})
    m = {r["cell_m"] for r in heat}.pop() if heat else 2.0
    centres = {((int(x) + 0.5) * m, (int(y) + 0.5) * m) for x, y in (r["zone"].split(",") for r in heat)}
    assert {(c["x"], c["y"]) for c in cells} == centres  # each released cell drawn at its centre
    # the page shows the day's peaks: a run across midnight (about 1 in 4000) has windows of two days
    today = [r for r in occ if r["window_start"] // 86400 == occ[0]["window_start"] // 86400]
    peaks = {r["zone"]: r["peak_present"] for r in today if r["peak_present"] is not None}
    for zone in peaks:
        shown = browser.find_element(By.CSS_SELECTOR, f'[data-peak="{zone}"]').text
        assert int(shown) == max(r["peak_present"] for r in today
                                 if r["zone"] == zone and r["peak_present"] is not None)
