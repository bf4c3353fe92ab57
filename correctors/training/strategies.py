"""Ways to correct a model, tried side by side within one attempt's time budget:

- **fine_tune**: the champion trained further on the flagged rows, anchors and replay, to
  convergence (early stopping with patience, the learning rate halved on plateaus);
- **interpolate**: weights on the line from the champion to the fine-tuned model,
  θ(α) = (1−α)·θ_champion + α·θ_fine_tuned (Ilharco et al. 2022, "Patching open-vocabulary
  models by interpolating weights"); the gate keeps the largest α that passes;
- **retrain**: the champion's architecture re-initialised and trained afresh on the rows since
  the change plus the reference outside the region they contradict.

Training runs in the worker process (`fine_tune_in_worker`); interpolation is arithmetic.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from correctors.settings import CorrectionConfig
from correctors.training.dataset import Prepared
from correctors.training.trained import Trained
from correctors.training.worker import FineTuneFailed, fine_tune_in_worker

__all__ = ["Trained", "train_strategies"]

STRATEGIES = ("fine_tune", "interpolate", "retrain")
INTERPOLATION_STEPS = (0.8, 0.6, 0.4, 0.2)  # α = 1 is the fine-tuned model itself
EpochCallback = Callable[[int, float, float], None]


def interpolate(champion: nn.Module, tuned: nn.Module, alpha: float) -> nn.Module:
    """θ(α) = (1−α)·θ_champion + α·θ_tuned for every floating tensor (buffers included);
    integer buffers (counters) are taken from the tuned model."""
    out = copy.deepcopy(tuned).cpu().eval()
    start, end = champion.state_dict(), tuned.state_dict()
    mixed = {
        k: (1 - alpha) * start[k].cpu() + alpha * v.cpu() if v.is_floating_point() else v
        for k, v in end.items()
    }
    out.load_state_dict(mixed)
    return out


def fresh_copy(champion: nn.Module, seed: int) -> nn.Module:
    """The champion's architecture with every layer re-initialised (seeded)."""
    model = copy.deepcopy(champion).cpu()
    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
    return model


def train_strategies(
    champion: nn.Module,
    prepared: Prepared,
    settings: CorrectionConfig,
    on_epoch: EpochCallback | None = None,
) -> tuple[list[Trained], list[dict]]:
    """Train what `settings.strategies` asks for; returns the models and, per strategy that
    could not be trained, its failure. Raises FineTuneFailed when nothing could be trained.

    With `correction.worker` the fine-tune and the retrain run in two worker processes at
    once (each within `time_budget_s` and `memory_budget_mb`): an attempt takes as long as
    the slower of the two, not their sum. Progress (`on_epoch`) reports the fine-tune."""
    wanted = list(settings.strategies)
    jobs: dict[str, tuple] = {}
    if "fine_tune" in wanted or "interpolate" in wanted:
        jobs["fine_tune"] = (champion, prepared.train_x, prepared.train_y, settings, on_epoch)
    if "retrain" in wanted:
        retrain = settings.model_copy(
            update={"learning_rate": settings.retrain_learning_rate, "l2_sp": 0.0}
        )
        fresh = fresh_copy(champion, settings.seed)
        jobs["retrain"] = (fresh, prepared.retrain_x, prepared.retrain_y, retrain, None)
    with ThreadPoolExecutor(max_workers=len(jobs) if settings.worker else 1) as pool:
        futures = {name: pool.submit(fine_tune_in_worker, *job) for name, job in jobs.items()}
    trained: list[Trained] = []
    failures: list[dict] = []
    for name, future in futures.items():
        try:
            result = future.result()
        except FineTuneFailed as exc:
            failures.append({"strategy": name, "reason": exc.reason})
            continue
        if name == "retrain" or "fine_tune" in wanted:
            trained.append(Trained(name, result.model, result.summary()))
        if name == "fine_tune" and "interpolate" in wanted:
            for alpha in INTERPOLATION_STEPS:
                begun = time.perf_counter()
                mixed = interpolate(champion, result.model, alpha)
                spent = {"seconds": round(time.perf_counter() - begun, 4)}
                trained.append(Trained("interpolate", mixed, spent, alpha))
    if not trained:
        raise FineTuneFailed("; ".join(f"{f['strategy']}: {f['reason']}" for f in failures))
    for item in trained:
        item.summary.setdefault("rows", int(len(_rows_for(item.strategy, prepared))))
    return trained, failures


def _rows_for(strategy: str, prepared: Prepared) -> np.ndarray:
    return prepared.retrain_y if strategy == "retrain" else prepared.train_y
