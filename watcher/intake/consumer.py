"""The intake loop: poll a batch, decode it, store it in one transaction, then commit offsets.

Polling and decoding batch N+1 overlap with the database write of batch N (one writer
thread, at most one batch in flight), and offsets are committed only for batches whose
transaction has committed: at-least-once, and storage is idempotent by prediction_id.
A record batch the client cannot decode travels the same way, as one dead-letter row for
its offset range (`watcher.intake.undecodable`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy import Engine

from storage.intake import BatchCounts
from watcher.config import KafkaConfig
from watcher.intake.batch_store import BatchStore, Item, Parsed
from watcher.intake.undecodable import UndecodableGuard
from watcher.kafka.clients import make_consumer
from watcher.kafka.undecodable import UndecodableBatch, locate
from watcher.kafka.wire import BadMessage, dead_letter, parse_label, parse_prediction

log = structlog.get_logger("warden.ingest")
COMMIT_TIMEOUT_MS = 10_000
WATCH_INTERVAL_S = 0.5
SILENT_HEARTBEATS = 3  # unanswered heartbeat intervals before the broker counts as unreachable


@dataclass
class IngestStats:
    """What the intake has done; the daemon copies it into its heartbeat row for `status`."""

    consumed: int = 0
    predictions: int = 0
    labels: int = 0
    dead_letters: int = 0
    batches: int = 0
    commit_failures: int = 0
    first_batch_at: float | None = None
    last_batch_at: float | None = None
    undecodable_batches: int = 0  # offset ranges dead-lettered because they could not be read
    last_undecodable: str | None = None
    lag: int | None = None
    partitions: list[str] = field(default_factory=list)
    state: str = "starting"


def split_batch(records, cfg: KafkaConfig) -> Parsed:
    """Decode and validate every record once; bad ones become dead-letter rows, never raise."""
    parsed = Parsed()
    append = parsed.items.append
    labels_topic, limit = cfg.labels_topic, cfg.max_message_bytes
    for r in records:
        try:
            if r.topic == labels_topic:
                row = parse_label(r.value, limit)
                append(Item("label", row, r.topic, r.partition, r.offset, r.value))
            else:
                row = parse_prediction(r.value, limit)
                append(Item("prediction", row, r.topic, r.partition, r.offset, r.value))
        except BadMessage as exc:
            row = dead_letter(r.topic, r.partition, r.offset, str(exc), r.value)
            append(Item("dead", row, r.topic, r.partition, r.offset, r.value))
        except Exception as exc:  # a decoder bug must not block the partition either
            log.error("decoder_error", topic=r.topic, partition=r.partition, offset=r.offset)
            reason = f"unexpected decoding error: {exc!r}"
            row = dead_letter(r.topic, r.partition, r.offset, reason, r.value)
            append(Item("dead", row, r.topic, r.partition, r.offset, r.value))
    return parsed


def next_offsets(records) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit once these records are stored: last offset + 1 per partition."""
    last: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        last[tp] = max(last.get(tp, -1), r.offset)
    return {tp: OffsetAndMetadata(off + 1, "", -1) for tp, off in last.items()}


def broker_problem(consumer: KafkaConsumer, cfg: KafkaConfig) -> str | None:
    """Why the broker looks unreachable, or None; asked after every poll."""
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is not None and coordinator.coordinator_unknown():
        return "broker unreachable or group coordinator unknown; retrying"
    return silent_broker(consumer, cfg)


def silent_broker(consumer: KafkaConsumer, cfg: KafkaConfig) -> str | None:
    """A frozen or cut-off broker, told from unanswered group heartbeats. Read-only, so the
    watchdog may ask from its own thread while a poll is blocked; kafka-python by itself
    notices a broker that keeps its sockets open only after request_timeout_ms (30 s)."""
    coordinator = getattr(consumer, "_coordinator", None)
    heartbeat = getattr(coordinator, "heartbeat", None)
    if heartbeat is None or not coordinator.stable():  # heartbeats flow only once joined
        return None
    silent_s = time.monotonic() - max(heartbeat.last_receive, heartbeat.last_reset)
    if silent_s > SILENT_HEARTBEATS * cfg.heartbeat_interval_ms / 1000:
        return f"broker unreachable: no answer for {silent_s:.0f} s; retrying"
    return None


