"""What LightGBM and XGBoost share: the booster's probabilities in the served layout, and the
two strategies, each early-stopped on a validation split of the training rows (never the
gate's holdout):

- **continue**: more trees boosted from the champion's on the rows since the change plus
  replay, flagged rows weighted: the trees' analogue of fine-tuning;
- **retrain**: a fresh booster with the champion's settings on the recent rows plus the
  reference outside the region the recent labels contradict.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from correctors.kinds.base import KindAdapter, as_column, run_jobs, two_columns
from correctors.kinds.rows import Rows, champion_wrong, missing_classes, split, training_rows
from correctors.settings import CorrectionConfig
from correctors.training.trained import Trained
from correctors.training.worker import FineTuneFailed

if TYPE_CHECKING:
    from correctors.training.dataset import Prepared
    from correctors.training.finetune import EpochCallback

CONTINUE_ROUNDS = 200  # at most this many trees (per class) added to the champion's
RETRAIN_ROUNDS = 500
EARLY_STOPPING_ROUNDS = 20


class BoosterAdapter(KindAdapter):
    """A gradient-boosted trees kind; subclasses say how to predict raw and to boost."""

    @abstractmethod
    def raw_predict(self, model: Any, x: np.ndarray) -> np.ndarray:
        """The booster's own prediction: P(class 1), (n, classes) probabilities, or values."""

    @abstractmethod
    def params(self, model: Any, task: str, n_classes: int, seed: int) -> dict:
        """The champion's training settings, for continuing or refitting with the same."""

    @abstractmethod
    def boost(
        self, params: dict, fit: Rows, val: Rows, rounds: int, init: Any | None
    ) -> tuple[Any, int]:
        """Boost up to `rounds` more rounds from `init` (None: from scratch), early-stopped on
        `val`; returns the booster cut at its best round, and that round's count."""

    @abstractmethod
    def n_classes(self, model: Any, task: str) -> int: ...

    def scores(self, model: Any, x: np.ndarray, task: str) -> np.ndarray:
        raw = self.raw_predict(model, x)
        if task == "regression":
            return as_column(raw)
        return two_columns(raw) if raw.ndim == 1 else np.asarray(raw, dtype=np.float32)

    def train(
        self,
        model: Any,
        prepared: Prepared,
        settings: CorrectionConfig,
        task: str,
        on_epoch: EpochCallback | None = None,
    ) -> tuple[list[Trained], list[dict]]:
        n_classes = self.n_classes(model, task)
        params = self.params(model, task, n_classes, settings.seed)

        def wrong(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return champion_wrong(self.scores(model, x, task), y, task)

        recent, retrain = training_rows(prepared, wrong, settings.flagged_weight)

        def job(rows: Rows, rounds: int, init: Any | None):
            return lambda: self._boosted(params, rows, rounds, init, task, n_classes, settings)

        jobs = {
            "continue": job(recent, CONTINUE_ROUNDS, model),
            "retrain": job(retrain, RETRAIN_ROUNDS, None),
        }
        return run_jobs(jobs, lambda fitted: lambda x: self.scores(fitted, x, task))

    def _boosted(
        self,
        params: dict,
        rows: Rows,
        rounds: int,
        init: Any | None,
        task: str,
        n_classes: int,
        settings: CorrectionConfig,
    ) -> tuple[Any, dict]:
        fit, val = split(rows, settings.seed, task)
        if n_classes and missing_classes(fit.y, n_classes):
            raise FineTuneFailed(f"classes {missing_classes(fit.y, n_classes)} have no rows")
        begun = time.perf_counter()
        booster, best = self.boost(params, fit, val, rounds, init)
        summary = {
            "seconds": round(time.perf_counter() - begun, 4),
            "rows": len(rows),
            "validation_rows": len(val),
            "best_round": best,
            "weighted": True,
        }
        return booster, summary
