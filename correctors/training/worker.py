"""Fine-tune in a worker process, so a crash, an OOM or a runaway epoch never takes the daemon
down.

`fine_tune_in_worker` starts a fresh interpreter (`multiprocessing` "spawn": no forked locks,
threads or CUDA state) that runs `correctors.training.finetune.fine_tune` on a pickled copy of the
champion (our own bytes, sent to a child we started). Nothing pickled comes back:

* progress and the run's summary arrive as JSON over a one-way pipe (`send_bytes` /
  `recv_bytes`, never `recv`), and the parent calls `on_epoch` as each epoch arrives;
* the trained weights come back as a state dict file in a temporary directory, read with
  `torch.load(weights_only=True)` into a copy of the champion.

Budgets:

* memory: the child caps its address space (`RLIMIT_AS`) at its baseline, measured once
  Python, torch and (when used) the CUDA context are loaded, plus `memory_budget_mb`, and
  limits glibc to two malloc arenas so idle per-thread arenas do not eat the budget. An
  allocation past it fails (`MemoryError`, or torch's "can't allocate memory") and is reported
  as "worker ran out of memory (budget N MB)". On CUDA this bounds host memory only: GPU
  allocations are not counted, and a CUDA OOM is reported as "worker ran out of GPU memory".
* time: `fine_tune` stops after the epoch that crosses `time_budget_s`; if the child is still
  running `GRACE_S` (30 s) later, say inside one very long epoch, the parent terminates it,
  then kills it, and reports "worker exceeded the time budget".

Any failure (an exception in the child, a non-zero exit code, a signal, an OOM, the time
budget) raises `FineTuneFailed(reason)` in the parent, which always survives. Each call costs
a fixed ~2.3-2.5 s more than a warm in-process `fine_tune` (measured on a 2-core CPU host,
torch 2.13 CPU): ~1.6 s to spawn and `import torch`, ~0.7 s of first-use warm-up in the
fresh interpreter; CUDA initialisation adds to it on a GPU host. Small next to a real run.
With `settings.worker = False` the same call runs `fine_tune` in-process.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import json
import multiprocessing
import pickle
import resource
import signal
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from correctors.settings import CorrectionConfig
from correctors.training.finetune import FineTuneResult, fine_tune

GRACE_S = 30.0
EpochCallback = Callable[[int, float, float], None]
_M_ARENA_MAX = -8  # glibc mallopt parameter
_RESULT_FIELDS = (
    "device",
    "epochs_run",
    "best_epoch",
    "train_loss",
    "val_loss",
    "seconds",
    "stopped_by",
    "trainable_params",
    "frozen_params",
    "threads",
)


class FineTuneFailed(RuntimeError):
    """The worker failed; `reason` says how, `detail` holds the child's traceback if any."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def fine_tune_in_worker(
    champion: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    settings: CorrectionConfig,
    on_epoch: EpochCallback | None = None,
    *,
    grace_s: float = GRACE_S,
) -> FineTuneResult:
    """`fine_tune` in a spawned worker process (in-process when `settings.worker` is False).

    Same seed, same data, same device: the same weights as `fine_tune` in-process. Raises
    `FineTuneFailed` for any failure of the worker; the champion is never modified.
    """
    if not settings.worker:
        return fine_tune(champion, x, y, settings, on_epoch=on_epoch)
    started = time.monotonic()
    payload = _payload(champion)
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="warden-finetune-") as tmp:
        weights = Path(tmp) / "weights.pt"
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_child,
            args=(payload, np.asarray(x), np.asarray(y), settings, str(weights), writer),
            name="warden-finetune",
            daemon=True,
        )
        try:
            proc.start()
        except Exception as exc:  # noqa: BLE001 - reported with the reason
            reader.close()
            writer.close()
            raise FineTuneFailed(f"cannot start the worker: {exc!r}") from exc
        try:
            writer.close()
            deadline = started + settings.time_budget_s + grace_s
            overdue = (
                f"worker exceeded the time budget ({settings.time_budget_s:g} s + {grace_s:g} s "
                "grace) and was killed"
            )
            done = _outcome(proc, *_follow(proc, reader, deadline, overdue, on_epoch), weights)
            model = copy.deepcopy(champion).cpu()
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        finally:
            _stop(proc)
            reader.close()
            writer.close()
    result = FineTuneResult(model=model.eval(), **{k: done[k] for k in _RESULT_FIELDS})
    result.worker = True
    result.worker_seconds = time.monotonic() - started
    return result


