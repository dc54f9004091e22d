"""The dashboard in a real headless Chromium (Debian's, driven by Selenium through /usr/bin/chromedriver): after
a day of released aggregates is uploaded through the real uploader over mutual TLS, its charts hold the
released counts and occupancy, and every number on the page equals the read API's."""

from __future__ import annotations

import asyncio
import random
import shutil
import time
from collections.abc import Iterator

import pytest
import requests

from cloud import customers
from cloud.app import DEV_DEVICE
from cloud.dashboard import CHART
from cloud.harness import CloudThread, device_setup
from firmware.config.sync import OutboxConfig
from firmware.sync.outbox import Outbox
from firmware.sync.uploader import Uploader
from hal.clock import SystemClock

webdriver = pytest.importorskip("selenium.webdriver")
DAY0 = 1_700_006_400  # 2023-11-15 00:00 UTC
DAY = "2023-11-15"


def _day_of_aggregates() -> list[dict]:
    rng = random.Random(20)
    base = {"schema": "umbra.aggregate/1", "window_s": 900, "k": 5, "epsilon": 0.5, "sensitivity": 1,
            "mechanism": "discrete_laplace"}
    out = []
    for w in range(32, 80):  # 08:00 to 20:00 in 15-minute windows
        t = DAY0 + w * 900
        out.append({**base, "window_start": t, "metric": "line_flow", "zone": "door",
                    "values": [rng.randint(0, 40), None if w % 7 == 0 else rng.randint(0, 30)]})
        out.append({**base, "window_start": t, "metric": "occupancy", "zone": "shop",
                    "values": [rng.randint(5, 60), round(rng.uniform(1, 9), 2), rng.randint(2, 15)]})
        out.append({**base, "window_start": t, "metric": "heatmap", "zone": f"{w % 5},{w % 3}",
                    "values": [float(rng.randint(10, 400)), 0.5]})
    # the running crossings of the day (continual observation, one step a minute from 00:00): the door's tree to
    # noon, the gate's to 05:00; totals below k withheld (null), as the device's k gate does
    for line, steps, opens in (("door", 720, 480), ("gate", 300, 60)):
        fwd = bwd = 0
        for i in range(steps):
            if i >= opens:
                fwd, bwd = fwd + rng.randint(0, 3), bwd + rng.randint(0, 2)
            noised = [max(0, v + rng.randint(-3, 3)) for v in (fwd, bwd)]
            out.append({"schema": "umbra.aggregate/1", "window_start": DAY0 + 60 * i, "window_s": 60, "since": DAY0,
                        "metric": "flow_total", "zone": line, "values": [v if v >= 5 else None for v in noised],
                        "k": 5, "epsilon": 1.0, "sensitivity": 2, "mechanism": "binary_tree"})
    for w in range(32, 40):
        for zone, ids in (("shop", range(0, 40)), ("till", range(10, 45))):
            out.append({"schema": "umbra.flowgroups/1", "window_start": DAY0 + w * 900, "window_s": 900, "zone": zone,
                        "min_count": 3, "groups": [[g, 3] for g in ids]})
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CloudThread, str]]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (bench/apt-packages.txt)")
    if not CHART.exists():
        pytest.skip("Chart.js is not installed: bash bench/setup-web.sh")
    tmp = tmp_path_factory.mktemp("dash")
    clock = SystemClock()
    ct = CloudThread(tmp / "cloud", clock)

    async def upload() -> None:
        dev = device_setup(ct.cloud, tmp / "device", ct.port)
        ob = Outbox(OutboxConfig(path=dev.outbox_path))
        up = Uploader(dev.uploader, dev.tls, ob, clock, random.Random(1))
        ob.enqueue(_day_of_aggregates())
        try:
            res = await up.cycle()
            assert res.error is None and len(ob) == 0
        finally:
            await up.close()
            ob.close()

    asyncio.run(upload())
    customers.assign_sensor(ct.cloud.store, DEV_DEVICE, "acme", "Front door")
    key = customers.create_key(ct.cloud.store, "acme", "customer", time.time())
    yield ct, key
    ct.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    opts.accept_insecure_certs = True  # the cloud's development CA, on 127.0.0.1
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    yield drv
    drv.quit()


def _api(ct: CloudThread, key: str, metric: str) -> list[dict]:
    params = {"day": DAY0} if metric == "flow_totals" else {"from": DAY0, "to": DAY0 + 86400}
    r = requests.get(f"https://localhost:{ct.api_port}/api/v1/sensors/{DEV_DEVICE}/{metric}",
                     params=params, headers={"Authorization": f"Bearer {key}"},
                     verify=str(ct.cloud.pki.ca_cert), timeout=10)
    assert r.status_code == 200
    return r.json()["rows"]


