"""Alert sinks: a structured log line, a JSON-lines file, a JSON message on the alerts topic and
a signed webhook POST.

Why it is built this way:

* Each sink is independent. `Alerter.send` hands the same alert to every configured sink and
  catches each sink's failure on its own: a webhook that is down never stops the log line, the
  file or the Kafka message, and never raises into the daemon (the failure is logged instead).
* The webhook is retried with exponential backoff on connection errors, timeouts, 5xx and 429
  (the receiver may recover); any other 4xx is the receiver refusing the request, so it is not
  retried. Retries can deliver an alert twice, so every alert carries a stable `alert_id`
  (sent as the `Idempotency-Key` header too) by which a receiver drops duplicates.
* The webhook body is signed with HMAC-SHA256 when `alerts.webhook_secret_env` names an
  environment variable holding the key (the key never sits in the config file), so a receiver
  can tell a warden alert from a forged one. See `WebhookSink` for how to verify it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)
from tenacity.wait import wait_base

from watcher.alerts.message import (
    IDEMPOTENCY_HEADER,
    KAFKA_ACK_TIMEOUT_S,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    describe,
    encode_alert,
    sign,
)
from watcher.config import AlertsConfig, ConfigError

log = structlog.get_logger("warden.alerts")


class Sink(Protocol):
    """Something that delivers an alert, or raises; `Alerter` catches and logs the failure."""

    name: str

    def send(self, alert: dict[str, Any]) -> None: ...


class LogSink:
    """A structlog warning line "alert" with a human `description` and the alert's fields."""

    name = "log"

    def send(self, alert: dict[str, Any]) -> None:
        fields = {k: v for k, v in alert.items() if k not in ("event", "description")}
        log.warning("alert", description=describe(alert), **fields)


_file_locks: dict[Path, threading.Lock] = {}
_file_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    """One lock per file for the whole process, so two Alerters (after a reload) share it."""
    with _file_locks_guard:
        return _file_locks.setdefault(path, threading.Lock())


class FileSink:
    """Appends each alert as one JSON line (flushed and fsynced), creating parent folders."""

    name = "file"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        self._lock = _lock_for(self.path)

    def send(self, alert: dict[str, Any]) -> None:
        line = encode_alert(alert) + b"\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())


class KafkaSink:
    """JSON on the alerts topic, key = model, waiting for the broker's ack."""

    name = "kafka"

    def __init__(self, producer, topic: str, *, ack_timeout_s: float = KAFKA_ACK_TIMEOUT_S):
        self.producer = producer
        self.topic = topic
        self.ack_timeout_s = ack_timeout_s

    def send(self, alert: dict[str, Any]) -> None:
        future = self.producer.send(
            self.topic, key=str(alert.get("model", "")).encode(), value=encode_alert(alert)
        )
        future.get(timeout=self.ack_timeout_s)


