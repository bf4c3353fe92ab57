"""Fine-tune a copy of the champion: seeded, early-stopped on a held-out split, CUDA if present.

Options (all in `CorrectionConfig`): `trainable` freezes everything but the named parameter
prefixes, `weight_decay` (AdamW), `l2_sp` pulls the trainable weights toward the champion's,
`time_budget_s` stops after the epoch that crosses it. A float `y` means regression (MSE on a
single-output model); integer `y` holds class indices (cross-entropy). To keep a crash or an
OOM away from the daemon, run it through `correctors.training.worker.fine_tune_in_worker`.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from correctors.settings import CorrectionConfig

MIN_DELTA = 1e-5
# on separable data the held-out loss creeps towards 0 for ever: below this cross-entropy
# (~99 % confidence on every held-out row) there is nothing left to learn
SOLVED_LOSS = 0.01
# below this many parameters a CPU run uses one thread: splitting a 64-wide layer's matmul
# across threads costs more than it saves, and with strategies training side by side in
# workers the threads only contend (River's Sine stream, 2 cores: 40 epochs of the built-in
# MLP took 1.2 s on one thread, 6.8-16 s on two)
SMALL_MODEL_PARAMS = 1_000_000


@dataclass
class FineTuneResult:
    model: nn.Module
    device: str
    epochs_run: int
    best_epoch: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    stopped_by: str = "epochs"  # "early_stopping" | "solved" | "epochs" | "time_budget"
    trainable_params: int = 0  # scalar parameters trained
    frozen_params: int = 0  # scalar parameters left as the champion had them
    worker: bool = False  # trained in a worker process
    worker_seconds: float | None = None  # wall time in the parent, spawn included
    threads: int = 0  # torch CPU threads it trained with (0: on CUDA)

    def summary(self) -> dict:
        out = {
            "device": self.device,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "stopped_by": self.stopped_by,
            "trainable_params": self.trainable_params,
            "frozen_params": self.frozen_params,
            "train_loss": [round(v, 5) for v in self.train_loss],
            "val_loss": [round(v, 5) for v in self.val_loss],
            "seconds": round(self.seconds, 3),
            "worker": self.worker,
            "threads": self.threads,
        }
        if self.worker_seconds is not None:
            out["worker_seconds"] = round(self.worker_seconds, 3)
        return out


def _under(name: str, prefix: str) -> bool:
    """`net.4` covers `net.4` and `net.4.weight`, never `net.40.weight`."""
    return name == prefix or name.startswith(prefix + ".")


def _apply_trainable(model: nn.Module, prefixes: list[str] | None) -> list[nn.Module]:
    """Freeze what `prefixes` leaves out; return the frozen leaf modules holding buffers.

    Those (batch-norm and the like) are kept in eval mode while training, so a frozen layer
    stays bit-identical, running statistics included.
    """
    if prefixes is None:
        return []
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(_under(name, prefix) for name in names):
            shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
            raise ValueError(
                f"correction.trainable: {prefix!r} matches no parameter of the model "
                f"(parameters: {shown})"
            )
    for name, param in model.named_parameters():
        param.requires_grad_(any(_under(name, p) for p in prefixes))
    frozen = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        if next(module.buffers(recurse=False), None) is None:
            continue
        if any(_under(name, p) for p in prefixes):
            continue
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            continue
        frozen.append(module)
    return frozen


def cpu_threads(model: nn.Module, settings: CorrectionConfig) -> int:
    """Torch CPU threads for training `model` (see `SMALL_MODEL_PARAMS`)."""
    if settings.cpu_threads is not None:
        return settings.cpu_threads
    if sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS:
        return 1
    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run with `count` torch CPU threads (0: as set), then restore the process's setting."""
    if count == 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fine_tune(
    champion: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    settings: CorrectionConfig,
    on_epoch=None,
) -> FineTuneResult:
    """Train a deep copy of `champion` on (x, y); the champion is untouched.

    `y` holds class indices (cross-entropy on logits) or, when it is a float array, regression
    targets (MSE on `model(x).squeeze(-1)`, so the model must have one output). The recorded
    train loss is the data loss, without the L2-SP term, so it compares with the val loss.
    Same seed, data and device: identical weights.
    """
    threads = 0 if torch.cuda.is_available() else cpu_threads(champion, settings)
    with torch_threads(threads):
        result = _fine_tune(champion, x, y, settings, on_epoch)
    result.threads = threads
    return result


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EpochCallback = Callable[[int, float, float], None]


@dataclass
class _Run:
    """One fine-tuning run's model, data on the device, loss and optimiser."""

    model: nn.Module
    params: list[nn.Parameter]
    anchors: list[torch.Tensor]  # the champion's trainable weights, for L2-SP
    frozen_modules: list[nn.Module]
    xt: torch.Tensor
    yt: torch.Tensor
    train_idx: torch.Tensor
    val_idx: np.ndarray
    loss_fn: LossFn
    optimiser: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau
    generator: torch.Generator
    regression: bool
    device: str


