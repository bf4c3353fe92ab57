"""`warden serve`: an onnxruntime HTTP inference server for one model, following ACTIVE.

    POST /predict  {"rows": [{feature: value, ...}, ...],   raw features, encoded as in training
                    "groups": [{attr: value}, ...],         optional, one per row (bias checks)
                    "ids": ["...", ...]}                    optional prediction ids, one per row
               →   200 {"model", "version", "predictions": [class, ...],
                        "scores": [[p, ...], ...], "prediction_ids": [...]}
                   413 body over `max_body_bytes` (default 1 MiB)
                   422 {"error", "field"} malformed input; missing features also list "missing"
                   503 no version loaded yet
    GET /healthz   200 while the process serves HTTP (no auth: liveness probe)
    GET /readyz    200 once the ACTIVE version is loaded, else 503

Every answered row is logged to Kafka (`PredictionLogger`) after the response is sent, with the
version that answered it. A row's keys must include every feature of the model (null is an
explicit missing value, encoded as in training); other keys are ignored and not logged.

The server follows the registry's ACTIVE pointer with `ActiveModel.start()`: a background
thread loads a new version beside the old one and switches the reference, so a request is
answered entirely by one version and none waits for a load. The HTTP side is `HttpServer`'s
(socket bound here, port 0 = a free port, uvicorn in a thread; with `token_env` set,
/readyz and /predict need `Authorization: Bearer <token>`).
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

import msgspec
import numpy as np
import pandas as pd
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from correctors.models.encoding import FeatureEncoder
from storage.registry import ModelRegistry
from watcher.config import HttpConfig
from watcher.http_server import HttpServer, unauthorized
from watcher.kafka.wire import Id, Scalar
from watcher.serving.active import REFRESH_S, ActiveModel, NotReady
from watcher.serving.prediction_logger import PredictionLogger

log = structlog.get_logger("warden.serve")
MAX_BODY_BYTES = 1 << 20
INLINE_BODY_BYTES = 16 * 1024  # smaller requests are answered on the event loop (no hop)
EXACT_INT = 2**53  # ints beyond this take the pandas path, as training's encoder would


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    rows: list[dict[str, Scalar]]
    groups: list[dict[str, str | int]] | None = None
    ids: list[Id] | None = None


_REQUEST = msgspec.json.Decoder(PredictRequest)
_JSON = msgspec.json.Encoder()


class Answered(NamedTuple):
    """What one request was answered with, logged to Kafka after the response is sent."""

    version: str
    rows: list[dict[str, Scalar]]
    features: list[str]
    predictions: list[Any]
    scores: list[list[float]]
    groups: list[dict[str, str | int]] | None
    ids: list[str]


class BadRequest(ValueError):
    """Input that cannot be predicted; answered with 422 naming the field."""

    def __init__(self, field: str, message: str, **extra: Any) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.extra = field, extra


class BodyTooLarge(ValueError):
    """A request body over the configured limit; answered with 413."""


def _field_of(exc: msgspec.ValidationError, body: bytes) -> str:
    """`Expected ... - at `$.ids[0]`` → `ids[0]`; a missing or unknown field → its name; a
    bad value inside a row or group (msgspec says `rows[0][...]`) → `rows[0].<key>`."""
    text = str(exc)
    at = re.search(r" - at `\$\.?([^`]*)`", text)
    named = re.search(r"(?:missing required|unknown) field `([^`]+)`", text)
    field = at.group(1) if at else ""
    inside = re.fullmatch(r"(rows|groups)\[(\d+)\]\[\.\.\.\]", field)
    if inside:
        allowed = (str, int, float, bool, type(None)) if inside[1] == "rows" else (str, int)
        try:
            item = msgspec.json.decode(body)[inside[1]][int(inside[2])]
            key = next(k for k, v in item.items() if not _allowed(v, allowed))
            field = f"{inside[1]}[{inside[2]}].{key}"
        except Exception:  # noqa: BLE001 - keep msgspec's own path
            pass
    return ".".join(part for part in (field, named[1] if named else "") if part) or "body"


def _allowed(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def _new_ids(n: int) -> list[str]:
    """n random 128-bit ids as 32 hex characters (one urandom call, not n uuid4 objects)."""
    raw = os.urandom(16 * n).hex()
    return [raw[i : i + 32] for i in range(0, 32 * n, 32)]


def encode_rows(encoder: FeatureEncoder, rows: list[dict[str, Any]]) -> np.ndarray:
    """`encoder.transform(pd.DataFrame(rows))`, without pandas for plain JSON values.

    Numeric features given as int/float/null and categorical ones as string/null are parsed
    here directly and encoded by the encoder's own arithmetic (`FeatureEncoder.assemble`:
    standard or raw, the same code as in training); any other value (a number as text, a
    bool, a number as a category) takes the training encoder's own pandas path, so its
    coercions apply unchanged.
    """
    fast = _encode_plain(encoder, rows)
    if fast is not None:
        return fast
    return encoder.transform(pd.DataFrame(rows, columns=encoder.features))


def _encode_plain(encoder: FeatureEncoder, rows: list[dict[str, Any]]) -> np.ndarray | None:
    n = len(rows)
    numeric: dict[str, np.ndarray] = {}
    for col in encoder.numeric:
        values = [row.get(col) for row in rows]
        kinds = set(map(type, values))
        if not kinds <= _NUMERIC_TYPES:
            return None
        if int in kinds and not all(-EXACT_INT < v < EXACT_INT for v in values if type(v) is int):
            return None
        numeric[col] = np.array(values, dtype=np.float64)  # None → NaN
    codes: dict[str, np.ndarray] = {}
    for col in encoder.categorical:
        values = [row.get(col) for row in rows]
        if not set(map(type, values)) <= _CATEGORICAL_TYPES:
            return None
        codes[col] = encoder.codes(col, values)  # None: the `<unknown>` code
    texts = {col: pd.Series([row.get(col) for row in rows], dtype=object) for col in encoder.text}
    return encoder.assemble(n, numeric, codes, texts)


_NUMERIC_TYPES = frozenset({float, int, type(None)})
_CATEGORICAL_TYPES = frozenset({str, type(None)})


class InferenceServer(HttpServer):
    """POST /predict with the ACTIVE version of `model`; `start()` returns once it listens."""

    def __init__(
        self,
        registry: ModelRegistry,
        model: str,
        cfg: HttpConfig,
        *,
        logger: PredictionLogger | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        refresh_s: float = REFRESH_S,
    ) -> None:
        if max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be positive")
        self.model = model
        self.active = ActiveModel(registry, model, refresh_s=refresh_s)
        self.logger = logger
        self.max_body_bytes = max_body_bytes
        super().__init__(cfg)

    # -- app ----------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI(title="model-warden serve", docs_url=None, redoc_url=None, openapi_url=None)
        app.add_api_route("/healthz", self._healthz, methods=["GET"])
        app.add_api_route("/readyz", self._readyz, methods=["GET"])
        app.add_api_route("/predict", self._predict_route, methods=["POST"])
        return app

    async def _healthz(self) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def _readyz(self, request: Request) -> Response:
        if not self._authorized(request):
            return unauthorized()
        ready, reason = self.active.ready()
        body = {"ready": ready, "reason": reason, "model": self.model}
        body["version"] = self.active.version
        return JSONResponse(body, status_code=200 if ready else 503)

    async def _predict_route(self, request: Request) -> Response:
        if not self._authorized(request):
            return unauthorized()
        try:
            body = await self._read_body(request)
            if len(body) <= INLINE_BODY_BYTES:
                content, answered = self._predict(body)
            else:  # big batches: leave the event loop free for other requests
                content, answered = await run_in_threadpool(self._predict, body)
        except BodyTooLarge as exc:
            return JSONResponse({"error": str(exc)}, status_code=413)
        except BadRequest as exc:
            return JSONResponse(
                {"error": str(exc), "field": exc.field, **exc.extra}, status_code=422
            )
        except NotReady as exc:
            return JSONResponse({"error": f"not ready: {exc}"}, status_code=503)
        background = None
        if self.logger is not None and self.logger.enabled:
            background = BackgroundTask(self._log, answered)  # after the response is sent
        return Response(content, media_type="application/json", background=background)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"request body of {int(declared)} bytes exceeds {limit} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _predict(self, body: bytes) -> tuple[bytes, Answered]:
        if b"\\u0000" in body:  # the intake refuses it too: the row could never be stored
            raise BadRequest("body", "NUL character (\\u0000) in JSON text")
        try:
            req = _REQUEST.decode(body)
        except msgspec.ValidationError as exc:
            raise BadRequest(_field_of(exc, body), str(exc)) from exc
        except msgspec.DecodeError as exc:
            raise BadRequest("body", f"not valid JSON: {exc}") from exc
        rows, n = req.rows, len(req.rows)
        if n == 0:
            raise BadRequest("rows", "at least one row is needed")
        for name, values in (("groups", req.groups), ("ids", req.ids)):
            if values is not None and len(values) != n:
                raise BadRequest(name, f"{len(values)} values for {n} rows (one per row)")
        if req.ids is not None and len(set(req.ids)) != n:
            raise BadRequest("ids", "prediction ids must be unique")
        served = self.active.current()  # one version answers the whole request
        features = served.encoder.features
        wanted = frozenset(features)
        for i, row in enumerate(rows):
            if not wanted <= row.keys():
                missing = [f for f in features if f not in row]
                bad = sum(1 for r in rows if not wanted <= r.keys())
                raise BadRequest(
                    f"rows[{i}]",
                    f"missing features {missing} ({bad} of {n} rows lack features)",
                    missing=missing,
                )
        probs = served.proba_encoded(encode_rows(served.encoder, rows))
        predictions = served.decode(probs)  # class names, or values for regression
        ids = req.ids if req.ids is not None else _new_ids(n)
        scores = probs.tolist()
        content = _JSON.encode(
            {
                "model": self.model,
                "version": served.version,
                "predictions": predictions,
                "scores": scores,
                "prediction_ids": ids,
            }
        )
        answered = Answered(served.version, rows, features, predictions, scores, req.groups, ids)
        return content, answered

    def _log(self, answered: Answered) -> None:
        if self.logger is None:
            return
        features = answered.features
        rows = [
            r if len(r) == len(features) else {f: r[f] for f in features} for r in answered.rows
        ]
        try:
            self.logger.log(
                answered.version,
                rows,
                answered.predictions,
                answered.scores,
                groups=answered.groups,
                ids=answered.ids,
            )
        except Exception as exc:  # noqa: BLE001 - logging must never fail serving
            log.warning("prediction_log_error", model=self.model, error=repr(exc))

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> None:
        """Load the ACTIVE version (503 until there is one), follow ACTIVE, listen."""
        self.active.start()
        try:
            super().start(timeout_s)
        except BaseException:
            self.active.stop()
            raise
        ready, reason = self.active.ready()
        log.info("serve_listening", model=self.model, url=self.url, ready=ready, reason=reason)

    def stop(self, timeout_s: float = 10.0) -> None:
        super().stop(timeout_s)
        self.active.stop()

    def __enter__(self) -> InferenceServer:
        self.start()
        return self