@dataclass
class InFlight:
    """The one batch being written while the next is polled and decoded."""

    future: Future
    offsets: dict[TopicPartition, OffsetAndMetadata]
    records: int
    labels: int
    undecodable: UndecodableBatch | None = None


Ready = tuple[Parsed, dict[TopicPartition, OffsetAndMetadata], int]  # rows, commit, consumed


def undecodable_batch(bad: UndecodableBatch) -> Ready:
    """A dead-lettered range as a batch: one row, the offset after it to commit, and its
    offsets counted as consumed (so consumed = stored + dead-lettered still holds)."""
    row = bad.dead_letter()
    item = Item("dead", row, bad.topic, bad.partition, bad.first_offset, None)
    commit = {bad.tp: OffsetAndMetadata(bad.last_offset + 1, "", -1)}
    return Parsed([item]), commit, bad.offsets


class Ingestor:
    """Runs in its own thread; `stop` finishes the batch in hand, commits and returns."""

    def __init__(
        self,
        cfg: KafkaConfig,
        engine: Engine,
        stop: threading.Event,
        on_undecodable: Callable[[UndecodableBatch], None] | None = None,
    ) -> None:
        """`on_undecodable` is called once a range is stored as a dead letter (the daemon's
        intake thread sends the alert from it)."""
        self.cfg, self.engine, self.stop_event = cfg, engine, stop
        self.on_undecodable = on_undecodable
        self.stats = IngestStats()
        self.store = BatchStore(engine, stop, on_state=self._set_state)
        self.guard = UndecodableGuard(cfg.undecodable_retries, self._set_state, stop.wait)
        self._positions: dict[TopicPartition, int] = {}

    def _set_state(self, state: str) -> None:
        if state != self.stats.state:
            self.stats.state = state

    def _watch(self, consumer: KafkaConsumer, done: threading.Event) -> None:
        """Reports a silent broker while a poll is blocked on it (the loop cannot)."""
        while not done.wait(WATCH_INTERVAL_S):
            problem = silent_broker(consumer, self.cfg)
            if problem and not self.stats.state.startswith("database"):
                if not self.stats.state.startswith("broker"):
                    log.warning("broker_unreachable", state=problem)
                self._set_state(problem)

    def run(self) -> None:
        consumer = make_consumer(self.cfg, [self.cfg.predictions_topic, self.cfg.labels_topic])
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-writer")
        watch_done = threading.Event()
        watchdog = threading.Thread(
            target=self._watch, args=(consumer, watch_done), name="ingest-watch", daemon=True
        )
        watchdog.start()
        in_flight: InFlight | None = None
        self._set_state("joining group")
        log.info(
            "ingest_started",
            topics=[self.cfg.predictions_topic, self.cfg.labels_topic],
            group=self.cfg.group_id,
        )
        try:
            while not self.stop_event.is_set():
                batch, bad = self._poll(consumer)
                ready = self._prepare(batch, bad)  # decoding overlaps the write in flight
                if in_flight is not None and (ready is not None or in_flight.future.done()):
                    written, in_flight = self._finish(consumer, in_flight), None
                    if not written:
                        break  # stopping while the database is down: nothing more is committed
                if ready is not None:
                    if self.stats.first_batch_at is None:
                        self.stats.first_batch_at = time.monotonic()
                    parsed, offsets, count = ready
                    in_flight = InFlight(
                        writer.submit(self.store.store, parsed),
                        offsets,
                        count,
                        sum(1 for i in parsed.items if i.kind == "label"),
                        bad,
                    )
            if in_flight is not None:  # graceful stop: finish the batch in hand, commit
                self._finish(consumer, in_flight)
        finally:
            watch_done.set()
            watchdog.join()
            writer.shutdown(wait=True)
            consumer.close(autocommit=False)
            self.stats.state = "stopped"
            log.info("ingest_stopped", **self._totals())

    def _prepare(self, batch: dict, bad: UndecodableBatch | None) -> Ready | None:
        """What to write for this poll, if anything."""
        if bad is not None:
            return undecodable_batch(bad)
        records = [r for part in batch.values() for r in part]
        if not records:
            return None
        return split_batch(records, self.cfg), next_offsets(records), len(records)

    def _poll(self, consumer: KafkaConsumer) -> tuple[dict, UndecodableBatch | None]:
        """One poll. A batch the client cannot decode comes back as (nothing, None) while it is
        re-fetched, then as its offset range; any other error propagates (broker problems)."""
        try:
            batch = consumer.poll(
                timeout_ms=self.cfg.poll_timeout_ms, max_records=self.cfg.max_poll_records
            )
        except Exception as exc:
            located = locate(exc, consumer)
            if located is None:
                raise
            return {}, self.guard.decide(consumer, located)
        self._observe(consumer, batch)
        if batch:
            self.guard.progressed(batch)
        return batch, None

    def _finish(self, consumer: KafkaConsumer, batch: InFlight) -> bool:
        """Wait for the batch being written, then commit its offsets. False: it was abandoned."""
        counts: BatchCounts | None = batch.future.result()
        if counts is None:
            return False
        self._account(batch.records, counts, batch.labels)
        if batch.undecodable is not None:
            self._undecodable_stored(batch.undecodable)
        try:
            consumer.commit(batch.offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except KafkaError as exc:  # a rebalance or an outage: the records come again, harmlessly
            self.stats.commit_failures += 1
            log.warning("commit_failed", error=repr(exc), partitions=len(batch.offsets))
        return True

    def _undecodable_stored(self, bad: UndecodableBatch) -> None:
        """The range is a dead letter now: count it and let the daemon alert."""
        self.stats.undecodable_batches += 1
        self.stats.last_undecodable = f"{bad.where}: {bad.error}"
        if self.on_undecodable is not None:
            try:
                self.on_undecodable(bad)
            except Exception:  # noqa: BLE001 - an alert problem must not stop the intake
                log.exception("undecodable_alert_failed", where=bad.where)

    def _observe(self, consumer: KafkaConsumer, batch) -> None:
        """Track broker reachability, assignment and lag without extra requests."""
        for tp, records in batch.items():
            self._positions[tp] = records[-1].offset + 1
        problem = broker_problem(consumer, self.cfg)
        if not self.stats.state.startswith("database"):  # a database outage is the one to show
            if problem and not self.stats.state.startswith("broker"):
                log.warning("broker_unreachable", state=problem)
            elif not problem and self.stats.state.startswith("broker"):
                log.info("broker_reachable_again")
            self._set_state(problem or "consuming")
        assigned = consumer.assignment()
        self.stats.partitions = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)
        lag, known = 0, False
        for tp in assigned:
            high = consumer.highwater(tp)
            pos = self._positions.get(tp)
            if high is not None and pos is not None:
                lag += max(0, high - pos)
                known = True
        self.stats.lag = lag if known else None

    def _account(self, consumed: int, counts: BatchCounts, labels: int) -> None:
        s = self.stats
        s.consumed += consumed
        s.predictions += counts.predictions
        s.labels += labels
        s.dead_letters += counts.dead_letters
        s.batches += 1
        s.last_batch_at = time.monotonic()
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

    def _totals(self) -> dict[str, int]:
        return {k: v for k, v in self.stats.__dict__.items() if isinstance(v, int)}
