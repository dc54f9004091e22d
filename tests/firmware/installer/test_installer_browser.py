"""The installer page in a real browser (Debian's headless Chromium driven by Selenium through
/usr/bin/chromedriver) on the bench footage: PETS09 through VideoCamera, the real SSD detector, the real
tracker. Locked without a token (refusal audited), unlocked with one; boxes, ids and counts drawn; a zone
and a line drawn with the mouse, saved, and found in the config file. Calibration on the page: too few
points refused, five measured points fitted and saved, the PETS09 homography reproduced within the bound and
taken up by the running sensor. Privacy: every view the page could
have served during the run has no person found by the shared person detector above its threshold, and no
face found by BlazeFace (two variants) inside a blurred region."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import config as cfgmod
from firmware.cli.assemble import build_loop
from firmware.cli.installer import attach_installer
from firmware.installer.counts import RunCounts
from firmware.installer.token import sign_installer_token
from firmware.privacy.audit import AuditLog
from firmware.samples.authorization import public_key_b64
from firmware.sensing.geometry import Geometry
from hal.clock import FakeClock

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FRAMES = 42  # six seconds of PETS09 at 7 fps
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1000,1100")

pytestmark = pytest.mark.slow


def _browser(profile: Path):
    if not (CHROMIUM.exists() and DRIVER.exists()):
        pytest.fail("Debian's chromium and chromium-driver are missing: bash bench/setup-system.sh installs them "
                    "(bench/apt-packages.txt)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for f in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(f)
    return webdriver.Chrome(service=Service(str(DRIVER)), options=opts)


@pytest.fixture(scope="module")
def site(shared_data: Path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    key = Ed25519PrivateKey.generate()
    path = tmp / "pets09.toml"
    path.write_text((ROOT / "bench/configs/pets09.toml").read_text().replace("$UMBRA_DATA_DIR", str(shared_data))
                    + f'\n[installer]\nenabled = true\nport = 0\nview_hz = 2.0\nauthority_public_key = '
                      f'"{public_key_b64(key)}"\n')
    cfg = cfgmod.load(path)
    clock = FakeClock()
    counts = RunCounts(Geometry(cfg.geometry))
    loop = build_loop(cfg, path.parent, clock, sinks=[counts])
    audit = AuditLog(tmp / "audit.jsonl")
    inst = attach_installer(replace(cfg), path, loop, counts, audit, clock)
    assert inst is not None
    views: list = []
    inst.view.listeners.append(views.append)
    now = int(clock.wall())
    token = sign_installer_token(key, device_id=cfg.device.id, not_before=now - 1, expires=now + 7200,
                                 token_id="visit-1")
    yield dict(path=path, loop=loop, inst=inst, views=views, token=token, audit=audit,
               base=f"http://127.0.0.1:{inst.server.port}/")
    inst.stop()


def _wait(driver, script: str, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = driver.execute_script(script)
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for: {script}")


COLOURS = """const c = document.getElementById('overlay'); const d = c.getContext('2d').getImageData(0, 0, c.width,
c.height).data; let yellow = 0, green = 0; for (let i = 0; i < d.length; i += 4) { if (d[i+3] < 200) continue;
if (d[i] > 230 && d[i+1] > 180 && d[i+2] < 40) yellow++; if (d[i] < 40 && d[i+1] > 230 && d[i+2] < 40) green++; }
return [yellow, green];"""


def test_the_page_in_chromium_shows_the_view_and_saves_a_drawn_zone_and_line(site) -> None:
    from selenium.webdriver.common.by import By

    profile = Path(tempfile.mkdtemp(prefix="umbra-chromium-"))
    driver = _browser(profile)
    try:
        driver.get(site["base"])
        assert "Installer mode is locked" in driver.page_source  # no token: refused, said plainly
        driver.find_element(By.ID, "token").send_keys(site["token"])
        driver.find_element(By.ID, "unlock").click()
        _wait(driver, "return document.getElementById('overlay') !== null")
        runner = threading.Thread(target=site["loop"].run, args=(FRAMES,))
        runner.start()  # the bench footage plays while the page watches
        _wait(driver, "return window.umbraView.frames >= 2 && window.umbraView.state.tracks.length > 0", 240)
        runner.join(300)
        _wait(driver, "return document.getElementById('frame').naturalWidth === 640")
        yellow, green = driver.execute_script(COLOURS)
        assert yellow > 50 and green > 20  # track boxes and detection boxes are drawn
        state = driver.execute_script("return window.umbraView.state")
        assert state["tracks"] and all(isinstance(t["id"], int) for t in state["tracks"])
        # one read in the page: the table is redrawn with every view, so elements found first may be stale
        rows = driver.execute_script("return [...document.querySelectorAll('#counts tbody tr')].map(r => r.innerText)")
        assert any(r.startswith("north-south") for r in rows) and any(r.startswith("east-west") for r in rows)
        assert driver.find_elements(By.CSS_SELECTOR, "#zones tbody tr")
        assert re.fullmatch(r"frame \d+, \d+\.\d s old, grid step .* m", driver.find_element(By.ID, "meta").text)

        _draw_zone_and_line(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    cfg = cfgmod.load(site["path"])
    zones = {z.name: z for z in cfg.geometry.zones}
    lines = {ln.name: ln for ln in cfg.geometry.lines}
    assert set(zones) == {"west", "east", "bench-door"} and len(zones["bench-door"].polygon) == 4
    assert set(lines) == {"north-south", "east-west", "bench-gate"}
    assert "# The homography was fitted" in site["path"].read_text()  # the config's comments are kept
    events = [e["event"] for e in _events(site["audit"])]
    assert "installer_refused" in events and "installer_session_opened" in events
    assert "installer_config_saved" in events


def _draw_zone_and_line(driver) -> None:
    """On the page: a zone of four clicks named bench-door and a line of two named bench-gate, then save."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "overlay")

    def click(fx: float, fy: float) -> None:  # offsets from the canvas centre, in CSS pixels
        ActionChains(driver).move_to_element_with_offset(canvas, int(fx * 640), int(fy * 480)).click().perform()

    name = driver.find_element(By.ID, "name")
    name.clear()
    name.send_keys("bench-door")
    driver.find_element(By.ID, "draw-zone").click()
    for p in ((-0.2, 0.1), (0.1, 0.1), (0.1, 0.35), (-0.2, 0.35)):
        click(*p)
    driver.find_element(By.ID, "finish").click()
    name.clear()
    name.send_keys("bench-gate")
    driver.find_element(By.ID, "draw-line").click()
    click(-0.3, 0.2)
    click(0.3, 0.25)
    driver.find_element(By.ID, "save").click()
    _wait(driver, "return document.getElementById('status').textContent.startsWith('saved to')")


