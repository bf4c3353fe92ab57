"""How fast and how well warden corrects the demo's shift with a model of each non-torch kind.

    python bench/correct_kinds.py [--models svc lightgbm xgboost] [--n 2000]

Per model: the demo's first model of that kind (`watcher.demo.first_models`) bootstrapped as
v1 in a fresh registry and SQLite file, N labelled SHIFTED rows served by v1 stored through the
intake path, then what the daemon's correction job does (`train_candidate`: prepare, every
strategy of the kind, the gate, ONNX export, parity). Prints one line per model,

    correct svc: <S> s end to end, training <T> s, shifted accuracy <A0> -> <A1>
    ratio end-to-end/training svc: <X>

end to end from reading the window to the recorded candidate; training: the strategies' own
fit time (the search included); accuracy of v1 and of the candidate (when validated) on 3,000
fresh shifted rows. `bench/correct.py` measures the MLP. Seeded; no downloads.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402

from correctors.models.champion import bootstrap  # noqa: E402
from correctors.models.runtime import OnnxModel  # noqa: E402
from correctors.pipeline import Attempt, train_candidate  # noqa: E402
from storage.db import make_engine  # noqa: E402
from storage.intake import write_batch  # noqa: E402
from storage.queries import recent_window  # noqa: E402
from storage.registry import ModelRegistry  # noqa: E402
from watcher.config import load_config  # noqa: E402
from watcher.demo.credit import SHIFTED, generate, prediction_messages  # noqa: E402
from watcher.demo.run import MODEL, train_kind_model, write_config  # noqa: E402
from watcher.kafka.wire import encode, parse_prediction  # noqa: E402


def accuracy(registry: ModelRegistry, version: str, rows) -> float:
    preds, _ = OnnxModel.load(registry, MODEL, version).predict(rows)
    return float((np.array(preds).astype(int) == rows["label"].to_numpy()).mean())


def one(model: str, n: int, folder: Path) -> str:
    width, lines = train_kind_model(folder, Console(quiet=True), model)
    cfg = load_config(write_config(folder, "127.0.0.1:9", width, model_lines=lines))
    engine = make_engine(cfg.storage.engine_url())
    registry = ModelRegistry(cfg.storage.registry)
    bootstrap(engine, registry, MODEL, cfg.models[MODEL])
    frame = generate(n, SHIFTED, seed=21)
    preds, scores = OnnxModel.load(registry, MODEL, "v1").predict(frame)
    msgs = prediction_messages(frame, MODEL, "v1", preds, scores)
    for msg, label in zip(msgs, frame["label"], strict=True):
        msg["label"] = int(label)
    write_batch(engine, [parse_prediction(encode(m), 10**6) for m in msgs], [], [])
    definition = cfg.models[MODEL]
    began = time.perf_counter()
    window = recent_window(engine, MODEL, n, labelled_only=True)
    attempt = Attempt(
        MODEL, definition, definition.correction, window, drifted_columns=("utilization", "income")
    )
    cand = train_candidate(engine, registry, attempt)
    total = time.perf_counter() - began
    training = sum(
        float(s.get("training", {}).get("seconds", 0.0))
        + float(s.get("training", {}).get("search_seconds", 0.0))
        for s in (cand.training or {}).get("strategies", [])
    )
    evaluation = generate(3000, SHIFTED, seed=999)
    before = accuracy(registry, "v1", evaluation)
    after = accuracy(registry, cand.version, evaluation) if cand.status == "validated" else None
    shown = f"{after:.3f}" if after is not None else f"({cand.status})"
    return (
        f"correct {model}: {total:.1f} s end to end, training {training:.1f} s, shifted accuracy "
        f"{before:.3f} -> {shown}\nratio end-to-end/training {model}: {total / training:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["svc", "lightgbm", "xgboost"])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    for model in args.models:
        with tempfile.TemporaryDirectory(prefix=f"warden-bench-{model}-") as tmp:
            print(one(model, args.n, Path(tmp)), flush=True)


if __name__ == "__main__":
    main()
