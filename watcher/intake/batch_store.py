"""Store one parsed consumer batch: retry while the database is unreachable, and isolate any
row the database itself refuses so that one poison message never blocks a partition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from tenacity import Retrying, retry_if_exception, wait_exponential

from storage.intake import BatchCounts, write_batch
from watcher.kafka.wire import dead_letter

log = structlog.get_logger("warden.ingest")


class Item(NamedTuple):
    """One decoded message (or its dead letter) with where it came from in Kafka; a tuple,
    because the writer process builds one per record (a dataclass costs twice as much)."""

    kind: str  # "prediction" | "label" | "dead"
    row: dict[str, Any]
    topic: str
    partition: int
    offset: int
    raw: bytes | None = None


@dataclass
class Parsed:
    items: list[Item] = field(default_factory=list)

    def split(self) -> tuple[list[dict], list[dict], list[dict]]:
        """(predictions, labels, dead letters): the rows `write_batch` takes."""
        items = self.items
        return (
            [i.row for i in items if i.kind == "prediction"],
            [i.row for i in items if i.kind == "label"],
            [i.row for i in items if i.kind == "dead"],
        )


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures (server down, file locked) are retried; anything else is the
    data's fault and is isolated instead."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class StopFlag(Protocol):
    """A threading or multiprocessing Event: the store runs in the intake's writer process."""

    def is_set(self) -> bool: ...


class BatchStore:
    """Writes batches; `store` returns None only when asked to stop while the database is down."""

    def __init__(
        self,
        engine: Engine,
        stop: StopFlag,
        on_state: Callable[[str], None] = lambda _state: None,
    ) -> None:
        self.engine, self.stop_event, self.on_state = engine, stop, on_state

    def store(self, batch: Parsed) -> BatchCounts | None:
        try:
            return self._with_retries(batch)
        except _Stopping:
            return None

    def _with_retries(self, batch: Parsed) -> BatchCounts:
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                number = attempt.retry_state.attempt_number
                if number > 1:
                    if self.stop_event.is_set():
                        raise _Stopping
                    self.on_state("database unavailable, retrying")
                    log.warning("database_retry", attempt=number)
                counts = self._isolating(batch)
                if number > 1:
                    self.on_state("consuming")
                    log.info("database_back", attempts=number)
                return counts
        raise AssertionError("unreachable")  # pragma: no cover

    def _isolating(self, batch: Parsed) -> BatchCounts:
        """Write the batch; if the database rejects its data, bisect down to the bad rows and
        dead-letter them with the database's reason."""
        try:
            return write_batch(self.engine, *batch.split())
        except Exception as exc:
            if is_transient(exc):
                raise
            if len(batch.items) == 1:
                return write_batch(self.engine, [], [], [_rejected(batch.items[0], exc)])
            log.warning("batch_rejected_bisecting", rows=len(batch.items), error=str(exc)[:300])
            half = len(batch.items) // 2
            first = self._isolating(Parsed(batch.items[:half]))
            second = self._isolating(Parsed(batch.items[half:]))
            return _add(first, second)


class _Stopping(Exception):
    """Raised inside the retry loop to abandon a batch (uncommitted) on shutdown."""


def _rejected(item: Item, exc: Exception) -> dict:
    first_line = (str(exc).splitlines() or [""])[0]
    reason = f"storage rejected the row: {type(exc).__name__}: {first_line}"
    return dead_letter(item.topic, item.partition, item.offset, reason, item.raw)


def _add(a: BatchCounts, b: BatchCounts) -> BatchCounts:
    return BatchCounts(
        predictions=a.predictions + b.predictions,
        labels_applied=a.labels_applied + b.labels_applied,
        labels_pending=a.labels_pending + b.labels_pending,
        dead_letters=a.dead_letters + b.dead_letters,
    )