PAIRS_AT = ((-200, -40), (200, -40), (220, 200), (-220, 200), (0, 80))  # CSS px from the canvas's centre


def _ground(h, px: tuple[float, float]) -> tuple[float, float]:
    import numpy as np

    v = np.asarray(h, dtype=np.float64) @ np.array([px[0], px[1], 1.0])
    return float(v[0] / v[2]), float(v[1] / v[2])


def test_calibration_on_the_page_refuses_too_few_points_and_reproduces_the_pets09_homography(site) -> None:
    """The installer places five measured floor points (ground metres to the centimetre, from the PETS09
    homography) on the view: Fit with three is refused with the reason; with five it shows each point's error
    and the median under the bound; Save writes a homography that puts the floor where PETS09's does (within
    the bound) and the running sensor takes it up at its next frame, which the page says."""
    import numpy as np
    from selenium.webdriver.common.by import By

    from firmware.sensing.calibrate import MAX_MEDIAN_ERROR_M

    loop, view = site["loop"], site["inst"].view
    original = cfgmod.load(site["path"]).geometry.homography
    if view.latest is None:  # run alone: a view to calibrate on
        view.watch()
        loop.run(loop.stats.ticks + 8)
        view.drain()  # made in the view's worker
    w, h = view.latest.state["size"]
    pairs = []
    for dx, dy in PAIRS_AT:
        img = ((320 + dx) / 640 * w, (240 + dy) / 480 * h)
        pairs.append(((dx, dy), tuple(round(c, 2) for c in _ground(original, img))))
    profile = Path(tempfile.mkdtemp(prefix="umbra-chromium-"))
    driver = _browser(profile)
    try:
        driver.get(site["base"])
        driver.find_element(By.ID, "token").send_keys(site["token"])
        driver.find_element(By.ID, "unlock").click()
        _wait(driver, "return window.umbraView && window.umbraView.state !== null")
        live = _calibrate_on_the_page(driver, pairs, loop)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    geo = cfgmod.load(site["path"]).geometry
    assert geo.image_size == (w, h) and geo.homography != original
    grid = [(x * w / 8, y * h / 8) for x in range(1, 8) for y in range(3, 8)]  # the floor's part of the view
    off = [np.hypot(*np.subtract(_ground(geo.homography, p), _ground(original, p))) for p in grid]
    print(f"calibration from the page: median {np.median(off):.3f} m, max {max(off):.3f} m off PETS09 on the floor")
    assert float(np.median(off)) < MAX_MEDIAN_ERROR_M
    assert loop.quantizer.geometry.config.homography == geo.homography, live  # the running sensor uses it
    events = [e["event"] for e in _events(site["audit"])]
    assert "installer_geometry_applied" in events


