"""One poll's records in the form that crosses to the intake's writer process, and their
decoding there.

The consumer's process only copies each record's offset and value into plain lists (they
pickle at memcpy speed); decoding and validation happen in the writer process, off the GIL of
the Kafka client's threads. Payloads over `kafka.max_message_bytes` never cross: the consumer
dead-letters them on the spot (length check, fingerprint, truncated copy), so a batch of
multi-megabyte garbage costs the pipe nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from watcher.intake.batch_store import Item, Parsed
from watcher.kafka.wire import (
    PAYLOAD_KEEP,
    BadMessage,
    dead_letter,
    oversize_reason,
    parse_label,
    parse_prediction,
)

log = structlog.get_logger("warden.ingest")


@dataclass
class Partition:
    """The records of one partition in one poll, in offset order."""

    topic: str
    partition: int
    offsets: list[int]
    values: list[bytes | None]


@dataclass
class RawBatch:
    """What the writer process receives: raw records, and rows the consumer built already
    (oversized payloads' dead letters, an undecodable range)."""

    partitions: list[Partition] = field(default_factory=list)
    ready: list[Item] = field(default_factory=list)


def pack(batch: Mapping[object, Sequence], max_bytes: int) -> RawBatch:
    """A poll's `{TopicPartition: [ConsumerRecord, ...]}` as a RawBatch; cheap on purpose (this
    runs in the consumer's process, between polls)."""
    raw = RawBatch()
    for records in batch.values():
        if not records:
            continue
        first = records[0]
        topic, partition = first.topic, first.partition
        offsets = [r.offset for r in records]
        values = [r.value for r in records]
        big = [i for i, v in enumerate(values) if v is not None and len(v) > max_bytes]
        for i in reversed(big):
            value, offset = values.pop(i), offsets.pop(i)
            row = dead_letter(topic, partition, offset, oversize_reason(value, max_bytes), value)
            head = value[: PAYLOAD_KEEP * 4]  # all a dead letter keeps of it
            raw.ready.append(Item("dead", row, topic, partition, offset, head))
        raw.partitions.append(Partition(topic, partition, offsets, values))
    return raw


def decode(raw: RawBatch, labels_topic: str, max_bytes: int) -> Parsed:
    """Decode and validate every record once; bad ones become dead-letter rows, never raise."""
    parsed = Parsed(list(raw.ready))
    append = parsed.items.append
    for part in raw.partitions:
        topic, partition = part.topic, part.partition
        kind, parse = (
            ("label", parse_label) if topic == labels_topic else ("prediction", parse_prediction)
        )
        for offset, value in zip(part.offsets, part.values, strict=True):
            try:
                append(Item(kind, parse(value, max_bytes), topic, partition, offset, value))
            except BadMessage as exc:
                row = dead_letter(topic, partition, offset, str(exc), value)
                append(Item("dead", row, topic, partition, offset, value))
            except Exception as exc:  # a decoder bug must not block the partition either
                log.error("decoder_error", topic=topic, partition=partition, offset=offset)
                reason = f"unexpected decoding error: {exc!r}"
                row = dead_letter(topic, partition, offset, reason, value)
                append(Item("dead", row, topic, partition, offset, value))
    return parsed