class WebhookError(Exception):
    """The webhook answered with an error status, or could not be reached (after retries)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.status is not None and (self.status >= 500 or self.status == 429)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):  # connect errors, timeouts, dropped connections
        return True
    return isinstance(exc, WebhookError) and exc.retryable


class WebhookSink:
    """POSTs the alert as JSON, retried with exponential backoff (`attempts` tries in all) on
    connection errors, timeouts, 5xx and 429; other 4xx fail at once.

    Headers: `Content-Type: application/json`, `Idempotency-Key: <alert_id>` (the same on every
    retry: drop a key you have already processed) and, when a key is configured,
    `X-Warden-Timestamp: <unix seconds>` and `X-Warden-Signature: sha256=<hex>`, the HMAC-SHA256
    of `"<timestamp>." + <raw body bytes>` under the key. The body is serialised once, so the
    signature covers exactly the bytes sent.

    How a receiver verifies a request (`verify_signature` does the same):

    1. read the raw request body bytes (before any JSON parsing or re-encoding);
    2. compute `"sha256=" + hex(HMAC_SHA256(key, timestamp_header + "." + body))`;
    3. compare it with `X-Warden-Signature` in constant time (`hmac.compare_digest`);
    4. reject a timestamp more than a few minutes away from now (this bounds replays);
    5. drop a request whose `Idempotency-Key` was already processed (retries repeat it).
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        attempts: int = 5,
        secret_env: str | None = None,
        secret_file: Path | None = None,
        wait: wait_base | None = None,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.wait = wait if wait is not None else wait_exponential(multiplier=0.2, max=5)
        parts = urlsplit(url)
        # what logs and errors show: the path or query may hold a token
        self.safe_url = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self._key: bytes | None = None
        if secret_env:
            value = os.environ.get(secret_env, "")
            if not value:
                raise ConfigError(
                    f"alerts.webhook_secret_env: environment variable {secret_env!r} "
                    "(the webhook HMAC key) is not set or empty"
                )
            self._key = value.encode()
        elif secret_file is not None:
            try:
                value = Path(secret_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"alerts.webhook_secret_file: cannot read {secret_file}: {exc.strerror}"
                ) from exc
            if not value:
                raise ConfigError(f"alerts.webhook_secret_file: {secret_file} is empty")
            self._key = value.encode()

    def __repr__(self) -> str:
        return f"WebhookSink({self.safe_url!r}, signed={self._key is not None})"

    def send(self, alert: dict[str, Any]) -> None:
        body = encode_alert(alert)
        alert_id = str(alert.get("alert_id") or uuid.uuid4().hex)
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self.wait,
            retry=retry_if_exception(_retryable),
            before_sleep=self._log_retry(alert),
            reraise=True,
        )
        try:
            with httpx.Client(timeout=self.timeout_s) as client:
                retrying(self._post, client, body, alert_id)
        except WebhookError:
            raise
        except httpx.HTTPError as exc:
            # re-raised without the URL (httpx messages may include it) nor the chain
            raise WebhookError(
                f"{self.safe_url} unreachable after {self.attempts} tries: "
                f"{type(exc).__name__}: {self._redact(str(exc))}"
            ) from None

    def _post(self, client: httpx.Client, body: bytes, alert_id: str) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "model-warden",
            IDEMPOTENCY_HEADER: alert_id,
        }
        if self._key is not None:
            timestamp = str(int(time.time()))  # fresh per try: late retries stay in tolerance
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._key, timestamp, body)
        response = client.post(self.url, content=body, headers=headers)
        if response.status_code >= 400:
            raise WebhookError(
                f"{self.safe_url} answered HTTP {response.status_code}", response.status_code
            )

    def _redact(self, text: str) -> str:
        return text.replace(self.url, self.safe_url)

    def _log_retry(self, alert: dict[str, Any]):
        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "webhook_retry",
                url=self.safe_url,
                alert=alert.get("alert"),
                alert_id=alert.get("alert_id"),
                attempt=state.attempt_number,
                of=self.attempts,
                error=self._redact(f"{type(exc).__name__}: {exc}"),
                wait_s=round(state.upcoming_sleep, 2),
            )

        return before_sleep


def build_sinks(alerts: AlertsConfig, kafka_topic: str, producer=None) -> list[Sink]:
    """The sinks the config asks for; fast local ones first, the webhook (slowest) last."""
    sinks: list[Sink] = []
    if alerts.log:
        sinks.append(LogSink())
    if alerts.file is not None:
        sinks.append(FileSink(alerts.file))
    if alerts.kafka and producer is not None:
        sinks.append(KafkaSink(producer, kafka_topic))
    if alerts.webhook_url:
        sinks.append(
            WebhookSink(
                alerts.webhook_url,
                timeout_s=alerts.webhook_timeout_s,
                attempts=alerts.webhook_attempts,
                secret_env=alerts.webhook_secret_env,
                secret_file=alerts.webhook_secret_file,
            )
        )
    return sinks
