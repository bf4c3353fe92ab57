"""What runs inside the intake's writer process: receive raw batches, decode them, store them
(retries and poison-row isolation: `BatchStore`), and answer each with its counts.

Why a process: decoding (~5 µs a record) and the database write (~8 µs a row on SQLite) held
the GIL that kafka-python's poll and I/O threads need; in the consumer's process the intake
reached 0.35-0.6 of a bare consumer's rate, against ~1.1 without them (bench/ingest.py).

The process has its own engine (built from the parent's URL and lock timeout: an Engine is
never pickled), decodes batch N+1 while a second thread stores batch N (the database works
without the GIL), sends its log lines and state changes to the parent, and exits when the
parent closes the pipe, or dies (kill -9 included): it never outlives the daemon. Stopping is
the parent's to do: Ctrl-C and a SIGTERM sent to the whole process group reach the writer too,
and it ignores both (it is started with them blocked, so none lands while it imports); the
parent finishes the batch in hand and then closes the pipe.
"""

from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import threading
import traceback
from dataclasses import dataclass
from typing import Any

import structlog
from structlog.typing import EventDict

from storage.engine import connect
from watcher.intake.batch_store import BatchStore, Parsed
from watcher.intake.raw_batch import decode

log = structlog.get_logger("warden.ingest")
_PLAIN = (str, int, float, bool, type(None))
GC_YOUNG = 50_000  # allocations between young collections (the default, 700, halved decoding)


@dataclass(frozen=True)
class WriterSpec:
    """Everything the writer process needs to open the store and decode, picklable."""

    url: str  # with its password: never logged (the engine is rebuilt from it)
    lock_timeout_s: float
    labels_topic: str
    max_bytes: int


def main(
    inbox: multiprocessing.connection.Connection,
    outbox: multiprocessing.connection.Connection,
    spec: WriterSpec,
    stop_pipe: multiprocessing.connection.Connection,
) -> None:
    """The process's entry point. Messages in: `(seq, RawBatch)`, or None to finish. Out:
    ("ready",), ("state", text), ("log", method, fields), ("done", seq, BatchCounts, labels),
    ("abandoned", seq) when asked to stop while the database is down, ("failed", seq, text).
    `stop_pipe` becomes readable when the parent asks the writer to stop (or is gone)."""
    leave_stopping_to_parent()
    _exit_with_parent()
    send = Sender(outbox)
    _forward_logs(send)
    engine = connect(spec.url, lock_timeout_s=spec.lock_timeout_s)
    store = BatchStore(engine, PipeFlag(stop_pipe), on_state=lambda s: send(("state", s)))
    storing = Storing(store, send)
    _tune_gc()
    send(("ready",))
    try:
        while True:
            try:
                message = inbox.recv()
            except EOFError:  # the parent is gone
                return
            if message is None:
                return
            seq, raw = message
            try:
                parsed = decode(raw, spec.labels_topic, spec.max_bytes)
            except Exception:  # noqa: BLE001 - the parent raises it where the old thread did
                send(("failed", seq, traceback.format_exc()))
                continue
            storing.put(seq, parsed)  # decoding the next batch overlaps this one's write
    finally:
        storing.finish()
        engine.dispose()


class Sender:
    """`outbox.send` for two threads (decoding and storing both log)."""

    def __init__(self, outbox: multiprocessing.connection.Connection) -> None:
        self.outbox, self.lock = outbox, threading.Lock()

    def __call__(self, message: tuple) -> None:
        with self.lock:
            self.outbox.send(message)


class Storing:
    """The thread that stores decoded batches in order and answers for each. SQLite and
    psycopg release the GIL while the database works (~4 of the ~16 µs a record costs here),
    so the next batch is decoded meanwhile; one batch waits at most."""

    def __init__(self, store: BatchStore, send: Sender) -> None:
        self.store, self.send = store, send
        self.queue: queue.Queue[tuple[int, Parsed] | None] = queue.Queue(maxsize=1)
        self.thread = threading.Thread(target=self._run, name="intake-store", daemon=True)
        self.thread.start()

    def put(self, seq: int, parsed: Parsed) -> None:
        self.queue.put((seq, parsed))

    def finish(self) -> None:
        """Store what was handed over, then end."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def _run(self) -> None:
        while (job := self.queue.get()) is not None:
            seq, parsed = job
            try:
                self.send(_stored(self.store, seq, parsed))
            except OSError:  # the parent is gone: nothing to answer to
                return


class PipeFlag:
    """The parent's stop request, as BatchStore asks for it: set once the pipe is readable
    (a message, or the parent's end closed)."""

    def __init__(self, pipe: multiprocessing.connection.Connection) -> None:
        self.pipe = pipe

    def is_set(self) -> bool:
        return self.pipe.poll()


def _stored(store: BatchStore, seq: int, parsed: Parsed) -> tuple:
    """The answer for one batch."""
    try:
        counts = store.store(parsed)
    except Exception:  # noqa: BLE001 - the parent raises it where the old thread did
        return ("failed", seq, traceback.format_exc())
    if counts is None:
        return ("abandoned", seq)
    return ("done", seq, counts, sum(1 for item in parsed.items if item.kind == "label"))


STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


def leave_stopping_to_parent() -> None:
    """Ignore SIGINT and SIGTERM, then unblock them (`WriterProcess` starts this process with
    both blocked): one that arrived meanwhile is discarded. The writer ends when its pipe
    closes, or when the parent dies."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _tune_gc() -> None:
    """Decoding a batch allocates ~30 objects a record and makes no cycles, but with the
    default thresholds the collector ran every 700 allocations and walked every object of
    SQLAlchemy's and the modules' on its older passes: 5 of the 10 µs a record took to decode
    (measured). What exists after start-up is frozen (never scanned again) and young
    collections come every GC_YOUNG allocations. This process only decodes and writes."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG, older, oldest)


def _exit_with_parent() -> None:
    """A killed parent cannot say goodbye: watch its sentinel, which closes when it dies. An
    uncommitted transaction is rolled back by the database; the parent committed no offsets
    for it, so the records come again."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _forward_logs(send: Sender) -> None:
    """Log lines go to the parent, which writes them with its own configuration."""

    def forward(_logger: Any, method: str, event: EventDict) -> EventDict:
        fields = {k: v if isinstance(v, _PLAIN) else repr(v) for k, v in event.items()}
        send(("log", method, fields))
        raise structlog.DropEvent

    structlog.configure(
        processors=[structlog.processors.format_exc_info, forward],
        cache_logger_on_first_use=False,
    )
