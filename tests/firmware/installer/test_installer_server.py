"""Installer mode: locked without a valid installer token (refusals audited), a session with one, the view
and its overlay served, zones and lines saved into the config (validated, comments kept), local bind only."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware import config as cfgmod
from firmware.config.installer import InstallerConfig
from firmware.errors import ConfigError
from firmware.samples.authorization import sign_token


async def _session(rig, token: str | None):
    jar = aiohttp.CookieJar(unsafe=True)
    s = aiohttp.ClientSession(cookie_jar=jar)
    if token is not None:
        async with s.post(rig.base + "/session", data={"token": token}, allow_redirects=False) as r:
            status = r.status
    else:
        status = None
    return s, status


def _run(coro):
    return asyncio.run(coro)


def test_without_a_session_every_route_is_refused_and_audited(rig) -> None:
    async def go():
        s, _ = await _session(rig, None)
        async with s:
            async with s.get(rig.base + "/") as r:
                page = (r.status, await r.text())
            async with s.get(rig.base + "/view.jpg") as r:
                jpeg = (r.status, await r.json())
        return page, jpeg

    page, jpeg = _run(go())
    assert page[0] == 401 and "Installer mode is locked" in page[1] and "dev-1" in page[1]
    assert jpeg[0] == 401 and jpeg[1]["error"] == "locked"
    refused = [e for e in rig.events() if e["event"] == "installer_refused"]
    assert len(refused) == 1 and refused[0]["fields"]["reason"] == "no-session"  # the second within 10 s...
    rig.clock.advance(11)
    _run(go())
    refused = [e["fields"] for e in rig.events() if e["event"] == "installer_refused"]
    assert len(refused) == 2 and refused[1]["repeats"] == 1  # ...counted into the next entry


@pytest.mark.parametrize("kind", ["sampling token", "other device", "foreign key", "too long", "garbage"])
def test_bad_tokens_are_refused_with_their_reason_and_audited(rig, kind: str) -> None:
    now = int(rig.clock.wall())
    token = {
        "sampling token": sign_token(rig.key, device_id="dev-1", rate_per_hour=4, not_before=now - 1,
                                     expires=now + 3600, token_id="s1"),
        "other device": rig.token(device="dev-2"),
        "foreign key": rig.token(key=Ed25519PrivateKey.generate()),
        "too long": rig.token(hours=5),
        "garbage": "not-a-token",
    }[kind]
    reason = {"sampling token": "wrong-purpose", "other device": "wrong-device", "foreign key": "bad-signature",
              "too long": "too-long", "garbage": "malformed"}[kind]

    async def go():
        s, status = await _session(rig, token)
        async with s:
            async with s.get(rig.base + "/state") as r:
                return status, r.status

    status, after = _run(go())
    assert status == 403 and after == 401
    refused = [e["fields"] for e in rig.events() if e["event"] == "installer_refused"]
    assert refused[0]["reason"] == reason


def test_a_session_sees_the_view_and_counts_and_expires_with_its_token(rig) -> None:
    async def go():
        s, status = await _session(rig, rig.token(hours=1))
        async with s:
            async with s.get(rig.base + "/state") as r:  # a request: someone is watching
                assert r.status == 200
            await asyncio.to_thread(rig.loop.run, 40)
            async with s.get(rig.base + "/state") as r:
                state = await r.json()
            async with s.get(rig.base + "/view.jpg") as r:
                jpeg = await r.read()
            rig.clock.advance(3)
            async with s.get(rig.base + "/state") as r:
                later = await r.json()
            rig.clock.advance(3598)
            async with s.get(rig.base + "/state") as r:
                late = r.status
        return status, state, later, jpeg, late

    status, state, later, jpeg, late = _run(go())
    assert status == 303
    assert later["seq"] == state["seq"] and state["age_s"] >= 0  # how old the view is, on the device's clock
    assert later["age_s"] == pytest.approx(state["age_s"] + 3, abs=0.1)
    assert jpeg[:2] == b"\xff\xd8"
    assert state["tracks"] and all("id" in t for t in state["tracks"])
    assert state["detections"] and all(0 < d["score"] <= 1 for d in state["detections"])
    assert [z["name"] for z in state["zones"]] == ["door"] and state["zones"][0]["pieces"]
    assert {(c["line"], c["direction"]) for c in state["counts"]["lines"]} == {("mid", "+"), ("mid", "-")}
    assert state["grid"]["lines"] and state["grid"]["step_m"] > 0
    assert late == 401
    events = [e["event"] for e in rig.events()]
    assert "installer_session_opened" in events and "installer_session_closed" in events


def test_no_view_is_made_while_nobody_watches(rig) -> None:
    rig.loop.run(30)
    assert rig.installer.view.made == 0 and rig.installer.view.latest is None


def test_drawn_zones_and_lines_are_saved_into_the_config_with_its_comments(rig) -> None:
    async def go():
        s, _ = await _session(rig, rig.token())
        async with s:
            async with s.get(rig.base + "/state"):
                pass
            await asyncio.to_thread(rig.loop.run, 10)
            body = {"zones": [{"name": "till", "points": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]}],
                    "lines": [{"name": "exit", "points": [[0.5, 0.0], [0.5, 1.0]]}]}
            async with s.post(rig.base + "/geometry", json=body) as r:
                ok = (r.status, await r.json())
            bad = {"zones": [{"name": "door", "points": [[0.1, 0.1], [0.3, 0.1], [0.3, 0.3]]}], "lines": []}
            async with s.post(rig.base + "/geometry", json=bad) as r:  # a second zone named "door"
                refused = (r.status, await r.json())
        return ok, refused

    before = rig.path.read_text()
    ok, refused = _run(go())
    assert ok[0] == 200, ok
    text = rig.path.read_text()
    assert "# a test config: its comments must survive the editor" in text and "2 cm per source pixel" in text
    cfg = cfgmod.load(rig.path)
    assert [z.name for z in cfg.geometry.zones] == ["door", "till"]
    till = cfg.geometry.zones[1].polygon  # 0.1 of 768 px at 2 cm per px = 1.536 m
    assert till[0] == pytest.approx((1.536, 1.152), abs=0.01)
    assert [ln.name for ln in cfg.geometry.lines] == ["mid", "exit"]
    assert cfg.geometry.lines[1].a == pytest.approx((7.68, 0.0), abs=0.01)
    assert refused[0] == 400 and "unique" in refused[1]["detail"]
    assert cfgmod.load(rig.path) == cfg and text != before
    assert any(e["event"] == "installer_config_saved" for e in rig.events())


def test_the_locked_page_escapes_what_a_token_says(rig) -> None:
    now = int(rig.clock.wall())
    from firmware.installer.token import sign_installer_token

    token = sign_installer_token(rig.key, device_id="<script>alert(1)</script>", not_before=now - 1,
                                 expires=now + 60, token_id="x")

    async def go():
        async with aiohttp.ClientSession() as s, s.post(rig.base + "/session", data={"token": token}) as r:
            return r.status, await r.text()

    status, page = _run(go())
    assert status == 403 and "wrong-device" in page
    assert "<script>" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize("bind", ["0.0.0.0", "192.168.1.20", "10.0.0.1", "::", "example.org"])
def test_only_loopback_and_link_local_binds_are_accepted(bind: str) -> None:
    with pytest.raises(ConfigError, match="bind"):
        cfgmod.parse(f'[installer]\nbind = "{bind}"\n')
    for ok in ("127.0.0.1", "169.254.10.1", "::1", "fe80::1"):
        assert cfgmod.parse(f'[installer]\nbind = "{ok}"\n').installer.bind == ok


def test_installer_mode_is_off_by_default_and_tokens_are_short() -> None:
    assert cfgmod.UmbraConfig().installer.enabled is False
    with pytest.raises(ValueError, match="max_validity_s"):
        replace(InstallerConfig(), max_validity_s=24 * 3600).validate()


def test_calibration_from_the_page_fits_reports_and_saves_the_homography(rig) -> None:
    # a camera at 3 cm per source pixel, shifted 1 m: the installer's measured pairs (image points normalized)
    pairs = [((0.1, 0.1), (1.0 + 0.03 * 76.8, 0.03 * 57.6)), ((0.9, 0.1), (1.0 + 0.03 * 691.2, 0.03 * 57.6)),
             ((0.9, 0.9), (1.0 + 0.03 * 691.2, 0.03 * 518.4)), ((0.1, 0.9), (1.0 + 0.03 * 76.8, 0.03 * 518.4)),
             ((0.5, 0.5), (1.0 + 0.03 * 384.0, 0.03 * 288.0))]
    body = {"points": [{"image": list(i), "ground": list(g)} for i, g in pairs], "save": True}

    async def go():
        s, _ = await _session(rig, rig.token())
        async with s:
            async with s.get(rig.base + "/state"):
                pass
            await asyncio.to_thread(rig.loop.run, 10)
            async with s.post(rig.base + "/calibrate", json=body) as r:
                ok = (r.status, await r.json())
            few = {"points": body["points"][:3]}
            async with s.post(rig.base + "/calibrate", json=few) as r:
                refused = (r.status, await r.json())
        return ok, refused

    ok, refused = _run(go())
    assert ok[0] == 200 and ok[1]["median_m"] < 0.01 and len(ok[1]["errors_m"]) == 5 and ok[1]["saved"]
    h = cfgmod.load(rig.path).geometry.homography
    assert h[0][0] == pytest.approx(0.03, rel=1e-3) and h[0][2] == pytest.approx(1.0, abs=1e-3)
    assert refused[0] == 400 and "at least 4 point pairs" in refused[1]["detail"]
    assert cfgmod.load(rig.path).geometry.image_size == (768, 576)  # the size it was fitted on, stated


def test_calibration_refuses_bad_input_with_a_one_line_reason(rig) -> None:
    line = [{"image": [0.1 * i, 0.1 * i], "ground": [float(i), float(i)]} for i in range(1, 6)]

    async def go():
        s, _ = await _session(rig, rig.token())
        async with s:
            async with s.post(rig.base + "/calibrate", json={"points": line}) as r:
                early = (r.status, await r.json())  # no view yet: the image size is not known
            async with s.get(rig.base + "/state"):
                pass
            await asyncio.to_thread(rig.loop.run, 10)
            out = [early]
            for body in ({"points": line}, "not json", {"points": [{"image": [0.1]}] * 4}):
                kw = {"json": body} if isinstance(body, dict) else {"data": body}
                async with s.post(rig.base + "/calibrate", **kw) as r:
                    out.append((r.status, await r.json()))
        return out

    answers = _run(go())
    assert all(status == 400 and answer["error"] == "not calibrated" and "\n" not in answer["detail"]
               for status, answer in answers), answers
    assert "no view yet" in answers[0][1]["detail"] and "one line" in answers[1][1]["detail"]


def test_the_view_zeroes_its_copies_of_the_frame(rig, monkeypatch) -> None:
    import cv2
    import numpy as np

    made: list = []
    real_resize, real_cvt, real_dec = cv2.resize, cv2.cvtColor, cv2.imdecode
    monkeypatch.setattr(cv2, "resize", lambda *a, **k: made.append(real_resize(*a, **k)) or made[-1])
    monkeypatch.setattr(cv2, "cvtColor", lambda *a, **k: made.append(real_cvt(*a, **k)) or made[-1])
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: made.append(real_dec(*a, **k)) or made[-1])
    rig.installer.view.watch()
    rig.loop.run(12)
    assert rig.installer.view.made >= 1
    full = [m for m in made if m.shape[:2] == (480, 640)]  # the frame's copy, the BGR copy, the decoded check
    assert len(full) >= 3 * rig.installer.view.made and all(not np.any(m) for m in full)


def test_a_region_still_read_as_a_person_after_blurring_is_flattened_and_the_view_served(rig) -> None:
    """A re-check that still reads a person in a blurred blob (as the SSD at 0.2 does, now and then): the
    last pass flattens what it finds, and the view is served clean instead of withheld."""
    import cv2
    import numpy as np

    box = np.array([[0.3, 0.3, 0.5, 0.7]])

    def finder(rgb: np.ndarray) -> np.ndarray:  # sees a person wherever the box's inside is not flat
        x0, y0, x1, y1 = (box[0] * [640, 480, 640, 480]).astype(int)
        return box if rgb[y0 + 8:y1 - 8, x0 + 8:x1 - 8].std(axis=(0, 1)).max() > 2.0 else np.zeros((0, 4))

    view = rig.installer.view
    view.persons = finder
    xx = np.mgrid[0:480, 0:640][1]
    pixels = np.where(xx < 256, 40, 200).astype(np.uint8)[..., None].repeat(3, axis=2)
    made = view.make(pixels, (640, 480), [], 1, 0.0)  # an edge through the box: blurred, it stays a gradient
    assert made is not None and view.withheld == 0
    served = cv2.imdecode(np.frombuffer(made.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert len(finder(np.ascontiguousarray(served[:, :, ::-1]))) == 0


def test_the_neighbour_a_blur_made_stand_out_is_flattened_with_the_region(rig) -> None:
    """On PETS09 the re-check, once a region is blurred, often finds the patch just beside it: the last pass
    flattens what was found with its own size around it, so that neighbour goes too and the view is served."""
    import cv2
    import numpy as np

    a, b = np.array([0.3, 0.3, 0.38, 0.5]), np.array([0.38, 0.3, 0.46, 0.5])

    def busy(rgb: np.ndarray, box: np.ndarray) -> bool:
        x0, y0, x1, y1 = (box * [640, 480, 640, 480]).astype(int)
        return bool(rgb[y0 + 8:y1 - 8, x0 + 8:x1 - 8].std(axis=(0, 1)).max() > 2.0)

    def finder(rgb: np.ndarray) -> np.ndarray:  # a person in a while it is not flat, then in its neighbour b
        return a[None] if busy(rgb, a) else b[None] if busy(rgb, b) else np.zeros((0, 4))

    view = rig.installer.view
    view.persons = finder
    xx = np.mgrid[0:480, 0:640][1]
    pixels = np.where((xx >= 230) & (xx < 270), 200, 40).astype(np.uint8)[..., None].repeat(3, axis=2)
    made = view.make(pixels, (640, 480), [], 1, 0.0)
    assert made is not None and view.withheld == 0
    served = cv2.imdecode(np.frombuffer(made.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert len(finder(np.ascontiguousarray(served[:, :, ::-1]))) == 0
