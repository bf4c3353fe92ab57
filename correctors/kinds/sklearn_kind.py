"""scikit-learn estimators and pipelines: loaded from a skops file with its trusted-type check,
exported with skl2onnx (no ZipMap: probabilities as a plain tensor).

Strategies, each judged by the gate like the torch kind's:

- **refit**: the champion's estimator (same hyperparameters) fitted afresh on the rows since
  the change plus replay, flagged rows weighted (`sample_weight`, where the final estimator
  takes it);
- **tuned**: the same rows, with the final estimator's main hyperparameters (an SVM's `C` and
  `gamma`, a linear model's regularisation) chosen on a split of those training rows, never
  on the gate's holdout, then fitted on all of them;
- **retrain**: the champion's estimator fitted on the recent rows plus the reference outside
  the region the recent labels contradict (left out when replay already took all of those:
  it would be refit again);
- **blend**: the champion and the tuned model's scores averaged, the new model weighing α
  (0.9 to 0.6; the gate keeps the largest that passes), one ONNX graph
  (`correctors.kinds.blend`).

A setting is chosen on what the gate judges: the served probabilities' argmax, not `predict`
(an SVC's Platt-calibrated probabilities disagree with its decision function on some rows; a
search on `predict` chose settings that lost 6 points on the guarded reference).
"""

from __future__ import annotations

import itertools
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from correctors.kinds.base import KindAdapter, KindLoadError, as_column, refuse_pickle, run_jobs
from correctors.kinds.blend import BLEND_STEPS, blend
from correctors.kinds.rows import Rows, champion_wrong, missing_classes, split, training_rows
from correctors.kinds.search import REFERENCE_WEIGHTS, Tried, capped, choose, split_quality
from correctors.models.fitting import label_text
from correctors.settings import CorrectionConfig
from correctors.training.trained import Trained
from correctors.training.worker import FineTuneFailed

if TYPE_CHECKING:
    import onnx

    from correctors.training.dataset import Prepared
    from correctors.training.finetune import EpochCallback

# an SVM's fit grows ~n² (and 5-fold with probability=True): past this many rows a strategy
# fits on a seeded sample (a refinement late in a long change held 10,000+ rows)
MAX_FIT_ROWS = 6000
C_FACTORS = (1.0, 4.0)  # around the champion's value (a smaller C was never chosen)
GAMMA_FACTORS = (0.5, 1.0)
LINEAR_FACTORS = (0.1, 0.3, 1.0, 3.0, 10.0)  # around a linear model's C or alpha


def final_step(model: Any) -> tuple[Any, str]:
    """The estimator that predicts, and the prefix of its parameters (`svc__` in a Pipeline)."""
    steps = getattr(model, "steps", None)
    if steps:
        name, last = steps[-1]
        return last, f"{name}__"
    return model, ""