def test_the_dashboard_shows_the_released_figures_the_api_serves(site: tuple[CloudThread, str], browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ct, key = site
    browser.get(f"https://localhost:{ct.api_port}/dashboard?sensor={DEV_DEVICE}&day={DAY}#key={key}")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert browser.find_element(By.ID, "error").text == ""
    assert "key=" not in browser.current_url  # the key leaves the address bar
    counts, occ, flows = _api(ct, key, "counts"), _api(ct, key, "occupancy"), _api(ct, key, "flows")
    assert len(counts) == 48 and len(occ) == 48 and flows
    for direction in ("forward", "backward"):
        shown = browser.find_element(By.CSS_SELECTOR, f'[data-total="door/{direction}"]').text
        assert int(shown) == sum(r[direction] for r in counts if r[direction] is not None)
    assert int(browser.find_element(By.CSS_SELECTOR, '[data-peak="shop"]').text) == max(r["peak_present"] for r in occ)
    assert int(browser.find_element(By.CSS_SELECTOR, '[data-visitors="shop"]').text) == sum(r["visitors"] for r in occ)
    charted = browser.execute_script("return umbraCharts.counts.data.datasets.map(d => [d.label, d.data])")
    assert charted == [["door forward", [r["forward"] for r in counts]],
                       ["door backward", [r["backward"] for r in counts]]]  # suppressed windows are gaps
    assert browser.execute_script("return umbraCharts.occupancy.data.datasets[0].data") == [
        r["peak_present"] for r in occ]
    flow = browser.find_element(By.CSS_SELECTOR, '[data-flow="shop → till"]').text
    assert float(flow) == pytest.approx(sum(r["people"] for r in flows if (r["from_zone"], r["to_zone"]) ==
                                            ("shop", "till")), abs=0.05)
    bubbles = browser.execute_script("return umbraCharts.heatmap.data.datasets[0].data.length")
    assert bubbles == len({r["zone"] for r in _api(ct, key, "heatmap")})


def test_the_running_crossings_chart_holds_the_apis_estimates(site: tuple[CloudThread, str], browser) -> None:
    """flow_totals on the page: per line and direction the combined estimate, a band of one standard error either
    side, and the totals as released, each point at its step's end; the table's last estimate, the API's."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ct, key = site
    browser.get(f"https://localhost:{ct.api_port}/dashboard?sensor={DEV_DEVICE}&day={DAY}#key={key}")
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert browser.find_element(By.ID, "error").text == ""
    rows = _api(ct, key, "flow_totals")
    ends = sorted({r["window_start"] + r["window_s"] for r in rows})
    assert len(ends) == 720  # the door's steps, to noon; the gate's (to 05:00) among them
    series: dict[tuple[str, str], dict[int, dict]] = {}
    for r in rows:
        series.setdefault((r["zone"], r["direction"]), {})[r["window_start"] + r["window_s"]] = r
    assert list(series) == [("door", "+"), ("door", "-"), ("gate", "+"), ("gate", "-")]
    want = []
    for (line, d), at in series.items():
        name = f"{line} {'forward' if d == '+' else 'backward'}"
        est = [at[t]["combined"] if t in at else None for t in ends]  # None: no row for the line at that step
        err = [at[t]["stderr"] if t in at else None for t in ends]
        want += [[f"{name} estimate", est],
                 [f"{name} − 1 s.e.", [None if e is None else e - s for e, s in zip(est, err, strict=True)]],
                 [f"{name} + 1 s.e.", [None if e is None else e + s for e, s in zip(est, err, strict=True)]],
                 [f"{name} released", [at[t]["released"] if t in at else None for t in ends]]]
        last = [r for r in at.values() if r["combined"] is not None][-1]
        shown = browser.find_element(By.CSS_SELECTOR, f'[data-running="{line}/{d}"]').text
        assert float(shown) == pytest.approx(last["combined"], abs=0.05)
        shown = browser.find_element(By.CSS_SELECTOR, f'[data-stderr="{line}/{d}"]').text
        assert float(shown) == pytest.approx(last["stderr"], abs=0.05)
        assert at[max(at)]["combined"] is not None  # by its last step each line's totals are far above k
    assert all(x["stderr"] > 0 for x in rows if x["combined"] is not None)  # a band to draw
    charted = browser.execute_script("return umbraCharts.running.data.datasets.map(d => [d.label, d.data])")
    assert charted == want
    labels = browser.execute_script("return umbraCharts.running.data.labels")
    assert labels[0] == "00:01" and labels[-1] == "12:00"  # each total at its step's end
    fills = browser.execute_script("return umbraCharts.running.data.datasets.map(d => d.fill)")
    assert fills[2::4] == ["-1"] * 4  # each upper bound fills down to its lower bound: the error band


def test_the_dashboard_without_a_key_says_so_and_reads_nothing(site: tuple[CloudThread, str], browser) -> None:
    from selenium.webdriver.common.by import By

    ct, _ = site
    browser.execute_script("sessionStorage.clear()")
    browser.get(f"https://localhost:{ct.api_port}/dashboard")
    assert "#key=" in browser.find_element(By.ID, "error").text
    r = requests.get(f"https://localhost:{ct.api_port}/dashboard", verify=str(ct.cloud.pki.ca_cert), timeout=10)
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