def _payload(champion: nn.Module) -> bytes:
    """The champion pickled for the child (on the CPU: the child picks its device)."""
    try:
        on_cpu = all(t.device.type == "cpu" for t in [*champion.parameters(), *champion.buffers()])
        return pickle.dumps(champion if on_cpu else copy.deepcopy(champion).cpu())
    except Exception as exc:  # noqa: BLE001 - reported with the reason
        raise FineTuneFailed(f"the champion cannot be sent to the worker: {exc!r}") from exc


def _outcome(proc, done: dict | None, error: dict | None, weights: Path) -> dict:
    """The child's summary, or `FineTuneFailed` saying how it failed."""
    if error is not None:
        raise FineTuneFailed(error["reason"], error.get("detail"))
    if proc.exitcode is not None and proc.exitcode < 0:
        number = -proc.exitcode
        name = signal.Signals(number).name if number in signal.valid_signals() else "?"
        raise FineTuneFailed(f"worker killed by signal {number} ({name})")
    if proc.exitcode:
        raise FineTuneFailed(f"worker exited with code {proc.exitcode}")
    if done is None or not weights.exists():
        raise FineTuneFailed("worker exited without a result")
    return done


def _follow(
    proc, reader, deadline: float, overdue: str, on_epoch
) -> tuple[dict | None, dict | None]:
    """Relay progress until the child closes the pipe and exits; kill it at the deadline."""
    done = error = None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _stop(proc)
            raise FineTuneFailed(overdue)
        if not reader.poll(min(0.25, remaining)):
            continue
        try:
            message = json.loads(reader.recv_bytes())
        except EOFError:
            break
        if message["kind"] == "epoch":
            if on_epoch is not None:
                on_epoch(message["epoch"], message["train_loss"], message["val_loss"])
        elif message["kind"] == "done":
            done = message
        elif message["kind"] == "error":
            error = message
    proc.join(max(0.0, deadline - time.monotonic()))
    if proc.is_alive():
        _stop(proc)
        raise FineTuneFailed(overdue)
    return done, error


def _stop(proc) -> None:
    """Terminate, then kill, a child still running; reap it either way."""
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if proc.is_alive():
        proc.kill()
    proc.join(5)


def _limit_memory(budget_mb: int) -> None:
    """Cap the address space at what is mapped now plus the budget (Linux; best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)
    try:
        with open("/proc/self/status") as status:
            mapped = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration):
        return
    limit = mapped * 1024 + budget_mb * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "std::bad_alloc" in text
    )


def _child(payload, x, y, settings: CorrectionConfig, weights: str, conn) -> None:
    """Worker body: never raises; reports through `conn` and exits."""

    def send(**message) -> None:
        conn.send_bytes(json.dumps(message).encode())

    try:
        if torch.cuda.is_available():
            torch.zeros(1, device="cuda")  # the context's mappings belong to the baseline
        _limit_memory(settings.memory_budget_mb)
        champion = pickle.loads(payload)  # our own bytes, from the parent that started us
        del payload

        def relay(epoch: int, train_loss: float, val_loss: float) -> None:
            send(kind="epoch", epoch=epoch, train_loss=train_loss, val_loss=val_loss)

        result = fine_tune(champion, x, y, settings, on_epoch=relay)
        torch.save(result.model.state_dict(), weights)
        summary = {k: getattr(result, k) for k in _RESULT_FIELDS}
        send(kind="done", **summary)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            reason = f"worker ran out of GPU memory: {exc}"
        elif _out_of_memory(exc):
            reason = f"worker ran out of memory (budget {settings.memory_budget_mb} MB)"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            send(kind="error", reason=reason, detail=traceback.format_exc())
        raise SystemExit(1) from None
    finally:
        conn.close()
