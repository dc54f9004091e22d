"""The installer web server (aiohttp, its own thread and event loop), on a loopback or link-local address
only. Nothing is served before a session: `POST /session` with a valid installer token (firmware.installer.
token) opens one (an HttpOnly, SameSite=Strict cookie, valid until the token expires); every other request
without a live session is refused with 401 and a page saying what is needed, and audited (repeats from one
address within 10 s counted into its next entry). Every token refused, every session opened and closed is
audited.

Routes: `GET /` the page (or the locked page), `GET /view.jpg` the latest de-identified view, `GET /state`
its overlay, counts and whether the last change is applied yet, `POST /geometry` zones and lines drawn on
the view (normalized image points), saved into the config, `POST /calibrate` image/ground point pairs, fitted
and (with "save") saved. What is saved is handed to the running sensor (firmware.installer.live), which
counts with it from its next frame; without one (`live` None) it is counted from the sensor's next start."""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from firmware.config.installer import InstallerConfig, local_only
from firmware.config.sensing import GeometryConfig
from firmware.errors import InstallerError, InstallerRefused
from firmware.installer.editor import save_geometry
from firmware.installer.live import LiveGeometry
from firmware.installer.overlay import ImagePlane
from firmware.installer.token import InstallerAuthorizer, InstallerGrant
from firmware.installer.view import InstallerView
from firmware.privacy.audit import AuditSink
from firmware.sensing.calibrate import MAX_MEDIAN_ERROR_M, CalibrationError, fit_point_pairs
from hal.clock import Clock

log = logging.getLogger(__name__)

COOKIE = "umbra_installer"
MAX_BODY = 64 * 1024
REFUSAL_GAP_S = 10.0
LOCKED = """<!doctype html><html><head><meta charset="utf-8"><title>Umbra installer: locked</title></head>
<body><h1>Installer mode is locked</h1><p id="refusal">{reason}</p>
<p>Paste an installer authorization for device <b>{device}</b> (signed by the operator, valid for at most a few
hours):</p><form method="post" action="/session"><textarea name="token" id="token" rows="4" cols="80"></textarea>
<br><button type="submit" id="unlock">Unlock</button></form></body></html>"""


