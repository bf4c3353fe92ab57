"""The intake loop: poll a batch, hand it to the writer process, commit its offsets once the
writer says it is stored.

The consumer's process only polls and packs raw records (`watcher.intake.raw_batch`); a
writer process decodes, validates and stores them (`watcher.intake.writer_main`), at most
MAX_IN_FLIGHT batches behind the poll. Offsets are committed in order and only for batches
whose transaction has committed: at-least-once, and storage is idempotent by prediction_id.
A record batch the client cannot decode travels the same way, as one dead-letter row for its
offset range (`watcher.intake.undecodable`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy import Engine

from storage.intake import BatchCounts
from watcher.config import KafkaConfig
from watcher.intake.batch_store import Item
from watcher.intake.raw_batch import RawBatch, pack
from watcher.intake.undecodable import UndecodableGuard
from watcher.intake.writer import Outcome, WriterProcess, writer_spec
from watcher.kafka.clients import make_consumer
from watcher.kafka.undecodable import UndecodableBatch, locate

log = structlog.get_logger("warden.ingest")
COMMIT_TIMEOUT_MS = 10_000
WATCH_INTERVAL_S = 0.5
SILENT_HEARTBEATS = 3  # unanswered heartbeat intervals before the broker counts as unreachable
MAX_IN_FLIGHT = 2  # batches handed to the writer and not yet answered


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


def next_offsets(batch: dict) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit once a poll's records are stored: last offset + 1 per partition
    (a partition's records come in offset order)."""
    return {
        tp: OffsetAndMetadata(records[-1].offset + 1, "", -1)
        for tp, records in batch.items()
        if records
    }


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
    # heartbeats flow only once the group is joined
    if coordinator is None or heartbeat is None or not coordinator.stable():
        return None
    silent_s = time.monotonic() - max(heartbeat.last_receive, heartbeat.last_reset)
    if silent_s > SILENT_HEARTBEATS * cfg.heartbeat_interval_ms / 1000:
        return f"broker unreachable: no answer for {silent_s:.0f} s; retrying"
    return None


@dataclass
class InFlight:
    """A batch handed to the writer: what to commit and count once it is stored."""

    seq: int
    offsets: dict[TopicPartition, OffsetAndMetadata]
    records: int
    undecodable: UndecodableBatch | None = None


Ready = tuple[RawBatch, dict[TopicPartition, OffsetAndMetadata], int]  # rows, commit, consumed


def undecodable_batch(bad: UndecodableBatch) -> Ready:
    """A dead-lettered range as a batch: one row, the offset after it to commit, and its
    offsets counted as consumed (so consumed = stored + dead-lettered still holds)."""
    item = Item("dead", bad.dead_letter(), bad.topic, bad.partition, bad.first_offset, None)
    commit = {bad.tp: OffsetAndMetadata(bad.last_offset + 1, "", -1)}
    return RawBatch(ready=[item]), commit, bad.offsets


class Ingestor:
    """Runs in its own thread; `stop` finishes the batches in hand, commits and returns."""

    def __init__(
        self,
        cfg: KafkaConfig,
        engine: Engine,
        stop: threading.Event,
        on_undecodable: Callable[[UndecodableBatch], None] | None = None,
    ) -> None:
        """`on_undecodable` is called once a range is stored as a dead letter (the daemon's
        intake thread sends the alert from it). The writer process opens its own engine on
        `engine`'s URL."""
        self.cfg, self.engine, self.stop_event = cfg, engine, stop
        self.on_undecodable = on_undecodable
        self.stats = IngestStats()
        self.guard = UndecodableGuard(cfg.undecodable_retries, self._set_state, stop.wait)
        self._positions: dict[TopicPartition, int] = {}
        self._seq = 0
        self.writer_pid: int | None = None  # the current writer process, for logs and tests

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
        spec = writer_spec(self.engine, self.cfg.labels_topic, self.cfg.max_message_bytes)
        writer = WriterProcess(spec, self._set_state, self.stop_event)  # starts while we join
        self.writer_pid = writer.process.pid
        in_flight: deque[InFlight] = deque()
        try:
            consumer = make_consumer(self.cfg, [self.cfg.predictions_topic, self.cfg.labels_topic])
        except BaseException:
            writer.close(finish=False)
            raise
        watch_done = threading.Event()
        watchdog = threading.Thread(
            target=self._watch, args=(consumer, watch_done), name="ingest-watch", daemon=True
        )
        watchdog.start()
        self._set_state("joining group")
        log.info(
            "ingest_started",
            topics=[self.cfg.predictions_topic, self.cfg.labels_topic],
            group=self.cfg.group_id,
            writer_pid=writer.process.pid,
        )
        try:
            writer.wait_ready()
            stored = True
            while stored and not self.stop_event.is_set():
                batch, bad = self._poll(consumer)
                ready = self._prepare(batch, bad)
                full = ready is not None and len(in_flight) >= MAX_IN_FLIGHT
                stored = self._finish_answered(consumer, writer, in_flight, block=full)
                writer.ensure_alive()  # after its last answers are counted and committed
                if stored and ready is not None:
                    self._submit(writer, in_flight, ready, bad)
            while stored and in_flight:  # graceful stop: finish the batches in hand, commit
                stored = self._finish_answered(consumer, writer, in_flight, block=True)
        finally:
            watch_done.set()
            watchdog.join()
            writer.close(finish=not in_flight)
            consumer.close(autocommit=False)
            self.stats.state = "stopped"
            log.info("ingest_stopped", **self._totals())

    def _submit(
        self,
        writer: WriterProcess,
        in_flight: deque[InFlight],
        ready: Ready,
        bad: UndecodableBatch | None,
    ) -> None:
        if self.stats.first_batch_at is None:
            self.stats.first_batch_at = time.monotonic()
        raw, offsets, count = ready
        self._seq += 1
        writer.submit(self._seq, raw)
        in_flight.append(InFlight(self._seq, offsets, count, bad))

    def _finish_answered(
        self,
        consumer: KafkaConsumer,
        writer: WriterProcess,
        in_flight: deque[InFlight],
        *,
        block: bool,
    ) -> bool:
        """Commit every batch the writer has answered for (waiting for the oldest when
        `block`). False: a batch was abandoned (stopping while the database is down); nothing
        after it may be committed either."""
        while in_flight:
            outcome = writer.next_outcome(block=block)
            if outcome is None:
                return True
            block = False
            if not self._finish(consumer, in_flight.popleft(), outcome):
                return False
        return True

    def _prepare(self, batch: dict, bad: UndecodableBatch | None) -> Ready | None:
        """What to write for this poll, if anything."""
        if bad is not None:
            return undecodable_batch(bad)
        if not batch:
            return None
        count = sum(len(records) for records in batch.values())
        if not count:
            return None
        return pack(batch, self.cfg.max_message_bytes), next_offsets(batch), count

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

    def _finish(self, consumer: KafkaConsumer, batch: InFlight, outcome: Outcome) -> bool:
        """Count the stored batch and commit its offsets. False: it was abandoned."""
        if outcome.seq != batch.seq:  # the writer answers in order; anything else is a bug
            raise RuntimeError(f"intake writer answered batch {outcome.seq}, not {batch.seq}")
        if outcome.counts is None:
            return False
        self._account(batch.records, outcome.counts, outcome.labels)
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
