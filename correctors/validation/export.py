"""Export to ONNX (dynamic batch axis) and prove the file computes what torch computes."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from correctors.models.modeling import predict_outputs


class _WithSoftmax(nn.Module):
    """Serve probabilities, not logits: what callers and the prediction log need."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


class _AsColumn(nn.Module):
    """Regression: one value per row, shaped (n, 1) like a single 'probability' column."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).reshape(-1, 1)


def export_onnx(model: nn.Module, n_inputs: int, path: Path, task: str = "classification") -> Path:
    """Export with the dynamo exporter and a symbolic batch dimension, then run onnx.checker."""
    model = model.cpu().eval()
    wrapped = _AsColumn(model) if task == "regression" else _WithSoftmax(model)
    example = (torch.zeros(2, n_inputs, dtype=torch.float32),)
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            wrapped,
            example,
            input_names=["features"],
            output_names=["probabilities"],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,
        )
        if program is None:
            raise RuntimeError("torch.onnx.export returned no program")
        program.save(str(path))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def onnx_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity(model: nn.Module, path: Path, x: np.ndarray, task: str = "classification") -> float:
    """Max absolute difference between torch and onnxruntime outputs on `x`."""
    torch_out = predict_outputs(model.cpu(), x, task)
    onnx_out = onnx_session(path).run(None, {"features": x.astype(np.float32)})[0]
    return float(np.max(np.abs(torch_out - onnx_out))) if len(x) else 0.0