class SklearnAdapter(KindAdapter):
    kind = "sklearn"
    file_name = "model.skops"
    save_hint = "skops.io.dump(model, 'model.skops')"

    def load(self, path: Path, trusted: Sequence[str] = ()) -> Any:
        import skops.io as sio

        refuse_pickle(path)
        if not zipfile.is_zipfile(path):
            raise KindLoadError(
                f"{path} is not a skops file: save the model with {self.save_hint}", "weights"
            )
        found = sio.get_untrusted_types(file=path)
        refused = [t for t in found if t not in set(trusted)]
        if refused:
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise KindLoadError(
                f"{path} holds the untrusted type {refused[0]!r}{more}; add it to "
                "trusted_types only if you trust the code it runs",
                "trusted_types",
            )
        try:
            return sio.load(path, trusted=list(found))
        except Exception as exc:  # noqa: BLE001 - any failure is a load error to report
            reason = f"cannot load {path}: {type(exc).__name__}: {exc}"
            raise KindLoadError(reason, "weights") from exc

    def save(self, model: Any, path: Path) -> None:
        import skops.io as sio

        path.parent.mkdir(parents=True, exist_ok=True)
        sio.dump(model, path)

    def scores(self, model: Any, x: np.ndarray, task: str) -> np.ndarray:
        if task == "regression":
            return as_column(model.predict(x))
        return np.asarray(model.predict_proba(x), dtype=np.float32)

    def classes(self, model: Any) -> list[str] | None:
        found = getattr(model, "classes_", None)
        return None if found is None else [label_text(c) for c in found]

    def n_features(self, model: Any) -> int | None:
        found = getattr(model, "n_features_in_", None)
        return None if found is None else int(found)

    def onnx_graph(self, model: Any, width: int, task: str) -> onnx.ModelProto:
        from skl2onnx import to_onnx
        from skl2onnx.common.data_types import FloatTensorType

        final, _ = final_step(model)
        options = {id(final): {"zipmap": False}} if task != "regression" else None
        proto = to_onnx(
            model, initial_types=[("features", FloatTensorType([None, width]))], options=options
        )
        return proto

    def train(
        self,
        model: Any,
        prepared: Prepared,
        settings: CorrectionConfig,
        task: str,
        on_epoch: EpochCallback | None = None,
    ) -> tuple[list[Trained], list[dict]]:
        n_classes = 0
        if task != "regression":
            n_classes = self.scores(model, prepared.x_ref[:1], task).shape[1]

        def wrong(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return champion_wrong(self.scores(model, x, task), y, task)

        recent, retrain = training_rows(prepared, wrong, settings.flagged_weight)
        recent, retrain = (
            capped(recent, settings.seed, MAX_FIT_ROWS),
            capped(retrain, settings.seed, MAX_FIT_ROWS),
        )
        jobs = {
            "refit": lambda: self._fit(model, {}, recent, n_classes),
            "tuned": lambda: self._tuned(model, recent, task, n_classes, settings),
        }
        if len(retrain) != len(recent):  # else replay took every eligible row: refit's rows
            jobs["retrain"] = lambda: self._fit(model, {}, retrain, n_classes)
        trained, failures = run_jobs(jobs, lambda fitted: self._outputs(fitted, task))
        return trained + self._blends(model, trained, task, n_classes), failures

    def _blends(
        self, model: Any, trained: list[Trained], task: str, n_classes: int
    ) -> list[Trained]:
        """The champion blended with the tuned model (else the first trained), per α."""
        base = next((t for t in trained if t.strategy == "tuned"), trained[0])
        out = []
        for alpha in BLEND_STEPS:
            mixed = blend(model, base.model, alpha, task, n_classes)
            summary = {"seconds": 0.0, "rows": base.summary.get("rows", 0), "of": base.label}
            out.append(Trained("blend", mixed, summary, alpha, self._outputs(mixed, task)))
        return out

    def _outputs(self, fitted: Any, task: str):
        return lambda x: self.scores(fitted, x, task)

    def _fit(self, model: Any, params: dict, rows: Rows, n_classes: int) -> tuple[Any, dict]:
        """A clone of the champion with `params`, fitted on weighted `rows`."""
        from sklearn.base import clone
        from sklearn.utils.validation import has_fit_parameter

        if n_classes and missing_classes(rows.y, n_classes):
            raise FineTuneFailed(f"classes {missing_classes(rows.y, n_classes)} have no rows")
        fresh = clone(model).set_params(**params)
        final, prefix = final_step(fresh)
        weighted = has_fit_parameter(final, "sample_weight")
        fit_params = {f"{prefix}sample_weight": rows.w} if weighted else {}
        begun = time.perf_counter()
        fresh.fit(rows.x, rows.y, **fit_params)
        spent = round(time.perf_counter() - begun, 4)
        return fresh, {"seconds": spent, "rows": len(rows), "weighted": weighted}

    def _tuned(
        self, model: Any, rows: Rows, task: str, n_classes: int, settings: CorrectionConfig
    ) -> tuple[Any, dict]:
        """Hyperparameters (and the reference rows' weight) chosen on a split of the training
        rows as `correctors.kinds.search` says, then fitted on all of them."""
        grid = search_grid(model, rows.x)
        if not grid:
            name = type(final_step(model)[0]).__name__
            raise FineTuneFailed(f"no hyperparameter to search for {name}")
        fit_rows, val_rows = split(rows, settings.seed, task)
        fit_rows = capped(fit_rows, settings.seed)
        begun = time.perf_counter()
        tried = []
        for params, factor in itertools.product(grid, REFERENCE_WEIGHTS):
            fitted, _ = self._fit(model, params, fit_rows.reference_weighted(factor), n_classes)
            scores = split_quality(self._scorer(fitted, task), val_rows, task)
            tried.append(Tried(params, factor, *scores))
        _, champion = split_quality(self._scorer(model, task), val_rows, task)
        best = choose(tried, champion, settings.forgetting_tolerance, task)
        searched = round(time.perf_counter() - begun, 4)
        final_rows = rows.reference_weighted(best.reference_weight)
        fitted, summary = self._fit(model, best.params, final_rows, n_classes)
        return fitted, {
            **summary,
            "search_seconds": searched,
            "tried": len(tried),
            "chosen": best.to_dict(),
        }

    def _scorer(self, fitted: Any, task: str) -> Callable[[np.ndarray], np.ndarray]:
        """What the gate will judge: the served scores (for an SVC, its calibrated
        probabilities, whose argmax can differ from its `predict`)."""
        return lambda x: self.scores(fitted, x, task)


def search_grid(model: Any, x: np.ndarray) -> list[dict]:
    """The settings tried: an SVM's C × gamma around the champion's, else a linear model's C
    or alpha; empty when the final estimator has none of them."""
    final, prefix = final_step(model)
    params = final.get_params()
    if "C" in params and "gamma" in params and params.get("kernel") != "linear":
        gamma = _gamma(model, final, x)
        pairs = itertools.product(C_FACTORS, GAMMA_FACTORS)
        return [{f"{prefix}C": params["C"] * c, f"{prefix}gamma": gamma * g} for c, g in pairs]
    for name in ("C", "alpha"):
        value = params.get(name)
        if isinstance(value, int | float) and value > 0:
            return [{f"{prefix}{name}": value * f} for f in LINEAR_FACTORS]
    return []


def _gamma(model: Any, final: Any, x: np.ndarray) -> float:
    """The champion's gamma as a number ("scale" and "auto" as scikit-learn computes them)."""
    value = final.get_params()["gamma"]
    if isinstance(value, int | float):
        return float(value)
    steps = getattr(model, "steps", None)
    xt = model[:-1].transform(x) if steps and len(steps) > 1 else x
    xt = np.asarray(xt, dtype=np.float64)
    if value == "auto":
        return 1.0 / xt.shape[1]
    variance = float(xt.var())
    return 1.0 / (xt.shape[1] * variance) if variance > 0 else 1.0