def _fine_tune(
    champion: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    settings: CorrectionConfig,
    on_epoch,
) -> FineTuneResult:
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    run = _setup(champion, x, y, settings)
    grad_flags = [p.requires_grad for p in champion.parameters()]
    result = FineTuneResult(
        model=run.model,
        device=run.device,
        epochs_run=0,
        best_epoch=0,
        trainable_params=sum(p.numel() for p in run.params),
        frozen_params=sum(p.numel() for p in run.model.parameters() if not p.requires_grad),
    )
    best_state = _train(run, settings, result, on_epoch, started)
    if best_state is not None:
        run.model.load_state_dict(best_state)
    for param, flag in zip(run.model.parameters(), grad_flags, strict=True):
        param.requires_grad_(flag)
    result.model = run.model.cpu().eval()
    result.seconds = time.perf_counter() - started
    return result


def _train(run: _Run, settings: CorrectionConfig, result: FineTuneResult, on_epoch, started: float):
    """Epochs until early stopping, a solved task, the epoch cap or the time budget; returns
    the best epoch's state (None if no epoch improved)."""
    best_loss, best_state, stale = float("inf"), None, 0
    for epoch in range(1, settings.epochs + 1):
        train_loss = _epoch(run, settings)
        run.model.eval()
        with torch.no_grad():
            val = float(run.loss_fn(run.model(run.xt[run.val_idx]), run.yt[run.val_idx]))
        result.train_loss.append(train_loss)
        result.val_loss.append(val)
        result.epochs_run = epoch
        run.plateau.step(val)
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val)
        if val < best_loss - MIN_DELTA:
            best_loss, result.best_epoch, stale = val, epoch, 0
            best_state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
            if not run.regression and val < SOLVED_LOSS:
                result.stopped_by = "solved"  # held-out cross-entropy ~0: nothing left to learn
                break
        else:
            stale += 1
            if stale >= settings.patience:
                result.stopped_by = "early_stopping"
                break
        if epoch < settings.epochs and time.perf_counter() - started >= settings.time_budget_s:
            result.stopped_by = "time_budget"
            break
    return best_state


def _epoch(run: _Run, settings: CorrectionConfig) -> float:
    """One pass over the training rows in a seeded order; returns the mean data loss."""
    run.model.train()
    for module in run.frozen_modules:
        module.eval()
    perm = run.train_idx[torch.randperm(len(run.train_idx), generator=run.generator)]
    total, seen = 0.0, 0
    for start in range(0, len(perm), settings.batch_size):
        batch = perm[start : start + settings.batch_size].to(run.device)
        run.optimiser.zero_grad()
        loss = run.loss_fn(run.model(run.xt[batch]), run.yt[batch])
        objective = loss
        if run.anchors:
            pairs = zip(run.params, run.anchors, strict=True)
            pull = sum(((p - p0) ** 2).sum() for p, p0 in pairs)
            objective = loss + settings.l2_sp * pull
        objective.backward()
        run.optimiser.step()
        total += float(loss.detach()) * len(batch)
        seen += len(batch)
    return total / max(1, seen)


def _setup(champion: nn.Module, x: np.ndarray, y: np.ndarray, settings: CorrectionConfig) -> _Run:
    """A copy of the champion on the device, the held-out split for early stopping, the loss
    and the optimiser with its plateau schedule."""
    rng = np.random.default_rng(settings.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = copy.deepcopy(champion).to(device).train()
    frozen_modules = _apply_trainable(model, settings.trainable)
    params = [p for p in model.parameters() if p.requires_grad]
    order = rng.permutation(len(x))
    n_val = max(1, int(len(x) * settings.early_stopping_fraction))
    regression = np.asarray(y).dtype.kind == "f"
    yt = torch.from_numpy(y).to(device)
    optimiser = _optimiser(params, settings)
    return _Run(
        model=model,
        params=params,
        anchors=[p.detach().clone() for p in params] if settings.l2_sp > 0 else [],
        frozen_modules=frozen_modules,
        xt=torch.from_numpy(x).float().to(device),
        yt=yt.float() if regression else yt.long(),
        train_idx=torch.from_numpy(order[n_val:]),
        val_idx=order[:n_val],
        loss_fn=_regression_loss() if regression else nn.CrossEntropyLoss(),
        optimiser=optimiser,
        # halve the step when the held-out loss stalls, so training converges instead of
        # stopping at a cap with the loss still falling
        plateau=torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimiser,
            factor=settings.lr_plateau_factor,
            patience=max(1, settings.patience // 3),
            threshold=1e-4,
        ),
        generator=torch.Generator(device="cpu").manual_seed(settings.seed),
        regression=regression,
        device=device,
    )


def _optimiser(params: list[nn.Parameter], settings: CorrectionConfig) -> torch.optim.Optimizer:
    if settings.weight_decay > 0:
        return torch.optim.AdamW(
            params, lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
    return torch.optim.Adam(params, lr=settings.learning_rate)


def _regression_loss() -> LossFn:
    """MSE on a single-output model's `model(x).squeeze(-1)`."""
    mse = nn.MSELoss()

    def loss_fn(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        out = out.squeeze(-1)
        if out.shape != target.shape:
            raise ValueError(
                f"regression (float y) needs a single-output model: output shape "
                f"{tuple(out.shape)} for {len(target)} targets"
            )
        return mse(out, target)

    return loss_fn
