"""Prediction logging: served predictions → the Kafka predictions topic, in the wire schema.

`warden serve` logs every row it answers with this class, and it is also the helper any other
Python service uses to log its predictions the same way, so that the daemon can watch them:

    from watcher.config import KafkaConfig
    from watcher.serving.prediction_logger import PredictionLogger

    logger = PredictionLogger(KafkaConfig(bootstrap_servers="kafka:9092"), "credit")
    ids = logger.log(
        "v3",                                   # the model version that answered
        rows=[{"income": 52.0, "debt_ratio": 0.3, "region": "north", "plan": "basic"}],
        predictions=["1"],                      # one per row (class name or value)
        scores=[[0.18, 0.82]],                  # optional: class probabilities per row
        groups=[{"sex": "F"}],                  # optional: attributes the bias check compares
    )
    # keep ids[i]: the delayed label is {"prediction_id": ids[i], "label": 1} on the labels topic
    ...
    logger.close()                              # at shutdown: sends what is still buffered

Each row becomes one `watcher.kafka.wire.PredictionLog` (prediction_id, model, model_version,
ts, features, prediction, scores, groups, label=None), keyed by its prediction id. Sending is
asynchronous: `producer.send` only appends to the producer's buffer and returns a future; the
producer batches what arrives within `linger_ms` and a callback counts each message as `sent`
(acknowledged by the broker, acks=1 as `make_producer` sets it) or `failed`. `log` never waits
for the broker. The one wait kafka-python can impose (topic metadata unknown, or the buffer
full) is bounded by `max_block_ms`; after one such timeout the logger counts messages as failed
without trying for `backoff_s`, so an unreachable broker costs a request at most one wait.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from watcher.config import KafkaConfig
from watcher.kafka.wire import encode

log = structlog.get_logger("warden.prediction_log")
WARN_EVERY_S = 30.0


class PredictionLogger:
    """Send prediction logs for one model to `kafka_cfg.predictions_topic`; thread-safe.

    `producer`: an existing KafkaProducer to share (the caller owns it: `close()` only flushes
    it); by default one is made with `watcher.kafka.clients.make_producer`. `enabled=False` logs
    nothing (ids are still returned): benchmarks, or serving without monitoring.
    """

    def __init__(
        self,
        kafka_cfg: KafkaConfig,
        model: str,
        *,
        producer: KafkaProducer | None = None,
        linger_ms: int = 50,
        enabled: bool = True,
        max_block_ms: int = 1000,
        backoff_s: float = 5.0,
    ) -> None:
        self.cfg, self.model, self.enabled = kafka_cfg, model, enabled
        self.topic = kafka_cfg.predictions_topic
        self.backoff_s = backoff_s
        self._own_producer = producer is None and enabled
        if producer is None and enabled:
            from watcher.kafka.clients import make_producer

            producer = make_producer(kafka_cfg, linger_ms=linger_ms, max_block_ms=max_block_ms)
        self._producer = producer
        self._lock = threading.Lock()
        self._blocked_until = 0.0
        self._warned_at = -WARN_EVERY_S
        self._closed = False
        self.queued = self.sent = self.failed = 0
        self.last_error: str | None = None

    # -- counters (updated from request threads and the producer's I/O thread) ---------------
    def _ok(self, _metadata: Any) -> None:
        with self._lock:
            self.sent += 1

    def _error(self, exc: BaseException) -> None:
        self._fail(1, repr(exc))

    def _fail(self, count: int, reason: str) -> None:
        with self._lock:
            self.failed += count
            self.last_error = reason
            now = time.monotonic()
            warn = now - self._warned_at >= WARN_EVERY_S
            if warn:
                self._warned_at = now
        if warn:  # at most one line per WARN_EVERY_S: an outage must not flood the log
            log.warning("prediction_log_failed", model=self.model, error=reason, failed=self.failed)

    @property
    def pending(self) -> int:
        """Messages logged and neither acknowledged (`sent`) nor `failed` yet."""
        return self.queued - self.sent - self.failed

    # -- logging ------------------------------------------------------------------------------
    def log(
        self,
        version: str,
        rows: Sequence[Mapping[str, Any]],
        predictions: Sequence[Any],
        scores: Any = None,
        groups: Sequence[Mapping[str, str | int] | None] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Queue one prediction log per row; returns their prediction ids (given or new).

        `rows`: the raw features of each row; `predictions`: one per row; `scores`: None or one
        list (or array row) of floats per row; `groups`, `ids`: None or one per row. Raises
        ValueError only when the lengths disagree; everything else counts in `failed`.
        """
        n = len(rows)
        for name, values in (
            ("predictions", predictions),
            ("scores", scores),
            ("groups", groups),
            ("ids", ids),
        ):
            if values is not None and len(values) != n:
                raise ValueError(f"{name}: {len(values)} values for {n} rows")
        ids = [uuid.uuid4().hex for _ in range(n)] if ids is None else [str(i) for i in ids]
        if not self.enabled or n == 0:
            return ids
        with self._lock:
            self.queued += n
        if hasattr(scores, "tolist"):  # numpy arrays: plain floats, one list per row
            scores = scores.tolist()
        ts = datetime.now(UTC).isoformat()
        for i in range(n):
            if time.monotonic() < self._blocked_until:
                self._fail(n - i, f"not sent: the broker did not answer ({self.last_error})")
                break
            row_scores = None if scores is None else [float(s) for s in scores[i]]
            if row_scores is not None and not all(math.isfinite(s) for s in row_scores):
                self._fail(1, f"{ids[i]}: scores must be finite numbers")
                continue
            message = {
                "prediction_id": ids[i],
                "model": self.model,
                "model_version": version,
                "ts": ts,
                "features": dict(rows[i]),
                "prediction": predictions[i],
                "scores": row_scores,
                "groups": None if groups is None else groups[i],
                "label": None,
            }
            self._send(ids[i], message)
        return ids

    def _send(self, pid: str, message: dict[str, Any]) -> None:
        try:
            payload = encode(message)
        except (TypeError, ValueError, OverflowError) as exc:
            self._fail(1, f"{pid}: cannot encode: {exc}")
            return
        if len(payload) > self.cfg.max_message_bytes:
            self._fail(1, f"{pid}: {len(payload)} bytes exceed kafka.max_message_bytes; not sent")
            return
        producer = self._producer
        if producer is None:
            self._fail(1, f"{pid}: the logger is closed; not sent")
            return
        try:
            future = producer.send(self.topic, key=pid.encode("utf-8"), value=payload)
        except KafkaTimeoutError as exc:
            self._blocked_until = time.monotonic() + self.backoff_s
            self._error(exc)
            return
        except Exception as exc:  # noqa: BLE001 - a closed producer, a bad topic: count it
            self._error(exc)
            return
        future.add_callback(self._ok)
        future.add_errback(self._error)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued message is acknowledged or failed."""
        if self._producer is not None:
            self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush, then close the producer if this logger made it (idempotent)."""
        if self._closed:
            return
        self._closed = True
        producer = self._producer
        if producer is not None:
            try:
                producer.flush(timeout=timeout_s)
            except KafkaTimeoutError as exc:
                log.warning("prediction_log_flush_timeout", model=self.model, error=repr(exc))
            if self._own_producer:
                producer.close(timeout=timeout_s)
                self._producer = None
        log.info(
            "prediction_log_closed",
            model=self.model,
            enabled=self.enabled,
            sent=self.sent,
            failed=self.failed,
            pending=self.pending,
        )
