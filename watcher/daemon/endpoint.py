"""The daemon's HTTP endpoint: liveness, readiness, status and Prometheus metrics.

    GET /healthz  200 {"status": "ok"} while the process serves HTTP (no auth: liveness probe)
    GET /readyz   200 or 503 {"ready": bool, "reason": str}
    GET /status   the `warden status --json` document
    GET /metrics  Prometheus text exposition

/readyz, /status and /metrics need the bearer token when `http.token_env` is set.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from watcher.config import HttpConfig
from watcher.daemon.metrics import WardenMetrics
from watcher.http_server import HttpServer, unauthorized

log = structlog.get_logger("warden.http")


class DaemonEndpoint(HttpServer):
    def __init__(
        self,
        cfg: HttpConfig,
        *,
        status: Callable[[], dict],
        ready: Callable[[], tuple[bool, str]],
        metrics: WardenMetrics,
    ) -> None:
        self._status = status
        self._ready = ready
        self._metrics = metrics
        super().__init__(cfg)

    def _build_app(self) -> FastAPI:
        app = FastAPI(
            title="model-warden", docs_url=None, redoc_url=None, openapi_url=None
        )  # no unauthenticated API docs on a daemon port

        @app.get("/healthz")
        def healthz() -> JSONResponse:
            return JSONResponse({"status": "ok"})

        # plain `def` routes: FastAPI runs them in its thread pool, so database reads in the
        # callbacks never block the event loop
        @app.get("/readyz")
        def readyz(request: Request) -> Response:
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

        @app.get("/status")
        def status(request: Request) -> Response:
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

        @app.get("/metrics")
        def metrics(request: Request) -> Response:
            if not self._authorized(request):
                return unauthorized()
            body, content_type = self._metrics.exposition()
            return Response(content=body, media_type=content_type)

        return app
