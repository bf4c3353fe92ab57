"""The intake's thread: keeps the Kafka consumer loop alive across broker outages, and alerts
when a record batch could not be decoded and was dead-lettered."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from kafka.errors import KafkaError

from watcher.alerts.message import build_alert
from watcher.intake.consumer import Ingestor
from watcher.intake.writer import WriterGone
from watcher.kafka.undecodable import DECODE_ERRORS, UndecodableBatch

log = structlog.get_logger("warden.daemon")
ALERT_MODEL = "(intake)"  # the alert is about a topic, not one model


def undecodable_alert(bad: UndecodableBatch) -> dict:
    """What an operator needs: where, how many offsets, the exact error, what to do."""
    return build_alert(
        "undecodable_batch",
        ALERT_MODEL,
        severity="high",
        **bad.fields(),
        summary=f"record batch at {bad.where} could not be decoded ({bad.error}); its "
        f"{bad.offsets} offset(s) were dead-lettered and skipped",
        next_action="check `warden config check` for the codecs this install reads, or the "
        "producer writing this topic; the range is in the dead_letters table",
    )


class IntakeThread:
    """Runs `Ingestor.run` in a thread; restarts it with backoff when the broker fails.

    `alert` (the daemon's `send_alert`) receives an alert for every dead-lettered
    undecodable batch; without it, the log line is all there is."""

    def __init__(
        self,
        ingestor: Ingestor,
        stop_event: threading.Event,
        alert: Callable[[dict], None] | None = None,
    ) -> None:
        self.ingestor = ingestor
        self.stop_event = stop_event
        self.alert = alert
        self.thread: threading.Thread | None = None
        ingestor.on_undecodable = self._undecodable

    def start(self) -> None:
        self.thread = threading.Thread(target=self._forever, name="ingest", daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def join(self, timeout_s: float = 60) -> None:
        if self.thread is not None:
            self.thread.join(timeout=timeout_s)

    def _undecodable(self, bad: UndecodableBatch) -> None:
        if self.alert is None:
            return
        try:
            self.alert(undecodable_alert(bad))
        except RuntimeError as exc:  # the notifier is already shut down (stopping)
            log.warning("undecodable_alert_not_sent", where=bad.where, error=repr(exc))

    def _forever(self) -> None:
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                self.ingestor.run()
                return
            except DECODE_ERRORS as exc:  # one the intake could not place (none expected)
                self.ingestor.stats.state = f"undecodable batch: {exc!r}; retrying"
                log.error("ingest_undecodable_error", error=repr(exc), retry_in_s=delay)
            except WriterGone as exc:  # killed or out of memory: uncommitted batches come again
                self.ingestor.stats.state = f"intake writer process lost: {exc}; restarting"
                log.error("ingest_writer_lost", error=str(exc), retry_in_s=delay)
            except (KafkaError, OSError) as exc:
                self.ingestor.stats.state = f"broker unavailable: {exc!r}"
                log.error("ingest_broker_error", error=repr(exc), retry_in_s=delay)
            self.stop_event.wait(delay)
            delay = min(delay * 2, 30)
