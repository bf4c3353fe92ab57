"""The intake at scale and under abuse, with real parts only (embedded broker, SQLite and
PostgreSQL): a seeded fuzz of bad messages among good ones, rows the database itself refuses,
two intakes sharing one consumer group, and the leases that several daemons share."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from sqlalchemy import func, select, text

from storage import leases
from storage.db import make_engine
from storage.tables import DeadLetter, Prediction
from watcher.daemon.service import wait_for
from watcher.intake.consumer import Ingestor
from watcher.kafka.clients import make_producer
from watcher.kafka.wire import PAYLOAD_KEEP, encode

SEED = 20260522
MAX_BYTES = 65_536  # the consumer's max_message_bytes in the fuzz test
N_GOOD, N_BAD = 3_000, 10_000
TIMESTAMPS = ["2026-11-22T20:00:00Z", "2026-11-22T22:00:00+02:00", "2026-11-22T20:00:00"]


# --------------------------------------------------------------------------- messages


def prediction(pid: str, rng: random.Random, **over) -> dict:
    msg = {
        "prediction_id": pid,
        "model": "m",
        "model_version": "v1",
        "ts": rng.choice(
            ["2026-11-22T20:00:00Z", "2026-11-22T22:00:00+02:00", "2026-11-22T20:00:00"]
        ),
        "features": {
            "a": rng.uniform(-1e6, 1e6),
            "n": rng.randrange(-(10**9), 10**9),
            "s": rng.choice(["x", "é", "日本", "😀", ""]),
            "b": rng.random() < 0.5,
            "z": None,
        },
        "prediction": rng.choice([0, 1, 2.5, "yes"]),
        "scores": rng.choice([None, [rng.random(), rng.random()]]),
        "groups": rng.choice([None, {"sex": rng.choice("FM"), "age": rng.randrange(18, 90)}]),
        "label": rng.choice([None, 0, 1, "cat"]),
    }
    msg.update(over)
    return msg


def good_message(i: int, rng: random.Random) -> tuple[str, bytes]:
    """Valid, including the edges: 128-character ids, 256-character predictions, escaped
    surrogate pairs, extreme finite floats, timestamps without a zone."""
    pid = f"good-{i:05d}-{rng.getrandbits(32):08x}"
    over: dict = {}
    if i % 97 == 0:
        pid = pid.ljust(128, "x")
    if i % 89 == 0:
        over["prediction"] = "p" * 256
    if i % 83 == 0:
        over["features"] = {"big": 1.7976931348623157e308, "tiny": -5e-324, "neg0": -0.0}
    if i % 101 == 0:
        over["ts"] = rng.choice(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"])
    raw = encode(prediction(pid, rng, **over))
    if i % 79 == 0:  # a valid UTF-16 surrogate pair escape (U+1F600)
        raw = raw.replace(b'"model":"m"', b'"model":"m\\ud83d\\ude00"')
    return pid, raw


def _sentinel(rng: random.Random, marker: str) -> bytes:
    """A bad-looking prediction where `marker` sits inside one string of a known field."""
    where = rng.choice(["id", "model", "version", "feature_value", "feature_key", "prediction"])
    pid = f"bad-{rng.getrandbits(40):x}"
    msg = prediction(pid, rng)
    if where == "id":
        msg["prediction_id"] = f"a{marker}b"
    elif where == "model":
        msg["model"] = f"m{marker}"
    elif where == "version":
        msg["model_version"] = f"{marker}v"
    elif where == "feature_value":
        msg["features"]["s"] = f"x{marker}y"
    elif where == "feature_key":
        msg["features"][f"k{marker}"] = 1
    else:
        msg["prediction"] = f"yes{marker}"
    return encode(msg)


WRONG_TYPES = {
    "prediction_id": [123, 1.5, True, None, [], {}, ["a"]],
    "model": [7, None, False, {"a": 1}],
    "model_version": [1, None, [], 2.0],
    "ts": ["yesterday", 1_700_000_000, None, [], "2026-13-45T99:00:00Z", "", 1.5],
    "features": ["age=41", [1, 2], None, {"a": [1]}, {"a": {"b": 1}}, 5],
    "prediction": [None, [1], {"a": 1}, True],
    "scores": ["high", ["a"], {"x": 1}, [None], 0.5, [[0.1]]],
    "groups": ["F", [1], {"a": 1.5}, {"a": None}, {"a": [1]}, 3],
    "label": [[1], {"a": 1}, True],
}
REQUIRED = ["prediction_id", "model", "model_version", "ts", "features", "prediction"]
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"2E+400"]
SURROGATES = [b"\\ud800", b"\\udc00", b"\\udfff", b"\\ud800\\u0041", b"\\ud800x", b"\\udbff\\ud800"]
BAD_UTF8 = [b"\xff", b"\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xc3", b"\xe2\x82", b"\x80", b"\xf8"]


def bad_truncated(rng):
    _, raw = good_message(rng.randrange(10**6), rng)
    return raw[: rng.randrange(0, len(raw) - 1)]  # an empty value (b"") included


def bad_wrong_type(rng):
    name = rng.choice(sorted(WRONG_TYPES))
    value = rng.choice(WRONG_TYPES[name])
    return encode(prediction(f"bad-{rng.getrandbits(40):x}", rng, **{name: value}))


def bad_missing(rng):
    msg = prediction(f"bad-{rng.getrandbits(40):x}", rng)
    for name in rng.sample(REQUIRED, rng.randint(1, len(REQUIRED))):
        del msg[name]
    return encode(msg)


def bad_non_finite(rng):
    place = rng.choice(["feature", "prediction", "score", "label"])
    pid = f"bad-{rng.getrandbits(40):x}"
    over = {
        "feature": {"features": {"a": "__NF__"}},
        "prediction": {"prediction": "__NF__"},
        "score": {"scores": [0.5, "__NF__"]},
        "label": {"label": "__NF__"},
    }[place]
    return encode(prediction(pid, rng, **over)).replace(b'"__NF__"', rng.choice(NON_FINITE))


def bad_empty_id(rng):
    name = rng.choice(["prediction_id", "model", "model_version"])
    return encode(prediction(f"bad-{rng.getrandbits(40):x}", rng, **{name: ""}))


def bad_long_id(rng):
    name = rng.choice(["prediction_id", "model", "model_version"])
    value = "i" * rng.randint(129, 400)
    return encode(prediction(f"bad-{rng.getrandbits(40):x}", rng, **{name: value}))


def bad_long_text(rng):
    name = rng.choice(["prediction", "label"])
    value = rng.choice("pé日") * rng.randint(257, 1000)
    return encode(prediction(f"bad-{rng.getrandbits(40):x}", rng, **{name: value}))


def bad_top_level(rng):
    _, good = good_message(rng.randrange(10**6), rng)
    return rng.choice(
        [
            b"[1,2]",
            b"[]",
            b'"a string"',
            b"123",
            b"-1.5e3",
            b"null",
            b"true",
            b"[" + good + b"]",  # a good message wrapped in an array
            json.dumps(good.decode()).encode(),  # a good message JSON-encoded twice
            b"  \n\t ",
        ]
    )


def bad_nul(rng):
    return _sentinel(rng, "__NUL__").replace(b"__NUL__", b"\\u0000")


def bad_surrogate(rng):
    return _sentinel(rng, "__SUR__").replace(b"__SUR__", rng.choice(SURROGATES))


def bad_utf8(rng):
    """Invalid UTF-8 inside a known field's string, outside any string, or a Latin-1 producer."""
    how = rng.choice(["in_string", "outside", "latin1"])
    if how == "in_string":
        return _sentinel(rng, "__U8__").replace(b"__U8__", rng.choice(BAD_UTF8))
    if how == "outside":
        raw = encode(prediction(f"bad-{rng.getrandbits(40):x}", rng))
        return raw.replace(b",", b"," + rng.choice(BAD_UTF8), 1)
    msg = prediction(f"bad-{rng.getrandbits(40):x}", rng, prediction="café")
    return json.dumps(msg, ensure_ascii=False).encode("latin-1", errors="replace")


