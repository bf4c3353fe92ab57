"""The consumer's side of the intake's writer process: start it, hand it raw batches, read
its answers in order.

Batches go through a pipe whose buffer is raised to 1 MiB (Linux), so that handing over a
~800 kB batch of 2,000 records is one write that does not wait for the writer to finish the
batch before it. The answers' pipe also carries the writer's state changes ("database
unavailable, retrying") and log lines, handled here as they arrive.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import multiprocessing.connection
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import Engine

from storage.intake import BatchCounts
from watcher.intake import writer_main
from watcher.intake.raw_batch import RawBatch
from watcher.intake.writer_main import STOP_SIGNALS, WriterSpec

log = structlog.get_logger("warden.ingest")
PIPE_BYTES = 1 << 20  # Linux's default pipe-max-size for unprivileged processes
WAIT_S = 0.1  # how often a wait looks at the stop flag
CLOSE_TIMEOUT_S = 30.0
ABANDON_S = 5.0  # how long an abandoning writer gets before it is killed


class WriterGone(RuntimeError):
    """The writer process exited without being asked to (killed, out of memory)."""


class WriterFailed(RuntimeError):
    """Storing a batch raised something that is neither transient nor the data's fault."""


@dataclass
class Outcome:
    """The writer's answer for one batch: counts, or None when it was abandoned (stopping
    while the database was down)."""

    seq: int
    counts: BatchCounts | None
    labels: int = 0


def writer_spec(engine: Engine, labels_topic: str, max_bytes: int) -> WriterSpec:
    """How the writer opens the same store: the engine's URL (password included) and its lock
    timeout, read back from a connection (SQLite's busy_timeout; PostgreSQL's connect_timeout).
    """
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ValueError("the intake writes from its own process: use a SQLite file, not memory")
    return WriterSpec(
        url.render_as_string(hide_password=False), _lock_timeout_s(engine), labels_topic, max_bytes
    )


def _lock_timeout_s(engine: Engine, default: float = 30.0) -> float:
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                return conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() / 1000
            driver = conn.connection.driver_connection
            if driver is None:
                return default
            params = driver.info.get_parameters()
            return float(params.get("connect_timeout", default))
    except Exception as exc:  # noqa: BLE001 - the store may be down at start: retries follow
        log.warning("lock_timeout_unknown", default_s=default, error=repr(exc)[:300])
        return default


def start_shielded(process: multiprocessing.process.BaseProcess) -> None:
    """Start `process` with SIGINT and SIGTERM blocked (a new process inherits the mask): the
    writer ignores both once running, so Ctrl-C or a SIGTERM to the process group stops only
    the parent, which finishes the batch in hand and then closes the writer's pipe. The
    calling thread's mask is restored at once."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class WriterProcess:
    """One writer process per `Ingestor.run`; answers come back in the order batches went."""

    def __init__(
        self, spec: WriterSpec, on_state: Callable[[str], None], stop: threading.Event
    ) -> None:
        """`stop` is the intake's own flag; it is passed on to the writer while waiting."""
        self.spec, self.on_state, self.stop = spec, on_state, stop
        ctx = multiprocessing.get_context("spawn")  # the parent has threads: no fork
        stop_r, self._stop = ctx.Pipe(duplex=False)  # not an Event: no named semaphores
        inbox_r, self._inbox = ctx.Pipe(duplex=False)
        self._outbox, outbox_w = ctx.Pipe(duplex=False)
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or over the limit
            fcntl.fcntl(self._inbox.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self.process = ctx.Process(
            target=writer_main.main,
            args=(inbox_r, outbox_w, spec, stop_r),
            name="warden-intake-writer",
            daemon=True,
        )
        start_shielded(self.process)
        for end in (inbox_r, outbox_w, stop_r):
            end.close()
        self._ready = False

    def ensure_alive(self) -> None:
        """Raise WriterGone if the writer has exited (asked after every poll: a killed writer
        is replaced even while no records come)."""
        if not self.process.is_alive():
            raise self._gone()

    def submit(self, seq: int, batch: RawBatch) -> None:
        try:
            self._inbox.send((seq, batch))
        except OSError:  # a broken pipe: the writer is gone
            raise self._gone() from None

    def wait_ready(self) -> None:
        """Block until the writer has started (imports, engine): about a second."""
        while not self._ready:
            message = self._receive(block=True, until_ready=True)
            if message is not None:
                raise WriterFailed(f"unexpected message from the intake writer: {message!r}")

    def next_outcome(self, *, block: bool) -> Outcome | None:
        """The next batch's answer; None when not blocking and none has arrived yet."""
        while True:
            message = self._receive(block)
            if message is None:
                return None
            kind = message[0]
            if kind == "done":
                return Outcome(message[1], message[2], message[3])
            if kind == "abandoned":
                return Outcome(message[1], None)
            if kind == "failed":
                raise WriterFailed(f"storing batch {message[1]} failed:\n{message[2]}")

    def _receive(self, block: bool, until_ready: bool = False) -> tuple | None:
        """One answer, handling state and log messages on the way."""
        while True:
            if not self._outbox.poll(WAIT_S if block else 0):
                if not block:
                    return None
                if self.stop.is_set():
                    self._tell_stop()  # a retrying writer abandons its batch
                if not self.process.is_alive() and not self._outbox.poll():
                    raise self._gone()
                continue
            try:
                message = self._outbox.recv()
            except EOFError:
                raise self._gone() from None
            if not self._handle(message):
                return message
            if until_ready and self._ready:
                return None

    def _tell_stop(self) -> None:
        if not self._stop.closed:
            with contextlib.suppress(OSError):
                self._stop.send_bytes(b"stop")
            self._stop.close()

    def _gone(self) -> WriterGone:
        self.process.join(1)
        return WriterGone(f"the intake writer process exited (code {self.process.exitcode})")

    def _handle(self, message: tuple) -> bool:
        """State, log and ready messages; False for a batch's answer."""
        kind = message[0]
        if kind == "state":
            self.on_state(message[1])
        elif kind == "log":
            fields = dict(message[2])
            getattr(log, message[1], log.info)(fields.pop("event", "writer_log"), **fields)
        elif kind == "ready":
            self._ready = True
        else:
            return False
        return True

    def close(self, *, finish: bool) -> None:
        """`finish`: let the writer end after what it holds (nothing is pending when the
        intake stops gracefully); otherwise it is told to stop (a batch the database refuses
        is abandoned) and killed if still running after ABANDON_S: whatever it held is not
        committed in Kafka, so it comes again."""
        with contextlib.suppress(OSError):
            if finish:
                self._inbox.send(None)
            self._inbox.close()
        if not finish:  # the writer ignores SIGTERM: it ends once told, or is killed below
            self._tell_stop()
        self.process.join(CLOSE_TIMEOUT_S if finish else ABANDON_S)
        if self.process.is_alive():
            log.warning("intake_writer_killed", pid=self.process.pid)
            self.process.kill()
            self.process.join(5)
        self._outbox.close()
        if not self._stop.closed:
            self._stop.close()
        self.process.close()
