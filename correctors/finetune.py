"""Fine-tune a copy of the champion: seeded, early-stopped on a held-out split, CUDA if present."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from correctors.settings import CorrectionConfig


@dataclass
class FineTuneResult:
    model: nn.Module
    device: str
    epochs_run: int
    best_epoch: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "device": self.device,
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "train_loss": [round(v, 5) for v in self.train_loss],
            "val_loss": [round(v, 5) for v in self.val_loss],
            "seconds": round(self.seconds, 3),
        }


def fine_tune(
    champion: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    settings: CorrectionConfig,
    on_epoch=None,
) -> FineTuneResult:
    """Train a deep copy of `champion` on (x, y) (y: class indices); the champion is untouched."""
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = copy.deepcopy(champion).to(device).train()

    order = rng.permutation(len(x))
    n_val = max(1, int(len(x) * settings.early_stopping_fraction))
    val_idx, train_idx = order[:n_val], order[n_val:]
    xt = torch.from_numpy(x).float().to(device)
    yt = torch.from_numpy(y).long().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator(device="cpu").manual_seed(settings.seed)

    best_loss, best_state, best_epoch, stale = float("inf"), None, 0, 0
    result = FineTuneResult(model=model, device=device, epochs_run=0, best_epoch=0)
    train_tensor = torch.from_numpy(train_idx)
    for epoch in range(1, settings.epochs + 1):
        model.train()
        perm = train_tensor[torch.randperm(len(train_tensor), generator=generator)]
        total, seen = 0.0, 0
        for start in range(0, len(perm), settings.batch_size):
            batch = perm[start : start + settings.batch_size].to(device)
            optimiser.zero_grad()
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
            seen += len(batch)
        model.eval()
        with torch.no_grad():
            val = float(loss_fn(model(xt[val_idx]), yt[val_idx]))
        result.train_loss.append(total / max(1, seen))
        result.val_loss.append(val)
        result.epochs_run = epoch
        if on_epoch is not None:
            on_epoch(epoch, result.train_loss[-1], val)
        if val < best_loss - 1e-5:
            best_loss, best_epoch, stale = val, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= settings.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    result.best_epoch = best_epoch
    result.model = model.cpu().eval()
    result.seconds = time.perf_counter() - started
    return result