def bad_ts_range(rng):
    """Valid RFC 3339, but not a representable instant once converted to UTC."""
    ts = rng.choice(["9999-12-31T23:30:00-02:00", "0001-01-01T00:30:00+01:00"])
    return encode(prediction(f"bad-{rng.getrandbits(40):x}", rng, ts=ts))


def bad_junk(rng):
    return rng.randbytes(rng.randint(1, 300))


BAD_PREDICTIONS: dict[str, Callable[[random.Random], bytes]] = {
    "truncated": bad_truncated,
    "wrong_type": bad_wrong_type,
    "missing": bad_missing,
    "non_finite": bad_non_finite,
    "empty_id": bad_empty_id,
    "long_id": bad_long_id,
    "long_text": bad_long_text,
    "top_level": bad_top_level,
    "nul": bad_nul,
    "surrogate": bad_surrogate,
    "utf8": bad_utf8,
    "junk": bad_junk,
    "ts_range": bad_ts_range,
}

BAD_LABELS = [
    b'{"label": 1}',
    b'{"prediction_id": "x"}',
    b'{"prediction_id": "", "label": 1}',
    b'{"prediction_id": "x", "label": NaN}',
    b'{"prediction_id": "x", "label": 1e999}',
    b'{"prediction_id": "x", "label": [1]}',
    b'{"prediction_id": "x", "label": "' + b"l" * 300 + b'"}',
    b'{"prediction_id": "x\\u0000", "label": 1}',
    b'{"prediction_id": "x\\ud800", "label": 1}',
    b'{"prediction_id": "x\xff", "label": 1}',
    b'{"prediction_id": "x", "lab',
    b"[1]",
    b"\x00\x01\x02junk",
]

