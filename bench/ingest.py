"""Intake throughput: warden's intake (decode + validate + store + commit) against a bare
kafka-python consumer that only reads and json-decodes, on the same topic in the same run.

    python bench/ingest.py [--n 200000] [--pg postgresql://postgres@127.0.0.1:5432/test]

Prints records/s for each and the ratio intake/bare (target >= 0.6 on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.progress import Progress  # noqa: E402
from rich.table import Table  # noqa: E402

from storage.db import make_engine  # noqa: E402
from watcher.config import KafkaConfig  # noqa: E402
from watcher.intake.consumer import Ingestor  # noqa: E402
from watcher.kafka.broker import EmbeddedBroker
from watcher.kafka.clients import ensure_topics, make_consumer, make_producer  # noqa: E402
from watcher.kafka.wire import encode  # noqa: E402
from watcher.logs import configure  # noqa: E402

console = Console()


def message(rng: random.Random, i: int) -> bytes:
    """A realistic log line: 20 numeric + 2 categorical features, ~300 bytes."""
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


def produce(cfg: KafkaConfig, n: int) -> float:
    rng = random.Random(7)
    producer = make_producer(cfg, linger_ms=50, batch_size=1024 * 1024)
    sizes = 0
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("producing", total=n)
        for i in range(n):
            raw = message(rng, i)
            sizes += len(raw)
            producer.send(cfg.predictions_topic, raw)
            if i % 5000 == 0:
                bar.update(task, completed=i)
        producer.flush()
    producer.close()
    return sizes / n


def bare(cfg: KafkaConfig, n: int) -> float:
    """Read and json-decode only: the ceiling the Python client sets."""
    consumer = make_consumer(cfg, [cfg.predictions_topic], group_id=f"bare-{uuid.uuid4().hex}")
    seen, start = 0, None
    while seen < n:
        batch = consumer.poll(timeout_ms=500, max_records=cfg.max_poll_records)
        for records in batch.values():
            if start is None:
                start = time.perf_counter()
            for record in records:
                json.loads(record.value)
            seen += len(records)
    elapsed = time.perf_counter() - start
    consumer.close()
    return seen / elapsed


def intake(cfg: KafkaConfig, n: int, url: str) -> float:
    """warden's Ingestor, storing into `url`; timed from its first batch to the last commit."""
    engine = make_engine(url)
    group = cfg.model_copy(update={"group_id": f"intake-{uuid.uuid4().hex}"})
    stop = threading.Event()
    ingestor = Ingestor(group, engine, stop)
    thread = threading.Thread(target=ingestor.run)
    thread.start()
    while ingestor.stats.consumed < n:
        time.sleep(0.05)
        if not thread.is_alive():
            raise RuntimeError("intake stopped early")
    stats = ingestor.stats
    elapsed = stats.last_batch_at - stats.first_batch_at
    stop.set()
    thread.join()
    engine.dispose()
    if stats.predictions != n:
        raise RuntimeError(f"stored {stats.predictions} of {n}")
    return n / elapsed


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
    return f"{base}?options=-csearch_path%3D{schema}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--batch", type=int, default=2000, help="max_poll_records")
    args = parser.parse_args()
    configure(json_lines=False, level="WARNING")
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        tag = uuid.uuid4().hex[:6]
        cfg = KafkaConfig(
            bootstrap_servers=broker.bootstrap,
            predictions_topic=f"bench-{tag}",
            labels_topic=f"bench-labels-{tag}",
            max_poll_records=args.batch,
        )
        ensure_topics(cfg, [cfg.predictions_topic, cfg.labels_topic])
        size = produce(cfg, args.n)
        console.print(f"produced {args.n:,} messages, {size:.0f} bytes each on average")
        rows = [("bare consumer (read + json.loads)", bare(cfg, args.n))]
        rows.append(("warden intake → SQLite", intake(cfg, args.n, f"sqlite:///{tmp}/b.db")))
        pg = pg_schema_url(args.pg)
        if pg:
            rows.append(("warden intake → PostgreSQL", intake(cfg, args.n, pg)))
    table = Table(title=f"intake throughput, {args.n:,} messages")
    table.add_column("path")
    table.add_column("records/s", justify="right")
    table.add_column("ratio vs bare", justify="right")
    base = rows[0][1]
    for name, rate in rows:
        table.add_row(name, f"{rate:,.0f}", f"{rate / base:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
