"""What every model kind answers to, so the rest of the loop (checks, gate, registry, swap,
serving, rollback) never asks which kind it has: load a file, score encoded rows, train
strategies on weighted rows, save, export to ONNX with the served layout, check parity.

The served layout is the torch kind's: one input `features` (float32, the encoder's width) and
one output, class probabilities in the model's class order, or one value per row as (n, 1).
A converter's other outputs (skl2onnx and onnxmltools also return the label) are dropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import onnx

from correctors.models.fitting import ModelSetupError
from correctors.settings import CorrectionConfig
from correctors.training.trained import Trained
from correctors.training.worker import FineTuneFailed
from correctors.validation.export import onnx_session

if TYPE_CHECKING:
    from correctors.training.dataset import Prepared
    from correctors.training.finetune import EpochCallback

INPUT, OUTPUT = "features", "probabilities"
PICKLE_MAGIC = b"\x80"  # every pickle protocol >= 2 starts with PROTO
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".sav")


class KindLoadError(ModelSetupError):
    """A model file of a kind cannot be used; `key` is the config key to fix."""


@dataclass(frozen=True)
class Parity:
    """The native model against its ONNX file on the same rows."""

    max_abs_diff: float
    label_mismatches: int  # rows whose predicted class differs (classification)
    rows: int

    @property
    def gate_figure(self) -> float:
        """What the gate's parity rule compares with its tolerance: a differing label fails
        however close the scores are (at least 1.0 then)."""
        return self.max_abs_diff if self.label_mismatches == 0 else max(self.max_abs_diff, 1.0)


def refuse_pickle(path: Path) -> None:
    """A pickle (or joblib) file is refused before anything reads it: nothing is unpickled."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise KindLoadError(
            f"{path} is a {path.suffix} file: warden never unpickles a model file", "weights"
        )
    try:
        with path.open("rb") as handle:
            head = handle.read(1)
    except OSError as exc:
        raise KindLoadError(f"cannot read {path}: {exc}", "weights") from exc
    if head == PICKLE_MAGIC:
        raise KindLoadError(f"{path} is a pickle: warden never unpickles a model file", "weights")


class KindAdapter(ABC):
    """One model kind. Every method is stateless; the model object is the kind's own."""

    kind: ClassVar[str]
    file_name: ClassVar[str]  # the native file in a registry version's folder
    save_hint: ClassVar[str]  # how a user writes a file this kind loads

    @abstractmethod
    def load(self, path: Path, trusted: Sequence[str] = ()) -> Any:
        """The model in `path`; raises KindLoadError (with the key to fix)."""

    @abstractmethod
    def save(self, model: Any, path: Path) -> None: ...

    @abstractmethod
    def scores(self, model: Any, x: np.ndarray, task: str) -> np.ndarray:
        """Class probabilities (n, classes), or (regression) one value per row as (n, 1)."""

    @abstractmethod
    def onnx_graph(self, model: Any, width: int, task: str) -> onnx.ModelProto:
        """The converter's graph, input `features`; `served_graph` trims its outputs."""

    @abstractmethod
    def train(
        self,
        model: Any,
        prepared: Prepared,
        settings: CorrectionConfig,
        task: str,
        on_epoch: EpochCallback | None = None,
    ) -> tuple[list[Trained], list[dict]]:
        """Every strategy of this kind; raises FineTuneFailed when none could be trained."""

    def classes(self, model: Any) -> list[str] | None:
        """The model's own class labels in its output order, when it knows them."""
        return None

    def n_features(self, model: Any) -> int | None:
        """How many inputs the model was fitted on, when it knows."""
        return None

    def export(self, model: Any, width: int, path: Path, task: str) -> Path:
        proto = served_graph(self.onnx_graph(model, width, task), task)
        onnx.checker.check_model(proto, full_check=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(proto, str(path))
        return path

    def parity(self, model: Any, path: Path, x: np.ndarray, task: str) -> Parity:
        x = x.astype(np.float32, copy=False)
        if not len(x):
            return Parity(0.0, 0, 0)
        native = self.scores(model, x, task)
        served = onnx_session(path).run(None, {INPUT: x})[0]
        if native.shape != served.shape:
            raise ValueError(f"ONNX returns shape {served.shape}, the model {native.shape}")
        diff = float(np.max(np.abs(native - served)))
        mismatches = 0
        if task != "regression":
            mismatches = int((native.argmax(axis=1) != served.argmax(axis=1)).sum())
        return Parity(diff, mismatches, len(x))


def served_graph(proto: onnx.ModelProto, task: str) -> onnx.ModelProto:
    """Keep the scores output only, named `probabilities` (as the torch export names it)."""
    outputs = list(proto.graph.output)
    if task == "regression" or len(outputs) == 1:
        keep = outputs[-1]
    else:
        keep = next((o for o in outputs if "prob" in o.name), outputs[-1])
    kept = onnx.ValueInfoProto()
    kept.CopyFrom(keep)
    keep = kept
    del proto.graph.output[:]
    if keep.name != OUTPUT:  # renamed wherever it appears (a converter may read it again)
        if any(OUTPUT in (*n.input, *n.output) for n in proto.graph.node):
            raise ValueError(f"the converter's graph already uses the name {OUTPUT!r}")
        for node in proto.graph.node:
            node.input[:] = [OUTPUT if name == keep.name else name for name in node.input]
            node.output[:] = [OUTPUT if name == keep.name else name for name in node.output]
        keep.name = OUTPUT
    proto.graph.output.append(keep)
    return proto


def as_column(values: np.ndarray) -> np.ndarray:
    """Regression outputs as the served (n, 1) float32 column."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 1)


def two_columns(positive: np.ndarray) -> np.ndarray:
    """A binary model's P(class 1) as the served two probability columns."""
    p = np.asarray(positive, dtype=np.float32).reshape(-1)
    return np.stack([1.0 - p, p], axis=1)


def run_jobs(jobs: dict, outputs_of) -> tuple[list[Trained], list[dict]]:
    """Run each strategy; a strategy that fails is recorded, not fatal, unless all fail."""
    trained: list[Trained] = []
    failures: list[dict] = []
    for name, job in jobs.items():
        try:
            fitted, summary = job()
        except FineTuneFailed as exc:
            failures.append({"strategy": name, "reason": exc.reason})
            continue
        except (ValueError, RuntimeError) as exc:  # a fit the data cannot support
            failures.append({"strategy": name, "reason": f"{type(exc).__name__}: {exc}"})
            continue
        trained.append(Trained(name, fitted, summary, outputs=outputs_of(fitted)))
    if not trained:
        raise FineTuneFailed("; ".join(f"{f['strategy']}: {f['reason']}" for f in failures))
    return trained, failures