# What each category's dead-letter reason must mention (lower-cased), where it is certain.
REASON_HINTS = {
    "huge": "exceeds",
    "tombstone": "empty",
    "nul": "nul",
    "non_finite": "finite",
    "utf8": "utf-8",
    "empty_id": "length >= 1",
    "long_id": "length <= 128",
    "long_text": "length <= 256",
}


# --------------------------------------------------------------------------- plumbing


@dataclass
class Sent:
    """Where each produced message landed, and what it was."""

    good: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # pid -> coordinates
    bad: dict[tuple[str, int, int], str] = field(default_factory=dict)  # coordinates -> category
    total: int = 0


def produce(producer, messages) -> Sent:
    """messages: (topic, value, key, kind, tag); kind 'good' (tag = pid) or 'bad' (category)."""
    futures = [
        (producer.send(topic, value=value, key=key), kind, tag)
        for topic, value, key, kind, tag in messages
    ]
    producer.flush()
    sent = Sent(total=len(futures))
    for future, kind, tag in futures:
        meta = future.get(timeout=30)
        where = (meta.topic, meta.partition, meta.offset)
        if kind == "good":
            sent.good[tag] = where
        else:
            sent.bad[where] = tag
    assert len(sent.good) + len(sent.bad) == sent.total
    return sent


class RunningIngestor:
    """An Ingestor in a thread; an exception escaping `run` is kept, not lost in the thread."""

    def __init__(self, cfg, engine) -> None:
        self.stop_event = threading.Event()
        self.ingestor = Ingestor(cfg, engine, self.stop_event)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.ingestor.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    @property
    def stats(self):
        return self.ingestor.stats

    def wait(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        ok = wait_for(lambda: predicate() or not self.thread.is_alive(), timeout_s)
        assert self.error is None, f"the intake thread died: {self.error!r}"
        assert ok and self.thread.is_alive(), f"{what}: not reached in {timeout_s}s"

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(30)

    def assert_stopped_cleanly(self) -> None:
        assert not self.thread.is_alive(), "the intake did not stop"
        assert self.error is None, f"the intake thread died: {self.error!r}"
        assert self.stats.state == "stopped"


def counts(engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(Prediction)).scalar_one(),
            conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one(),
        )


