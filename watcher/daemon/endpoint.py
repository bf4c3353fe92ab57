"""The daemon's HTTP endpoint: liveness, readiness, status, Prometheus metrics and the
read-only web console.

    GET /healthz  200 {"status": "ok"} while the process serves HTTP (no auth: liveness probe)
    GET /readyz   200 or 503 {"ready": bool, "reason": str}
    GET /status   the `warden status --json` document
    GET /metrics  Prometheus text exposition
    GET /                          the console (models, timelines, incidents, candidates)
    GET /incidents/{id}            an incident's page, rendered now
    GET /incidents/{id}/evidently  the Evidently page of its latest failing check
    GET /assets/plotly.min.js      plotly.js from the installed plotly package (no CDN)

Everything but /healthz needs the bearer token when `http.token_env` is set. The console has
no write action: approval stays in the config file, by design.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from watcher.config import HttpConfig
from watcher.daemon.metrics import WardenMetrics
from watcher.daemon.status import incidents_document
from watcher.http_server import HttpServer, unauthorized
from watcher.pages.console import render_console
from watcher.pages.incident_page import render_incident
from watcher.pages.render import plotly_js
from watcher.pages.sources import Sources
from watcher.pages.story import load_story

log = structlog.get_logger("warden.http")
# pages run their own inline scripts and styles and fetch nothing from anywhere else
PAGE_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}


class DaemonEndpoint(HttpServer):
    def __init__(
        self,
        cfg: HttpConfig,
        *,
        status: Callable[[], dict],
        ready: Callable[[], tuple[bool, str]],
        metrics: WardenMetrics,
        console: Sources | None = None,
    ) -> None:
        self._status = status
        self._ready = ready
        self._metrics = metrics
        self._console = console
        super().__init__(cfg)

    def _build_app(self) -> FastAPI:
        app = FastAPI(
            title="model-warden", docs_url=None, redoc_url=None, openapi_url=None
        )  # no unauthenticated API docs on a daemon port
        # plain `def` routes: FastAPI runs them in its thread pool, so database reads in the
        # callbacks never block the event loop
        routes: dict[str, Callable[..., Response]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/status": self._status_route,
            "/metrics": self._metrics_route,
        }
        if self._console is not None:  # the read-only console: GET only, same auth
            routes |= {
                "/": self._console_page,
                "/incidents/{incident_id}": self._incident_page,
                "/incidents/{incident_id}/evidently": self._evidently_route,
                "/assets/plotly.min.js": self._plotly,
            }
        for path, route in routes.items():
            app.add_api_route(path, route, methods=["GET"])
        return app

    @staticmethod
    def _healthz() -> Response:
        return JSONResponse({"status": "ok"})

    def _readyz(self, request: Request) -> Response:
        if not self._authorized(request):
            return unauthorized()
        try:
            ready, reason = self._ready()
        except Exception as exc:  # noqa: BLE001 - a failing probe means "not ready"
            log.warning("http_ready_failed", error=repr(exc))
            ready, reason = False, f"readiness check failed: {type(exc).__name__}"
        return JSONResponse(
            {"ready": bool(ready), "reason": str(reason)}, status_code=200 if ready else 503
        )

    def _status_route(self, request: Request) -> Response:
        if not self._authorized(request):
            return unauthorized()
        try:
            doc = self._status()
        except Exception as exc:  # noqa: BLE001 - e.g. the database is unreachable
            log.warning("http_status_failed", error=repr(exc))
            return JSONResponse(
                {"error": f"status unavailable: {type(exc).__name__}"}, status_code=503
            )
        return JSONResponse(doc)

    def _metrics_route(self, request: Request) -> Response:
        if not self._authorized(request):
            return unauthorized()
        body, content_type = self._metrics.exposition()
        return Response(content=body, media_type=content_type)

    def _sources(self) -> Sources:
        assert self._console is not None  # the console's routes exist only with it
        return self._console

    def _console_page(self, request: Request) -> Response:
        if not self._authorized(request):
            return unauthorized()
        src = self._sources()
        return page(
            lambda: render_console(self._status(), incidents_document(src.engine), src),
            "console",
        )

    def _incident_page(self, incident_id: int, request: Request) -> Response:
        if not self._authorized(request):
            return unauthorized()
        src = self._sources()

        def live() -> str | None:
            story = load_story(src, incident_id)
            if story is None:
                return None
            url = f"{incident_id}/evidently"
            return render_incident(src, story, inline=False, evidently_url=url)

        return page(live, f"incident {incident_id}")

    def _evidently_route(self, incident_id: int, request: Request) -> Response:
        if not self._authorized(request):
            return unauthorized()
        src = self._sources()
        return page(lambda: self._evidently_page(src, incident_id), "Evidently page")

    def _plotly(self, request: Request) -> Response:
        if not self._authorized(request):
            return unauthorized()
        return Response(
            plotly_js(),
            media_type="application/javascript",
            headers={"Cache-Control": "max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    @staticmethod
    def _evidently_page(src: Sources, incident_id: int) -> str | None:
        """The incident's kept Evidently page, only from inside the reports folder."""
        story = load_story(src, incident_id)
        report = story.incident.report_path if story is not None else None
        if not report:
            return None
        path = Path(report).resolve()
        if not path.is_relative_to(Path(src.config().storage.reports).resolve()):
            return None
        return path.read_text(encoding="utf-8") if path.is_file() else None


def page(render: Callable[[], str | None], what: str) -> Response:
    """A rendered page: 404 when there is none, 503 when rendering failed."""
    try:
        html = render()
    except Exception as exc:  # noqa: BLE001 - e.g. the database is unreachable
        log.warning("http_page_failed", page=what, error=repr(exc))
        return JSONResponse({"error": f"{what} unavailable: {type(exc).__name__}"}, status_code=503)
    if html is None:
        return JSONResponse({"error": f"no {what}"}, status_code=404)
    return HTMLResponse(html, headers=PAGE_HEADERS)
