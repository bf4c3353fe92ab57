"""What an alert is (one JSON document with a stable `alert_id`) and how its webhook body is
signed and verified (HMAC-SHA256 over timestamp and body)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

log = structlog.get_logger("warden.alerts")


SIGNATURE_HEADER = "X-Warden-Signature"
TIMESTAMP_HEADER = "X-Warden-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
KAFKA_ACK_TIMEOUT_S = 10.0


class AlertKind(StrEnum):
    """What an alert is about: its `alert` field. The values are the strings receivers match."""

    INCIDENT_OPENED = "incident_opened"
    INCIDENT_ESCALATED = "incident_escalated"
    CORRECTION_FAILED = "correction_failed"
    CANDIDATE_REJECTED = "candidate_rejected"
    AWAITING_APPROVAL = "awaiting_approval"
    CANDIDATE_WITHDRAWN = "candidate_withdrawn"  # its incident resolved by itself
    APPROVAL_REFUSED = "approval_refused"  # worse on fresh rows than the champion
    SWAPPED = "swapped"
    ROLLED_BACK = "rolled_back"
    UNDECODABLE_BATCH = "undecodable_batch"


def build_alert(kind: AlertKind | str, model: str, /, **fields: Any) -> dict[str, Any]:
    """The alert document every sink sends: what, where, how bad, the report, what happens next.

    `kind` and `model` are positional-only, so `fields` may hold their own `kind` (the incident's
    kind) or `model`-like keys. `alert_id` (uuid4 hex) is added unless given; it stays the same
    across retries and sinks."""
    alert: dict[str, Any] = {
        "alert": str(kind),
        "model": model,
        "ts": datetime.now(UTC).isoformat(),
    }
    alert.update(fields)
    if not alert.get("alert_id"):
        alert["alert_id"] = uuid.uuid4().hex
    return alert


def describe(alert: dict[str, Any]) -> str:
    """One human line: model, kind, severity, summary, next action (missing parts left out)."""
    kind = str(alert.get("alert", "alert"))
    if alert.get("kind"):
        kind = f"{kind} ({alert['kind']})"
    parts = [f"model {alert.get('model', '?')}: {kind}"]
    if alert.get("severity"):
        parts.append(f"severity {alert['severity']}")
    line = ", ".join(parts)
    summary = alert.get("summary")
    if not summary and alert.get("reasons"):
        reasons = alert["reasons"]
        summary = "; ".join(map(str, reasons)) if isinstance(reasons, list | tuple) else reasons
    if summary:
        line += f": {summary}"
    if alert.get("next_action"):
        line += f". Next: {alert['next_action']}"
    return line


def encode_alert(alert: dict[str, Any]) -> bytes:
    """The one serialisation every sink uses: compact JSON, one line, UTF-8."""
    return json.dumps(alert, default=str, separators=(",", ":"), ensure_ascii=False).encode()


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Warden-Signature` value: `sha256=` + hex HMAC-SHA256 of `"{timestamp}." + body`."""
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    key: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    tolerance_s: float = 300.0,
    now: float | None = None,
) -> bool:
    """Receiver side (reference implementation): True when the signature matches the exact body
    bytes and the timestamp is within `tolerance_s` of now (which bounds replays)."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(key, timestamp, body), signature)