def stored_ids(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(Prediction.prediction_id)).scalars())


def dead_rows(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            select(
                DeadLetter.topic,
                DeadLetter.partition,
                DeadLetter.offset,
                DeadLetter.reason,
                DeadLetter.payload,
            )
        ).all()


def committed_offsets(cfg, topic: str) -> dict[int, int]:
    """The group's committed offsets, read by a consumer that joins nothing."""
    consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap_servers, group_id=cfg.group_id)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        found = {p: consumer.committed(TopicPartition(topic, p)) for p in sorted(parts)}
    finally:
        consumer.close(autocommit=False)
    return {p: off for p, off in found.items() if off is not None}


# --------------------------------------------------------------------------- 1. fuzz


def test_fuzzed_bad_messages_each_become_one_dead_letter(kafka_cfg, db_url):
    rng = random.Random(SEED)
    cfg = kafka_cfg.model_copy(update={"max_message_bytes": MAX_BYTES})
    engine = make_engine(db_url)
    producer = make_producer(cfg, max_request_size=4 * 1024 * 1024)
    pred_topic, label_topic = cfg.predictions_topic, cfg.labels_topic

    messages = []
    for i in range(N_GOOD):
        pid, raw = good_message(i, rng)
        messages.append((pred_topic, raw, None, "good", pid))
    names = sorted(BAD_PREDICTIONS)
    n_huge, n_tombstones = 10, 40
    for j in range(N_BAD - n_huge - n_tombstones):
        category = names[j % len(names)]  # every category well represented
        messages.append((pred_topic, BAD_PREDICTIONS[category](rng), None, "bad", category))
    for _ in range(n_tombstones):
        messages.append((pred_topic, None, b"k", "bad", "tombstone"))
    for _ in range(n_huge):  # valid JSON otherwise: only the size is wrong
        blob = "x" * rng.randint(MAX_BYTES + 1, 4 * MAX_BYTES)
        raw = encode(prediction(f"huge-{rng.getrandbits(40):x}", rng, features={"blob": blob}))
        messages.append((pred_topic, raw, None, "bad", "huge"))
    rng.shuffle(messages)
    for raw in BAD_LABELS * 3:
        at = rng.randrange(len(messages))
        messages.insert(at, (label_topic, raw, None, "bad", "label"))
    for _ in range(3):
        messages.insert(rng.randrange(len(messages)), (label_topic, None, b"k", "bad", "tombstone"))
    huge_label = encode({"prediction_id": "x", "label": "l" * (2 * MAX_BYTES)})
    messages.insert(rng.randrange(len(messages)), (label_topic, huge_label, None, "bad", "huge"))
    sent = produce(producer, messages)
    producer.close()
    n_bad = len(sent.bad)
    assert len(sent.good) == N_GOOD and n_bad == N_BAD + 3 * len(BAD_LABELS) + 4

    running = RunningIngestor(cfg, engine)
    try:
        running.wait(lambda: counts(engine) == (N_GOOD, n_bad), 120, "all stored")
    finally:
        running.stop()
    running.assert_stopped_cleanly()

    assert sorted(stored_ids(engine)) == sorted(sent.good)
    rows = dead_rows(engine)
    assert len(rows) == n_bad
    by_place = {(r.topic, r.partition, r.offset): r for r in rows}
    assert set(by_place) == set(sent.bad), "dead letters are not exactly the bad messages"
    for where, category in sent.bad.items():
        row = by_place[where]
        assert row.reason.strip(), f"{category} at {where}: empty reason"
        assert len(row.payload) <= PAYLOAD_KEEP
        hint = REASON_HINTS.get(category)
        assert hint is None or hint in row.reason.lower(), (category, row.reason)
        if category == "huge":
            assert len(row.payload.encode()) <= 8 * 1024  # not the whole oversized payload
        if category == "tombstone":
            assert row.payload == ""
    stats = running.stats
    assert stats.consumed == sent.total
    assert (stats.predictions, stats.dead_letters, stats.labels) == (N_GOOD, n_bad, 0)
    assert stats.consumed == stats.predictions + stats.dead_letters  # counts in = out


