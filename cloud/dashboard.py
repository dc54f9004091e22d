"""The web dashboard, served by the cloud on the API listener: one page and its script (in cloud/web), and
Chart.js from the pinned copy npm fetched into cloud/web/node_modules (bench/setup-web.sh). The page reads the
customer API with the key the customer gives it, so it sees exactly what the API lets that key see."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from aiohttp import web

WEB = Path(str(resources.files("cloud").joinpath("web")))
CHART = WEB / "node_modules" / "chart.js" / "dist" / "chart.umd.min.js"
_HEADERS = {"Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; "
                                       "style-src 'unsafe-inline'; img-src 'self'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


async def page(request: web.Request) -> web.Response:
    return web.Response(body=(WEB / "dashboard.html").read_bytes(), content_type="text/html", headers=_HEADERS)


async def script(request: web.Request) -> web.Response:
    return web.Response(body=(WEB / "app.js").read_bytes(), content_type="text/javascript", headers=_HEADERS)


async def chart(request: web.Request) -> web.Response:
    if not CHART.exists():
        raise web.HTTPServiceUnavailable(text="Chart.js is not installed here: run bash bench/setup-web.sh")
    return web.Response(body=CHART.read_bytes(), content_type="text/javascript", headers=_HEADERS)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/dashboard", page)
    app.router.add_get("/dashboard/app.js", script)
    app.router.add_get("/dashboard/chart.umd.min.js", chart)