def _calibrate_on_the_page(driver, pairs: list, loop) -> str:
    """Places the pairs (three, Fit refused; five, Fit, Save), lets the sensor run on; the page's live line."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from firmware.sensing.calibrate import MAX_MEDIAN_ERROR_M

    canvas = driver.find_element(By.ID, "overlay")

    def place(at: tuple[int, int], ground: tuple[float, float]) -> None:
        for field, v in zip(("ground-x", "ground-y"), ground, strict=True):
            box = driver.find_element(By.ID, field)
            box.clear()
            box.send_keys(str(v))
        driver.find_element(By.ID, "place-point").click()
        ActionChains(driver).move_to_element_with_offset(canvas, *at).click().perform()

    for at, ground in pairs[:3]:
        place(at, ground)
    driver.find_element(By.ID, "fit").click()
    refusal = _wait(driver, "return document.getElementById('cal-error').textContent")
    assert "at least 4 point pairs" in refusal
    for at, ground in pairs[3:]:
        place(at, ground)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#pairs tbody tr")) == 5
    driver.find_element(By.ID, "fit").click()
    shown = _wait(driver, "return document.getElementById('cal-result').textContent")
    assert shown.startswith("median error") and f"bound {MAX_MEDIAN_ERROR_M} m" in shown
    errors = [float(r.text.split()[-1]) for r in driver.find_elements(By.CSS_SELECTOR, "#pairs tbody tr")]
    assert len(errors) == 5 and max(errors) < 0.05  # typed to the centimetre, clicked to the pixel
    driver.find_element(By.ID, "save-calibration").click()
    _wait(driver, "return document.getElementById('cal-result').textContent.includes('saved')")
    runner = threading.Thread(target=loop.run, args=(loop.stats.ticks + 4,))
    runner.start()  # the sensor runs on: it takes the new homography up at its next frame
    runner.join(120)
    return _wait(driver, "return document.getElementById('live').textContent.includes('applied at frame') && "
                         "document.getElementById('live').textContent")


def _events(audit: AuditLog) -> list[dict]:
    import json

    return [json.loads(x) for x in audit.path.read_text().splitlines()]


def test_no_person_and_no_face_in_any_view_served(site) -> None:
    from bench.lib.viewcheck import Checker

    site["inst"].view.drain()  # the view in the worker, if any, is checked too
    views = site["views"]
    assert len(views) >= 3, "the browser test made the views"
    c = Checker().check(views)
    assert c.persons == 0 and c.faces_in_blur == 0, c