# --------------------------------------------------------------------------- 2. poison rows


def refuse_evil_rows(engine) -> None:
    """A real constraint in the database, so that the database (not the decoder) refuses."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(
                text(
                    "ALTER TABLE predictions ADD CONSTRAINT no_evil CHECK (model_version <> 'evil')"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE TRIGGER no_evil BEFORE INSERT ON predictions "
                    "WHEN NEW.model_version = 'evil' "
                    "BEGIN SELECT RAISE(ABORT, 'evil row'); END"
                )
            )


def test_rows_the_database_refuses_are_isolated_and_the_partition_moves_on(kafka_cfg, db_url):
    rng = random.Random(SEED + 1)
    engine = make_engine(db_url)
    refuse_evil_rows(engine)
    producer = make_producer(kafka_cfg)
    topic = kafka_cfg.predictions_topic

    n_good = 3_000
    order = ["good"] * n_good
    evil_at = sorted(rng.sample(range(1, n_good), 12)) + [0, 500, 501, 502]  # first, a run
    for at in sorted(evil_at, reverse=True):
        order.insert(at, "evil")
    order.append("evil")  # and the very last message
    messages = []
    for i, kind in enumerate(order):
        pid = f"{kind}-{i:05d}-{uuid.uuid4().hex[:8]}"
        over = {"model_version": "evil"} if kind == "evil" else {}
        raw = encode(prediction(pid, rng, **over))
        tag = pid if kind == "good" else "evil"
        messages.append((topic, raw, pid.encode(), "good" if kind == "good" else "bad", tag))
    sent = produce(producer, messages)
    producer.close()
    n_evil = len(sent.bad)
    assert n_evil == order.count("evil") and len(sent.good) == n_good

    running = RunningIngestor(kafka_cfg, engine)
    try:
        running.wait(lambda: counts(engine) == (n_good, n_evil), 90, "all stored")
    finally:
        running.stop()
    running.assert_stopped_cleanly()

    assert sorted(stored_ids(engine)) == sorted(sent.good)
    rows = dead_rows(engine)
    assert {(r.topic, r.partition, r.offset) for r in rows} == set(sent.bad)
    for row in rows:
        assert row.reason.startswith("storage rejected the row"), row.reason
        assert '"model_version":"evil"' in row.payload
    stats = running.stats
    assert stats.consumed == sent.total
    assert (stats.predictions, stats.dead_letters) == (n_good, n_evil)
    # The partition was not blocked: good messages after an evil one in its partition are
    # stored, and the group's committed offsets reached the end of every partition.
    after_evil = [
        pid
        for pid, (_, part, off) in sent.good.items()
        if any(p == part and o < off for (_, p, o) in sent.bad)
    ]
    assert after_evil and set(after_evil) <= set(stored_ids(engine))
    ends: dict[int, int] = {}
    for _, part, off in [*sent.good.values(), *sent.bad]:
        ends[part] = max(ends.get(part, 0), off + 1)
    assert committed_offsets(kafka_cfg, topic) == ends


# --------------------------------------------------------------------------- 3. one group


@pytest.mark.slow
def test_two_intakes_in_one_group_share_the_partitions(kafka_cfg, db_url):
    total = 20_000
    every = {
        f"{t}:{p}" for t in (kafka_cfg.predictions_topic, kafka_cfg.labels_topic) for p in range(4)
    }
    first = RunningIngestor(kafka_cfg, make_engine(db_url))
    second = RunningIngestor(kafka_cfg, make_engine(db_url))
    engine = make_engine(db_url, create=False)

    def settled() -> bool:
        a, b = set(first.stats.partitions), set(second.stats.partitions)
        return bool(a) and bool(b) and not a & b and a | b == every

    try:
        first.wait(settled, 60, "group settled")
        assigned = (set(first.stats.partitions), set(second.stats.partitions))
        producer = make_producer(kafka_cfg)
        rng = random.Random(SEED + 2)
        ids = [f"p-{i:05d}-{uuid.uuid4().hex[:8]}" for i in range(total)]
        for pid in ids:
            producer.send(
                kafka_cfg.predictions_topic, encode(prediction(pid, rng)), key=pid.encode()
            )
        producer.flush()
        producer.close()
        first.wait(lambda: counts(engine)[0] >= total, 120, "all stored")
        assert second.thread.is_alive() and second.error is None, second.error
        still = (set(first.stats.partitions), set(second.stats.partitions))
    finally:
        first.stop_event.set()  # both leave together: no rebalance before the last commit
        second.stop_event.set()
        first.stop()
        second.stop()
    first.assert_stopped_cleanly()
    second.assert_stopped_cleanly()

    a, b = assigned
    assert a and b and not a & b and a | b == every
    assert still == assigned, "the group rebalanced while consuming"
    stored = stored_ids(engine)
    assert len(stored) == total and set(stored) == set(ids)
    assert first.stats.consumed > 0 and second.stats.consumed > 0
    assert first.stats.consumed + second.stats.consumed >= total  # redelivery is allowed
    assert first.stats.predictions + second.stats.predictions == total  # but stored once
    assert counts(engine) == (total, 0)


# --------------------------------------------------------------------------- 4. leases


def test_leases_one_holder_at_a_time(db_url):
    engine = make_engine(db_url)
    name = f"checks:m:{uuid.uuid4().hex[:6]}"

    assert leases.acquire(engine, name, "A", 0.5)
    assert not leases.acquire(engine, name, "B", 0.5)
    time.sleep(0.3)
    assert leases.acquire(engine, name, "A", 0.5)  # renew by taking again
    assert leases.renew_all(engine, "A", 0.5) == [name]
    time.sleep(0.3)  # past the first expiry, not the renewed one
    assert not leases.acquire(engine, name, "B", 0.5)
    time.sleep(0.7)  # A stopped renewing: its lease lapses
    assert leases.renew_all(engine, "A", 0.5) == []
    assert leases.acquire(engine, name, "B", 0.5)
    assert not leases.acquire(engine, name, "A", 0.5)

    other = f"retention:{uuid.uuid4().hex[:6]}"
    assert leases.acquire(engine, other, "A", 60)
    assert leases.acquire(engine, name + "-2", "A", 60)
    assert not leases.acquire(engine, other, "B", 60)
    leases.release_all(engine, "A")  # a clean stop: no need to wait 60 s
    assert leases.acquire(engine, other, "B", 60)
    assert leases.acquire(engine, name + "-2", "B", 60)
    assert not leases.acquire(engine, other, "A", 60)
    assert leases.renew_all(engine, "B", 60) == sorted([name, other, name + "-2"])


@pytest.mark.parametrize("contenders", [8])
def test_lease_race_has_exactly_one_winner(db_url, contenders):
    engines = [make_engine(db_url, create=(i == 0)) for i in range(contenders)]
    for engine in engines:  # connect first, so the barrier releases only the acquire
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    for round_ in range(5):
        name = f"race-{round_}-{uuid.uuid4().hex[:6]}"
        barrier = threading.Barrier(contenders)
        results: dict[str, bool | BaseException] = {}

        def contend(i: int, name=name, barrier=barrier, results=results) -> None:
            barrier.wait()
            try:
                results[f"h{i}"] = leases.acquire(engines[i], name, f"h{i}", 30)
            except BaseException as exc:  # noqa: BLE001 - reported below
                results[f"h{i}"] = exc

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        errors = {h: r for h, r in results.items() if isinstance(r, BaseException)}
        assert not errors, f"round {round_}: {errors}"
        winners = [h for h, won in results.items() if won is True]
        assert len(results) == contenders and len(winners) == 1, f"round {round_}: {results}"
        with engines[0].connect() as conn:
            holder = conn.execute(
                text("SELECT holder FROM leases WHERE name = :n"), {"n": name}
            ).scalar_one()
        assert holder == winners[0]
