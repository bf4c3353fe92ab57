"""The HTTP server both endpoints run on (the daemon's, `warden serve`'s): a FastAPI app served
by uvicorn in a background thread, bearer-token auth, and binding that names the `http.*` key
when it fails.

With `http.token_env` set, the token is read from that environment variable at start and
routes that call `_authorized` require `Authorization: Bearer <token>` (401 otherwise). The
token is never logged.

uvicorn runs in a background thread on a socket bound here, so a busy port fails at `start()`
with a message naming `http.port`, and port 0 picks a free port (read it from `.port`).
"""

from __future__ import annotations

import hmac
import os
import socket
import threading
import time

import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from watcher.config import ConfigError, HttpConfig

log = structlog.get_logger("warden.http")
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
BACKLOG = 128


def unauthorized() -> JSONResponse:
    """401 with the challenge a client needs (no detail on what was wrong)."""
    return JSONResponse(
        {"error": "unauthorized: send Authorization: Bearer <token>"},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


class HttpServerError(ConfigError):
    """The HTTP endpoint cannot start; the message names the offending `http.*` key."""


class HttpServer:
    """A FastAPI app (`_build_app`) served by uvicorn in a thread; `start()` returns once it
    listens."""

    def __init__(self, cfg: HttpConfig) -> None:
        self.cfg = cfg
        self._token: bytes | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._failure: BaseException | None = None
        self.port: int | None = None
        self.app = self._build_app()

    # -- app ----------------------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode("utf-8"), self._token)

    def _build_app(self) -> FastAPI:
        """The routes; each endpoint defines its own."""
        raise NotImplementedError

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the HTTP server is not started")
        host = self.cfg.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def _read_token(self) -> bytes | None:
        name = self.cfg.token_env
        if not name:
            return None
        value = os.environ.get(name, "").strip()
        if not value:
            raise HttpServerError(
                f"http.token_env: environment variable {name} is not set or empty "
                "(it must hold the bearer token for the HTTP endpoint)"
            )
        return value.encode("utf-8")

    def _bind(self) -> socket.socket:
        host, port = self.cfg.host, self.cfg.port
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
        except socket.gaierror as exc:
            raise HttpServerError(f"http.host: cannot resolve {host!r}: {exc}") from exc
        sock = socket.socket(family, kind, proto)
        try:
            # a restart may reuse the port while old connections sit in TIME_WAIT; a port that
            # another process listens on is still refused
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(BACKLOG)
        except OSError as exc:
            sock.close()
            raise HttpServerError(
                f"http.port: cannot listen on {host}:{port}: {exc.strerror or exc} "
                "(another process uses it? set http.port to a free port, or 0 for any)"
            ) from exc
        sock.set_inheritable(False)
        return sock

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Bind, serve in a background thread, and return once requests are answered."""
        if self._thread is not None:
            raise RuntimeError("the HTTP server is already started")
        self._token = self._read_token()
        sock = self._bind()
        config = uvicorn.Config(
            self.app,
            log_config=None,  # leave the process's logging set-up alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(config)
        self._sock, self._server, self._failure = sock, server, None

        def serve() -> None:
            try:
                server.run(sockets=[sock])
            except BaseException as exc:  # noqa: BLE001 - uvicorn sys.exit()s on startup errors
                self._failure = exc

        thread = threading.Thread(target=serve, name="warden-http", daemon=True)
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                failure = self._failure
                self.stop()
                raise HttpServerError(
                    f"http.port: the HTTP server on {self.cfg.host}:{self.cfg.port} did not "
                    f"start: {failure!r}"
                    if failure is not None
                    else f"http.port: the HTTP server did not start within {timeout_s:.0f}s"
                )
            time.sleep(0.01)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        log.info("http_listening", host=self.cfg.host, port=self.port, auth=bool(self._token))

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop serving, close the socket and join the thread (idempotent)."""
        server, thread, sock = self._server, self._thread, self._sock
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                if server is not None:
                    server.force_exit = True
                thread.join(timeout_s)
            if thread.is_alive():
                log.warning("http_stop_timeout", timeout_s=timeout_s)
        if sock is not None:
            sock.close()
        self._server = self._thread = self._sock = None
        if self.port is not None:
            log.info("http_stopped", port=self.port)
        self.port = None

    def __enter__(self) -> HttpServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
