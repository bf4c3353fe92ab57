"""What the intake does with a record batch the Kafka client cannot decode: re-fetch it a few
times (a transient corruption may not come back), then dead-letter its offset range and seek
past it, so that one such batch never blocks its partition.

Before this, an unknown codec or a failed CRC escaped `poll()`, the daemon called it a broker
error, rebuilt the consumer, read the same batch from the committed offset and failed again:
forever, with nothing behind that batch ever read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from watcher.kafka.undecodable import UndecodableBatch, discard_buffered, skip_past

log = structlog.get_logger("warden.ingest")
RETRY_WAIT_S = 0.05  # doubled on each re-fetch of the same batch
MAX_TRACKED = 1024


class UndecodableGuard:
    """Counts re-fetches per (partition, offset) and decides when to give up on a batch."""

    def __init__(
        self,
        retries: int,
        on_state: Callable[[str], None],
        wait: Callable[[float], object],
    ) -> None:
        """`wait(seconds)` pauses between re-fetches and returns early on shutdown."""
        self.retries = retries
        self.on_state = on_state
        self.wait = wait
        self._tries: dict[tuple[TopicPartition, int], int] = {}

    def decide(self, consumer: KafkaConsumer, bad: UndecodableBatch) -> UndecodableBatch | None:
        """None: the batch will be fetched again. Otherwise the range to dead-letter; the
        consumer is already positioned after it."""
        key = (bad.tp, bad.first_offset)
        tries = self._tries.get(key, 0)
        if tries < self.retries and discard_buffered(consumer, bad.tp):
            if len(self._tries) >= MAX_TRACKED:
                self._tries.clear()
            self._tries[key] = tries + 1
            log.warning(
                "undecodable_batch_retry",
                topic=bad.topic,
                partition=bad.partition,
                first_offset=bad.first_offset,
                last_offset=bad.last_offset,
                error=bad.error,
                attempt=tries + 1,
                of=self.retries,
            )
            self.on_state(
                f"undecodable batch at {bad.where}: {bad.error}; "
                f"re-fetching ({tries + 1}/{self.retries})"
            )
            self.wait(RETRY_WAIT_S * 2**tries)
            return None
        self._tries.pop(key, None)
        skip_past(consumer, bad)
        log.error(
            "undecodable_batch",
            **bad.fields(),
            retries=tries,
            action="offsets dead-lettered as one range; consuming after it",
        )
        self.on_state(f"undecodable batch at {bad.where}: {bad.error}; dead-lettered, continuing")
        return bad

    def progressed(self, partitions: Iterable[TopicPartition]) -> None:
        """Records came from these partitions: whatever failed there was read on a re-fetch."""
        if self._tries:
            done = set(partitions)
            for key in [k for k in self._tries if k[0] in done]:
                del self._tries[key]
