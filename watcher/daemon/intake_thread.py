"""The intake's thread: keeps the Kafka consumer loop alive across broker outages."""

from __future__ import annotations

import threading

import structlog
from kafka.errors import KafkaError

from watcher.intake.consumer import Ingestor

log = structlog.get_logger("warden.daemon")


class IntakeThread:
    """Runs `Ingestor.run` in a thread; restarts it with backoff when the broker fails."""

    def __init__(self, ingestor: Ingestor, stop_event: threading.Event) -> None:
        self.ingestor = ingestor
        self.stop_event = stop_event
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._forever, name="ingest", daemon=True)
        self.thread.start()

    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def join(self, timeout_s: float = 60) -> None:
        if self.thread is not None:
            self.thread.join(timeout=timeout_s)

    def _forever(self) -> None:
        delay = 0.5
        while not self.stop_event.is_set():
            try:
                self.ingestor.run()
                return
            except (KafkaError, OSError) as exc:
                self.ingestor.stats.state = f"broker unavailable: {exc!r}"
                log.error("ingest_broker_error", error=repr(exc), retry_in_s=delay)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30)
