"""Intake throughput: warden's intake (decode + validate + store + commit) against a bare
kafka-python consumer that only reads and json-decodes, on the same topic in the same run,
for several producers, and on a hostile mix.

    python bench/ingest.py [--n 100000] [--pg URL|none] [--batch 2000] [--repeat 3]
                           [--big-bytes 3500000] [--variants kafka-python librdkafka-lz4 ...]

Clean variants (the same N good prediction logs each, one topic per variant):
  kafka-python     KafkaProducer, uncompressed (linger 50 ms, 1 MB batches)
  librdkafka-lz4   confluent-kafka Producer, compression.type=lz4 (linger 50 ms, 1 MB batches)
  librdkafka-zstd  the same with zstd
Hostile mix (librdkafka lz4): the same N good messages with bad ones among them, 10 % of all
messages bad, of which 1 % are over `kafka.max_message_bytes` (--big-bytes of random base64).

Prints a table (median of --repeat runs, records consumed per second) and the lines
`ratio intake/bare <variant>: X` per clean variant and `ratio hostile/clean: Y` (the intake's
rate on the hostile mix over its rate on the librdkafka-lz4 topic, the same good messages).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from storage.db import make_engine  # noqa: E402
from watcher.config import KafkaConfig  # noqa: E402
from watcher.intake.consumer import Ingestor  # noqa: E402
from watcher.kafka.broker import EmbeddedBroker  # noqa: E402
from watcher.kafka.clients import ensure_topics, make_consumer, make_producer  # noqa: E402
from watcher.kafka.wire import encode  # noqa: E402
from watcher.logs import configure  # noqa: E402

console = Console()
CLEAN = ("kafka-python", "librdkafka-lz4", "librdkafka-zstd")
HOSTILE = "hostile"
BAD_SHARE, OVERSIZE_SHARE_OF_BAD = 0.10, 0.01


def message(rng: random.Random, i: int) -> bytes:
    """A realistic log line: 20 numeric + 2 categorical features, ~390 bytes."""
    features = {f"f{j}": round(rng.gauss(0, 1), 2) for j in range(20)}
    features["plan"] = rng.choice(["basic", "pro", "team"])
    features["region"] = rng.choice(["eu", "us", "apac"])
    return encode(
        {
            "prediction_id": f"{i:012x}",
            "model": "bench",
            "model_version": "v1",
            "ts": "2026-11-25T12:00:00Z",
            "features": features,
            "prediction": rng.randint(0, 1),
            "scores": [0.3, 0.7],
        }
    )


def bad_messages(count: int, big_bytes: int, rng: random.Random) -> list[bytes]:
    """Small bad ones of several kinds; every 100th is oversize (random, so lz4 cannot shrink
    it: the bytes really travel)."""
    blob = b'{"blob":"' + base64.b64encode(rng.randbytes(big_bytes * 3 // 4)) + b'"}'
    kinds = [
        b"{truncated",
        b'{"prediction_id":"x"}',
        b'{"prediction_id":"n","model":"m","model_version":"v","ts":"2026-01-01T00:00:00Z",'
        b'"features":{"a":NaN},"prediction":1}',
        b"\xff\xfe not utf-8",
        b"[1,2,3]",
    ]
    every = round(1 / OVERSIZE_SHARE_OF_BAD)
    return [blob if i % every == every - 1 else kinds[i % len(kinds)] for i in range(count)]


def streams(n: int, big_bytes: int) -> tuple[list[bytes], list[bytes], int, int]:
    """(good, hostile, bad count, oversize count): hostile = good with bad ones interleaved."""
    rng = random.Random(7)
    good = [message(rng, i) for i in range(n)]
    n_bad = round(n * BAD_SHARE / (1 - BAD_SHARE))
    bad = bad_messages(n_bad, big_bytes, rng)
    hostile: list[bytes] = []
    step = n / max(n_bad, 1)
    nxt = 0.0
    for i, raw in enumerate(good):
        hostile.append(raw)
        while bad and i >= nxt:
            hostile.append(bad.pop())
            nxt += step
    hostile.extend(bad)
    oversize = sum(1 for m in hostile if len(m) > big_bytes // 2)
    return good, hostile, n_bad, oversize


def produce(cfg: KafkaConfig, topic: str, variant: str, messages: list[bytes]) -> None:
    if variant == "kafka-python":
        producer = make_producer(cfg, linger_ms=50, batch_size=1024 * 1024)
        for raw in messages:
            producer.send(topic, raw)
        producer.flush()
        producer.close()
        return
    from confluent_kafka import Producer

    codec = variant.rsplit("-", 1)[-1]
    producer = Producer(
        {
            "bootstrap.servers": cfg.bootstrap_servers,
            "compression.type": codec,
            "linger.ms": 50,
            "batch.size": 1024 * 1024,
            "message.max.bytes": 16 * 1024 * 1024,
            "acks": 1,  # the embedded broker loses messages with acks=0
        }
    )
    for raw in messages:
        while True:
            try:
                producer.produce(topic, value=raw)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError(f"{variant}: messages left unsent")


def bare(cfg: KafkaConfig, topic: str, total: int) -> float:
    """Read and json-decode only (what fits the size limit): the ceiling the client sets."""
    consumer = make_consumer(cfg, [topic], group_id=f"bare-{uuid.uuid4().hex}")
    seen, start = 0, None
    while seen < total:
        batch = consumer.poll(timeout_ms=500, max_records=cfg.max_poll_records)
        for records in batch.values():
            if start is None:
                start = time.perf_counter()
            for record in records:
                if len(record.value) <= cfg.max_message_bytes:
                    try:  # noqa: SIM105 - contextlib.suppress costs more in this loop
                        json.loads(record.value)
                    except ValueError:
                        pass
            seen += len(records)
    elapsed = time.perf_counter() - start
    consumer.close()
    return seen / elapsed


def intake(cfg: KafkaConfig, topic: str, total: int, good: int, url: str) -> float:
    """warden's Ingestor into a fresh store; records consumed per second, from its first
    batch to the last stored one."""
    engine = make_engine(url)
    group = cfg.model_copy(
        update={"group_id": f"intake-{uuid.uuid4().hex}", "predictions_topic": topic}
    )
    stop = threading.Event()
    ingestor = Ingestor(group, engine, stop)
    thread = threading.Thread(target=ingestor.run)
    thread.start()
    while ingestor.stats.consumed < total:
        time.sleep(0.05)
        if not thread.is_alive():
            raise RuntimeError("intake stopped early")
    stats = ingestor.stats
    elapsed = stats.last_batch_at - stats.first_batch_at
    stop.set()
    thread.join()
    engine.dispose()
    if stats.predictions != good or stats.consumed != total:
        raise RuntimeError(f"stored {stats.predictions} of {good}, consumed {stats.consumed}")
    if stats.dead_letters != total - good:
        raise RuntimeError(f"dead letters {stats.dead_letters}, expected {total - good}")
    return total / elapsed


CREATED: list[str] = []  # PostgreSQL schemas this run made, dropped at its end


def pg_schema_url(base: str) -> str | None:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        engine = sa.create_engine(base, connect_args={"connect_timeout": 3})
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        console.print(f"[yellow]PostgreSQL skipped: {exc}")
        return None
    CREATED.append(schema)
    return f"{base}?options=-csearch_path%3D{schema}"


def drop_schemas(base: str) -> None:
    import sqlalchemy as sa

    if not CREATED:
        return
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        for schema in CREATED:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def stores(args, tmp: str) -> dict[str, callable]:
    """Fresh store factories: every intake run starts empty (else nothing would be new)."""
    found = {"SQLite": lambda: f"sqlite:///{tmp}/{uuid.uuid4().hex}.db"}
    first = pg_schema_url(args.pg) if args.pg != "none" else None
    if first is not None:
        unused = [first]
        found["PostgreSQL"] = lambda: unused.pop() if unused else pg_schema_url(args.pg)
    return found


def measure(args, cfg: KafkaConfig, tmp: str) -> dict[tuple[str, str], list[float]]:
    good, hostile, n_bad, oversize = streams(args.n, args.big_bytes)
    console.print(
        f"{args.n:,} good messages (~{sum(map(len, good)) / len(good):.0f} bytes); hostile mix: "
        f"+{n_bad:,} bad ({n_bad / len(hostile):.1%} of all), {oversize} of them "
        f"{args.big_bytes / 1e6:.1f} MB (limit {cfg.max_message_bytes / 1e6:.1f} MB)"
    )
    topics = {}
    for variant in args.variants:
        topic = f"bench-{uuid.uuid4().hex[:6]}-{variant}"
        ensure_topics(cfg, [topic])
        data = hostile if variant == HOSTILE else good
        produce(cfg, topic, "librdkafka-lz4" if variant == HOSTILE else variant, data)
        topics[variant] = (topic, len(data))
    found = stores(args, tmp)
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):  # interleaved, so a busy moment hits every path alike
        for variant, (topic, total) in topics.items():
            rates.setdefault((variant, "bare"), []).append(bare(cfg, topic, total))
            for store, url in found.items():
                if variant == HOSTILE and store != "SQLite" and not args.hostile_pg:
                    continue
                rate = intake(cfg, topic, total, args.n, url())
                rates.setdefault((variant, store), []).append(rate)
    return rates


def report(rates: dict[tuple[str, str], list[float]], args) -> None:
    table = Table(title=f"intake throughput, {args.n:,} good messages, median of {args.repeat}")
    for column in ("producer", "path", "records/s", "ratio vs bare"):
        table.add_column(column, justify="right" if column != "path" else "left")
    median = {key: statistics.median(values) for key, values in rates.items()}
    for (variant, path), rate in median.items():
        base = median[(variant, "bare")]
        label = "bare consumer (read + json.loads)" if path == "bare" else f"warden intake → {path}"
        table.add_row(variant, label, f"{rate:,.0f}", f"{rate / base:.2f}")
    console.print(table)
    for variant in args.variants:
        if variant == HOSTILE:
            continue
        for store in ("SQLite", "PostgreSQL"):
            if (variant, store) in median:
                tail = "" if store == "SQLite" else f" ({store})"
                ratio = median[(variant, store)] / median[(variant, "bare")]
                print(f"ratio intake/bare {variant}{tail}: {ratio:.2f}")
    if (HOSTILE, "SQLite") in median and ("librdkafka-lz4", "SQLite") in median:
        ratio = median[(HOSTILE, "SQLite")] / median[("librdkafka-lz4", "SQLite")]
        print(f"ratio hostile/clean: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="good messages per variant")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch", type=int, default=2000, help="max_poll_records")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big-bytes", type=int, default=3_500_000)
    parser.add_argument("--hostile-pg", action="store_true", help="hostile mix into PostgreSQL")
    parser.add_argument("--variants", nargs="+", default=[*CLEAN, HOSTILE])
    args = parser.parse_args()
    configure(json_lines=False, level="ERROR")
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        tag = uuid.uuid4().hex[:6]
        cfg = KafkaConfig(
            bootstrap_servers=broker.bootstrap,
            predictions_topic=f"bench-{tag}",
            labels_topic=f"bench-labels-{tag}",
            max_poll_records=args.batch,
        )
        ensure_topics(cfg, [cfg.labels_topic])
        try:
            rates = measure(args, cfg, tmp)
        finally:
            drop_schemas(args.pg)
    report(rates, args)


if __name__ == "__main__":
    main()
