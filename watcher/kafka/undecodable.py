"""Record batches kafka-python cannot decode: where they are, and how to get past them.

kafka-python raises a batch's decode error out of `consumer.poll()` (UnsupportedCodecError for
a codec whose library is missing or unknown, CorruptRecordError for a failed CRC or a broken
record, whatever lz4/zstd/snappy raise for garbage that passed the CRC) without saying which
partition or offsets it came from. It knows, though: the error is raised inside the fetcher's
`PartitionRecords._unpack_records` generator, whose frame holds the partition's records
(`self`) and the batch being read (`batch`). That frame survives in the traceback, deferred
re-raises included, so `locate` reads the partition, the fetch position and the batch's offset
range from it, and needs no second fetch.

Two details of kafka-python 3 shape the rest: after such an error the partition's buffered
records are a finished generator whose position still equals the consumer's, so the next
`poll()` would spin on it forever unless the consumer seeks elsewhere or the buffer is dropped
(`discard_buffered`, for a re-fetch); and `seek` to the same offset drops nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from kafka import KafkaConsumer
from kafka.consumer.fetcher import Fetcher
from kafka.errors import CorruptRecordError, UnsupportedCodecError
from kafka.structs import TopicPartition

CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
DECODE_ERRORS = (UnsupportedCodecError, CorruptRecordError)


@dataclass(frozen=True)
class UndecodableBatch:
    """Offsets first..last of one partition that this client cannot turn into records."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    error: str  # the exception, exactly as raised (repr)
    detail: str  # what the batch header says (codec, records, size), when it could be read

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def offsets(self) -> int:
        return self.last_offset - self.first_offset + 1

    @property
    def where(self) -> str:
        return f"{self.topic}:{self.partition} offsets {self.first_offset}-{self.last_offset}"

    def fields(self) -> dict[str, Any]:
        """Where and why, as the log line and the alert both carry it."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "offsets": self.offsets,
            "error": self.error,
            "detail": self.detail,
        }

    def dead_letter(self) -> dict[str, Any]:
        """The dead-letter row for the whole range; its fingerprint is the range itself, so
        the same range dead-lettered again after a restart is one row."""
        key = f"{self.topic}:{self.partition}:{self.first_offset}-{self.last_offset}:undecodable"
        return {
            "fingerprint": hashlib.sha256(key.encode()).hexdigest(),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.first_offset,
            "last_offset": self.last_offset,
            "reason": f"undecodable record batch ({self.offsets} offsets): {self.error}"[:1000],
            "payload": self.detail[:2000],
        }


def _frames(tb: TracebackType | None):
    while tb is not None:
        yield tb.tb_frame
        tb = tb.tb_next


def _unpack_frame(exc: BaseException) -> dict[str, Any] | None:
    """The locals of the fetcher frame that was decoding when `exc` was raised."""
    for frame in _frames(exc.__traceback__):
        if frame.f_code.co_name != "_unpack_records":
            continue
        local = frame.f_locals
        if isinstance(local.get("self"), Fetcher.PartitionRecords):
            return local
    return None


def _describe(batch: Any, size_hint: int | None) -> str:
    """The batch header in words (none of it needs the payload decoded)."""
    if batch is None:
        return "record batch header unreadable"
    parts = [f"magic={getattr(batch, 'magic', '?')}"]
    codec = getattr(batch, "compression_type", None)
    codec_name = CODEC_NAMES.get(codec) if isinstance(codec, int) else None
    parts.append(f"codec={codec_name or f'unknown ({codec})'}")
    for name in ("base_offset", "last_offset", "records_count"):
        try:
            parts.append(f"{name}={getattr(batch, name)}")
        except Exception:  # noqa: BLE001,S112 - a corrupt header may not answer every field
            continue
    if size_hint is not None:
        parts.append(f"bytes={size_hint}")
    return "record batch: " + " ".join(parts)


def _next_base_offset(records: Any) -> int | None:
    """The base offset of the batch after the failing one in the same fetch, if there is one:
    a bound on the range when the failing header itself may be corrupt."""
    nxt = getattr(records, "_next_slice", None)
    if nxt is None or len(nxt) < 8:
        return None
    return int.from_bytes(bytes(nxt[:8]), "big", signed=True)


def _crc_ok(batch: Any) -> bool:
    """Whether the header can be trusted: its CRC matches (or it was already checked, which
    is what a batch that got as far as decompressing means)."""
    try:
        return bool(batch.validate_crc())
    except AssertionError:  # kafka-python refuses once decompressed: checked before that
        return True


def _range(first: int, batch: Any, records: Any, highwater: int | None) -> int:
    """The last offset to skip: the batch's own last offset when its header is consistent with
    the fetch position, never past the next batch or the partition's end; else `first` alone
    (one offset at a time still makes progress, and never skips a readable message). A header
    whose CRC failed is believed only within such a bound."""
    try:
        base, last = int(batch.base_offset), int(batch.last_offset)
    except Exception:  # noqa: BLE001 - no batch (header unreadable) or legacy format
        return first
    if not base <= first <= last:
        return first
    bounds = []
    nxt = _next_base_offset(records)
    if nxt is not None and nxt > first:
        bounds.append(nxt - 1)
    if highwater is not None and highwater > first:
        bounds.append(highwater - 1)
    if not bounds and not _crc_ok(batch):
        return first
    return min([last, *bounds])


def locate(exc: BaseException, consumer: KafkaConsumer) -> UndecodableBatch | None:
    """Where the batch that raised `exc` out of `poll()` is; None when `exc` is not a decode
    error (a broker or network problem, which the caller retries like any other)."""
    local = _unpack_frame(exc)
    if local is None:
        return None
    part = local["self"]
    tp: TopicPartition = part.topic_partition
    first = int(part.next_fetch_offset)
    batch = local.get("batch")
    if batch is not None and getattr(batch, "last_offset", first) < first:
        batch = None  # the previous, finished batch: the next header failed to parse
    buffer = getattr(batch, "_buffer", None)
    highwater = consumer.highwater(tp) if tp in consumer.assignment() else None
    last = _range(first, batch, local.get("records"), highwater)
    return UndecodableBatch(
        topic=tp.topic,
        partition=tp.partition,
        first_offset=first,
        last_offset=last,
        error=repr(exc),
        detail=_describe(batch, len(buffer) if buffer is not None else None),
    )


def discard_buffered(consumer: KafkaConsumer, tp: TopicPartition) -> bool:
    """Drop the fetcher's buffered (failed) records of `tp`, so that the next poll fetches the
    same offsets again. False when this kafka-python keeps them elsewhere: then a re-fetch is
    not possible and the caller must seek past instead."""
    fetcher = getattr(consumer, "_fetcher", None)
    part = getattr(fetcher, "_next_partition_records", None)
    if part is None or getattr(part, "topic_partition", None) != tp:
        return False
    part.drain()
    return True


def skip_past(consumer: KafkaConsumer, bad: UndecodableBatch) -> None:
    """Continue after the range (a different offset, so the spinning buffer is dropped too)."""
    discard_buffered(consumer, bad.tp)
    if bad.tp in consumer.assignment():
        consumer.seek(bad.tp, bad.last_offset + 1)