class InstallerServer:
    def __init__(self, config: InstallerConfig, view: InstallerView, authorizer: InstallerAuthorizer,
                 config_path: Path, clock: Clock, audit: AuditSink, live: LiveGeometry | None = None) -> None:
        why = local_only(config.bind)
        if why is not None:
            raise InstallerError(f"installer.bind: {why}")
        self.config, self.view, self.authorizer = config, view, authorizer
        self.config_path, self.clock, self.audit = config_path, clock, audit
        self.live = live
        self._saved: GeometryConfig | None = None  # the geometry last saved (the loop may not have it yet)
        self.sessions: dict[str, InstallerGrant] = {}
        self._refusals: dict[str, tuple[float, int]] = {}  # remote -> (last audited, refusals since)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ life cycle
    def start(self) -> int:
        """Starts listening (port 0: any free port); returns the port."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start())
            except BaseException as e:  # noqa: BLE001 - handed to the starting thread
                failed.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="umbra-installer", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            raise InstallerError(f"installer view cannot listen on {self.config.bind}:{self.config.port}: "
                                 f"{failed[0]}") from None
        log.info("installer view on http://%s:%d/", self.config.bind, self.port)
        return self.port

    async def _start(self) -> None:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.add_routes([web.get("/", self._page), web.post("/session", self._session),
                        web.get("/view.jpg", self._jpeg), web.get("/state", self._state),
                        web.post("/geometry", self._geometry), web.post("/calibrate", self._calibrate)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.bind, self.config.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)  # the bound socket: the port when 0 was asked
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port

    def stop(self) -> None:
        now = self.clock.wall()
        for sid, grant in list(self.sessions.items()):
            self.audit.append("installer_session_closed", now, token_id=grant.token_id, why="sensor stopped")
            del self.sessions[sid]
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    # ------------------------------------------------------------ access
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/session" and request.method == "POST":
            return await handler(request)
        now = self.clock.wall()
        sid = request.cookies.get(COOKIE, "")
        grant = self.sessions.get(sid)
        if grant is not None and not grant.valid_at(now):
            del self.sessions[sid]
            self.audit.append("installer_session_closed", now, token_id=grant.token_id, why="token expired")
            grant = None
        if grant is None:
            reason = "no installer session: unlock with a signed installer authorization"
            if sid:
                reason = "the installer session has ended (its authorization expired or the sensor restarted)"
            self._refused(now, reason, request.remote or "")
            return self._locked(reason, request)
        self.view.watch()
        return await handler(request)

    def _refused(self, now: float, detail: str, remote: str) -> None:
        """Audits a request refused for want of a session: at once, or, within REFUSAL_GAP_S of the last
        such entry from the same address, counted into the next entry (`repeats`), so a page left open
        polling cannot flood the audit log."""
        last, repeats = self._refusals.get(remote, (float("-inf"), 0))
        if now - last < REFUSAL_GAP_S:
            self._refusals[remote] = (last, repeats + 1)
            return
        self._refusals[remote] = (now, 0)
        self.audit.append("installer_refused", now, reason="no-session", detail=detail, remote=remote,
                          repeats=repeats, claimed_token_id=None)

    def _locked(self, reason: str, request: web.Request, status: int = 401, page: bool = False) -> web.Response:
        if page or request.path == "/":
            return web.Response(status=status, content_type="text/html",
                                text=LOCKED.format(reason=escape(reason), device=escape(self.authorizer.device_id)))
        return web.json_response({"error": "locked", "detail": reason}, status=status)

    async def _session(self, request: web.Request) -> web.StreamResponse:
        data = await request.post() if request.content_type != "application/json" else await request.json()
        token = str(data.get("token", "")).strip()
        now = self.clock.wall()
        try:
            grant = self.authorizer.verify(token, now, request.remote or "")
        except InstallerRefused as e:
            return self._locked(str(e), request, status=403, page=request.content_type != "application/json")
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = grant
        self.audit.append("installer_session_opened", now, token_id=grant.token_id, expires=grant.expires,
                          remote=request.remote or "")
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", max_age=max(1, int(grant.expires - now)))
        raise resp

    # ------------------------------------------------------------ content
    async def _page(self, request: web.Request) -> web.Response:
        html = resources.files("firmware.installer").joinpath("page.html").read_text(encoding="utf-8")
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _jpeg(self, request: web.Request) -> web.Response:
        v = self.view.latest
        if v is None:
            return web.json_response({"error": "no view yet", "detail": "the first view comes with the next "
                                      "frame"}, status=503)
        return web.Response(body=v.jpeg, content_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _state(self, request: web.Request) -> web.Response:
        v = self.view.latest
        body: dict[str, Any] = {"device": self.authorizer.device_id, "config": str(self.config_path)}
        if v is not None:
            body.update(v.state)
            body["age_s"] = round(max(0.0, self.clock.wall() - v.wall), 1)  # the page says how old the view is
        if self.live is not None:
            body["live"] = self.live.status().to_json()
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def _geometry(self, request: web.Request) -> web.Response:
        try:
            zones, lines = self._drawn(await request.json())
            cfg = save_geometry(self.config_path, zones, lines)
        except (InstallerError, ValueError, KeyError, TypeError) as e:
            return web.json_response({"error": "not saved", "detail": str(e)}, status=400)
        self.audit.append("installer_config_saved", self.clock.wall(), zones=len(zones), lines=len(lines),
                          file=str(self.config_path))
        return web.json_response({"saved": str(self.config_path), "zones": len(zones), "lines": len(lines),
                                  **self._hand_over(cfg.geometry)})

    def _hand_over(self, geometry: GeometryConfig) -> dict[str, Any]:
        """The saved geometry to the running sensor (or, without live apply, to the view only)."""
        self._saved = geometry
        if self.live is None:
            self.view.set_geometry(geometry)
            return {"note": "counted from the sensor's next start", "change": None}
        return {"note": "applied live from the sensor's next frame", "change": self.live.submit(geometry)}

    def _drawn(self, body: dict) -> tuple[list, list]:
        """Zones and lines from the page (normalized image points) on the ground, through the homography."""
        v = self.view.latest
        if v is None:
            raise InstallerError("no view yet: the image size is not known")
        geo = self._saved or self.view.geometry  # two saves before the loop takes the first: both kept
        plane = ImagePlane(geo, tuple(v.state["size"]))  # type: ignore[arg-type]
        keep = not body.get("replace", False)  # drawn shapes are added to the config's unless replacing
        zones = [(z.name, list(z.polygon)) for z in geo.zones] if keep else []
        lines = [(ln.name, ln.a, ln.b) for ln in geo.lines] if keep else []
        zones += [(str(z["name"]), [tuple(p) for p in plane.to_ground(z["points"])]) for z in body["zones"]]
        for ln in body["lines"]:
            a, b = plane.to_ground(ln["points"][:2])
            lines.append((str(ln["name"]), tuple(a), tuple(b)))
        return zones, lines

    async def _calibrate(self, request: web.Request) -> web.Response:
        handed: dict[str, Any] = {"note": "not saved", "change": None}
        try:
            body = await request.json()
            v = self.view.latest
            if v is None:
                raise InstallerError("no view yet: the image size is not known")
            size = v.state["size"]
            img = [(float(p["image"][0]) * size[0], float(p["image"][1]) * size[1]) for p in body["points"]]
            fit = fit_point_pairs(img, [(float(p["ground"][0]), float(p["ground"][1])) for p in body["points"]])
            if body.get("save"):
                cfg = save_geometry(self.config_path, None, None, fit.homography, (int(size[0]), int(size[1])))
                handed = self._hand_over(cfg.geometry)
                self.audit.append("installer_config_saved", self.clock.wall(), homography=True,
                                  file=str(self.config_path))
        except (CalibrationError, InstallerError, ValueError, KeyError, TypeError, IndexError) as e:
            return web.json_response({"error": "not calibrated", "detail": str(e)}, status=400)
        return web.json_response({"errors_m": list(fit.errors_m), "median_m": fit.median_error_m,
                                  "bound_m": MAX_MEDIAN_ERROR_M, "homography": fit.homography,
                                  "saved": bool(body.get("save")), **handed})
