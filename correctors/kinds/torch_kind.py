"""The torch kind: a factory's module with a state dict, trained by the fine-tune, interpolate
and retrain strategies in worker processes (correctors.training.strategies)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from correctors.kinds.base import KindAdapter, Parity
from correctors.models.modeling import load_state_dict, predict_outputs
from correctors.settings import CorrectionConfig
from correctors.training.trained import Trained
from correctors.validation.export import export_onnx, parity

if TYPE_CHECKING:
    import onnx

    from correctors.training.dataset import Prepared
    from correctors.training.finetune import EpochCallback


class TorchAdapter(KindAdapter):
    kind = "torch"
    file_name = "weights.pt"
    save_hint = "torch.save(model.state_dict(), 'weights.pt')"

    def load(self, path: Path, trusted: Sequence[str] = ()) -> Any:
        """The state dict (the module is built from the card's factory)."""
        return load_state_dict(path)

    def save(self, model: Any, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)

    def scores(self, model: Any, x: np.ndarray, task: str) -> np.ndarray:
        return predict_outputs(model, x, task)

    def onnx_graph(self, model: Any, width: int, task: str) -> onnx.ModelProto:
        raise NotImplementedError("the torch kind exports with export_onnx")

    def export(self, model: Any, width: int, path: Path, task: str) -> Path:
        return export_onnx(model, width, path, task)

    def parity(self, model: Any, path: Path, x: np.ndarray, task: str) -> Parity:
        return Parity(parity(model, path, x, task), 0, len(x))

    def train(
        self,
        model: Any,
        prepared: Prepared,
        settings: CorrectionConfig,
        task: str,
        on_epoch: EpochCallback | None = None,
    ) -> tuple[list[Trained], list[dict]]:
        from correctors.training.strategies import train_strategies

        return train_strategies(model, prepared, settings, on_epoch=on_epoch)
