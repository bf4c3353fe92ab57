"""The intake loop: poll a batch, validate each message, write the batch in one transaction,
then commit offsets (at-least-once; storage is idempotent by prediction_id)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from tenacity import Retrying, retry_if_exception_type, wait_exponential

from storage.intake import BatchCounts, write_batch
from watcher.config import KafkaConfig
from watcher.kafka_io import make_consumer
from watcher.messages import BadMessage, dead_letter, parse_label, parse_prediction

log = structlog.get_logger("warden.ingest")


@dataclass
class IngestStats:
    consumed: int = 0
    predictions: int = 0
    labels: int = 0
    dead_letters: int = 0
    batches: int = 0
    last_batch_at: float | None = None
    state: str = "starting"


def split_batch(records, cfg: KafkaConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """Decode and validate every record once; bad ones become dead-letter rows, never raise."""
    predictions, labels, dead = [], [], []
    for record in records:
        try:
            if record.topic == cfg.labels_topic:
                labels.append(parse_label(record.value, cfg.max_message_bytes))
            else:
                predictions.append(parse_prediction(record.value, cfg.max_message_bytes))
        except BadMessage as exc:
            dead.append(
                dead_letter(record.topic, record.partition, record.offset, str(exc), record.value)
            )
    return predictions, labels, dead


class Ingestor:
    """Runs in its own thread; `stop` finishes the batch in hand, commits and returns."""

    def __init__(self, cfg: KafkaConfig, engine: Engine, stop: threading.Event) -> None:
        self.cfg, self.engine, self.stop_event = cfg, engine, stop
        self.stats = IngestStats()

    def _write(self, predictions, labels, dead) -> BatchCounts | None:
        """Retry the database until it answers; give up only when asked to stop (no commit)."""
        for attempt in Retrying(
            retry=retry_if_exception_type(OperationalError),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.stats.state = "database unavailable, retrying"
                    log.warning("database_retry", attempt=attempt.retry_state.attempt_number)
                    if self.stop_event.is_set():
                        return None
                return write_batch(self.engine, predictions, labels, dead)
        return None

    def run(self) -> None:
        consumer = make_consumer(self.cfg, [self.cfg.predictions_topic, self.cfg.labels_topic])
        self.stats.state = "consuming"
        log.info(
            "ingest_started",
            topics=[self.cfg.predictions_topic, self.cfg.labels_topic],
            group=self.cfg.group_id,
        )
        try:
            while not self.stop_event.is_set():
                batch = consumer.poll(
                    timeout_ms=self.cfg.poll_timeout_ms, max_records=self.cfg.max_poll_records
                )
                records = [r for part in batch.values() for r in part]
                if not records:
                    continue
                predictions, labels, dead = split_batch(records, self.cfg)
                counts = self._write(predictions, labels, dead)
                if counts is None:  # stopping while the database is down: no commit
                    break
                consumer.commit()
                self._account(len(records), counts, len(labels))
        finally:
            consumer.close(autocommit=False)
            self.stats.state = "stopped"
            log.info(
                "ingest_stopped",
                **{k: v for k, v in self.stats.__dict__.items() if isinstance(v, int)},
            )

    def _account(self, consumed: int, counts: BatchCounts, labels: int) -> None:
        s = self.stats
        s.consumed += consumed
        s.predictions += counts.predictions
        s.labels += labels
        s.dead_letters += counts.dead_letters
        s.batches += 1
        s.last_batch_at = time.time()
        if counts.dead_letters:
            log.warning("dead_letters", count=counts.dead_letters)
        log.debug(
            "batch_stored",
            consumed=consumed,
            new_predictions=counts.predictions,
            labels_applied=counts.labels_applied,
            labels_pending=counts.labels_pending,
            dead_letters=counts.dead_letters,
        )
