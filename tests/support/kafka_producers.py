"""Producers for the intake tests: librdkafka (confluent-kafka), the client most production
producers use, and a kafka-python producer that writes a damaged record batch on purpose.
Also the `warden run` subprocess helpers the codec tests share."""

from __future__ import annotations

import contextlib
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import Producer
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.record.util import calc_crc32c
from sqlalchemy import func, select

from storage.tables import DeadLetter, Prediction

CODECS = ("gzip", "snappy", "lz4", "zstd")
CRC_OFFSET, ATTRIBUTES_OFFSET = 17, 21  # in a record batch (v2) header


def librdkafka(bootstrap: str, codec: str = "none", **extra) -> Producer:
    """A confluent-kafka producer with large linger and batches (so batches hold many
    records, as in production), acks=1 (the embedded broker loses messages with acks=0)."""
    conf = {
        "bootstrap.servers": bootstrap,
        "compression.type": codec,
        "linger.ms": 100,
        "batch.size": 4 * 1024 * 1024,
        "batch.num.messages": 100_000,
        "message.max.bytes": 8 * 1024 * 1024,
        "acks": 1,
        "log_level": 3,
    }
    conf.update(extra)
    return Producer(conf)


def send(producer: Producer, topic: str, value: bytes, **kwargs) -> None:
    """produce(), waiting for room in librdkafka's queue instead of failing."""
    while True:
        try:
            producer.produce(topic, value=value, **kwargs)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.05)


def flush(producer: Producer) -> None:
    left = producer.flush(60)
    assert left == 0, f"{left} messages not delivered"


def _recrc(buf: bytearray) -> None:
    struct.pack_into(">I", buf, CRC_OFFSET, calc_crc32c(memoryview(buf)[ATTRIBUTES_OFFSET:]))


def _damage(buf: bytearray, how: str) -> None:
    """`crc`: a flipped byte (the CRC fails); `record`: the last record's header count made
    negative, CRC made to match (a corrupt batch that passes the CRC); `payload`: the
    compressed payload zeroed, CRC made to match (the codec itself fails)."""
    if how == "crc":
        buf[-3] ^= 0xFF
    elif how == "record":
        buf[-1] = 0x01  # the last record's header count, a zigzag varint: now -1
        _recrc(buf)
    elif how == "payload":
        buf[-40:-20] = b"\x00" * 20
        _recrc(buf)
    else:
        raise ValueError(how)


@contextlib.contextmanager
def damaged_batches(how: str) -> Iterator[None]:
    """Every record batch a kafka-python producer closes inside this block is damaged after
    it was built (the broker stores it as sent; the consumer under test is untouched)."""
    original = MemoryRecordsBuilder.close

    def close(self) -> None:
        closed = self._closed
        original(self)
        if not closed:
            _damage(self._buffer, how)

    MemoryRecordsBuilder.close = close
    try:
        yield
    finally:
        MemoryRecordsBuilder.close = original


def intake_config(folder: Path, kafka_cfg, db_url: str, extra: str = "") -> Path:
    """A config with no models: `warden run` as an intake only."""
    path = folder / "warden.toml"
    path.write_text(
        f"""
[kafka]
bootstrap_servers = "{kafka_cfg.bootstrap_servers}"
group_id = "{kafka_cfg.group_id}"
predictions_topic = "{kafka_cfg.predictions_topic}"
labels_topic = "{kafka_cfg.labels_topic}"
alerts_topic = "{kafka_cfg.alerts_topic}"

[storage]
url = "{db_url}"
registry = "registry"
reports = "reports"

[http]
port = 0
{extra}
"""
    )
    return path


def start_warden(config: Path, log: Path, *, hide: tuple[str, ...] = ()) -> subprocess.Popen:
    """`warden run` in its own process. `hide`: modules made unimportable first, as on a
    machine where that library is not installed (kafka-python then lacks the codec)."""
    code = (
        "import sys\n"
        f"for name in {list(hide)!r}:\n"
        "    sys.modules[name] = None\n"
        "from watcher.cli import app\n"
        f"app(['run', '--config', {str(config)!r}])\n"
    )
    out = log.open("ab")
    return subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT)


def stored_counts(engine) -> tuple[int, int, int, int]:
    """(predictions, distinct prediction ids, dead-letter rows, dead-lettered offsets)."""
    offsets = func.coalesce(DeadLetter.last_offset, DeadLetter.offset) - DeadLetter.offset + 1
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(Prediction)).scalar_one(),
            conn.execute(select(func.count(func.distinct(Prediction.prediction_id)))).scalar_one(),
            conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one(),
            int(conn.execute(select(func.coalesce(func.sum(offsets), 0))).scalar_one()),
        )
