"""Corrections on drift nobody here designed: River's synthetic streams through the real loop.

    python bench/drift_streams.py [--streams sea,stagger,sine,mixed,sea_covariate]
                                  [--seeds 1,2] [--rate 60] [--live 8000]

Per stream and seed: River generates the rows (`river.datasets.synth`, a dev dependency; the
change at a known row, abrupt or gradual via `ConceptDriftStream`, or a covariate shift that
keeps the concept). 2,000 rows before the change train the built-in MLP on warden's encoding,
2,000 more are the reference. Then the live rows go as a user's traffic would: POST /predict to
`warden serve` (which logs every prediction to Kafka), labels 200 rows late on the labels
topic, `warden run` with default correction settings (checks every 2 s, auto approval) on the
embedded broker and SQLite. Printed per stream: prequential served accuracy before and after
the change, rows from the change to the error incident and to the validated swap, accuracy of
the served model on the last third, and on the same rows River's HoeffdingAdaptiveTree and ARF
(prequential from the first training row) and the oracle (the same MLP trained on all
post-change rows before the last third). Then `ratio served/oracle: X` and
`ratio served/river_hat: Y` per stream. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from river import forest, tree
from river.datasets import synth

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from correctors.models.first_version import train_first_version  # noqa: E402
from correctors.models.modeling import predict_proba  # noqa: E402
from correctors.zoo import mlp_classifier  # noqa: E402
from watcher.config import ModelConfig, WardenConfig  # noqa: E402
from watcher.kafka.broker import EmbeddedBroker, free_port  # noqa: E402
from watcher.kafka.clients import ensure_topics, make_producer  # noqa: E402
from watcher.kafka.wire import encode  # noqa: E402
from watcher.onboarding.encoder import warden_encoder  # noqa: E402

MODEL = "stream"
TRAIN_ROWS, REFERENCE_ROWS = 2000, 2000
LABEL_DELAY = 200
BATCH = 20


@dataclass(frozen=True)
class StreamSpec:
    name: str
    kind: str  # "abrupt", "gradual" or "covariate"
    make: object  # seed -> (before, after) River datasets, or a row filter for covariate
    width: int = 1


def _sea(seed):
    return synth.SEA(variant=0, seed=seed), synth.SEA(variant=3, seed=seed + 100)


def _stagger(seed):
    return (
        synth.STAGGER(classification_function=0, seed=seed),
        synth.STAGGER(classification_function=2, seed=seed + 100),
    )


def _sine(seed):
    return (
        synth.Sine(classification_function=0, seed=seed),
        synth.Sine(classification_function=2, seed=seed + 100),
    )


def _mixed(seed):
    return (
        synth.Mixed(classification_function=0, seed=seed),
        synth.Mixed(classification_function=1, seed=seed + 100),
    )


STREAMS = {
    "sea": StreamSpec("sea", "abrupt", _sea),
    "stagger": StreamSpec("stagger", "abrupt", _stagger),
    "sine": StreamSpec("sine", "gradual", _sine, width=1500),
    "mixed": StreamSpec("mixed", "abrupt", _mixed),
    "sea_covariate": StreamSpec("sea_covariate", "covariate", _sea),
}


def _row(x: dict) -> dict:
    """River's features as warden columns: numbers stay numeric, the rest become categories."""
    out = {}
    for key, value in x.items():
        name = key if isinstance(key, str) else f"x{key}"
        out[name] = str(value) if isinstance(value, bool | np.bool_) else value
    return out


def generate(spec: StreamSpec, seed: int, live: int, change: int) -> pd.DataFrame:
    """TRAIN + REFERENCE rows before the change, then `live` rows with the change at `change`."""
    before, after = spec.make(seed)
    start = TRAIN_ROWS + REFERENCE_ROWS
    if spec.kind == "covariate":  # same concept; after the change only x1 > 7 arrives
        rows, source = [], iter(before)
        while len(rows) < start + live:
            x, y = next(source)
            if len(rows) >= start + change and x[1] <= 7.0:
                continue
            rows.append((x, y))
    elif spec.kind == "abrupt":  # River's ConceptDriftStream overflows at width 1
        rows = list(before.take(start + change)) + list(after.take(live - change))
    else:
        stream = synth.ConceptDriftStream(
            stream=before, drift_stream=after, position=start + change, width=spec.width, seed=seed
        )
        rows = list(stream.take(start + live))
    frame = pd.DataFrame([_row(x) for x, _ in rows])
    frame["label"] = [int(y) for _, y in rows]
    return frame


@dataclass
class Run:
    stream: str
    seed: int
    served: list = field(default_factory=list)  # served prediction per live row
    versions: list = field(default_factory=list)
    timeline: list = field(default_factory=list)  # (time, live rows sent)


def definition(folder: Path, frame: pd.DataFrame) -> ModelConfig:
    features = [c for c in frame if c != "label"]
    categorical = [
        c for c in features if frame[c].dtype == object or c in ("size", "color", "shape")
    ]
    return ModelConfig(
        factory="correctors.zoo:mlp_classifier",
        reference=folder / "reference.csv",
        numeric_features=[c for c in features if c not in categorical],
        categorical_features=categorical,
    )


def prepare_model(folder: Path, frame: pd.DataFrame) -> tuple[ModelConfig, int]:
    """Reference and initial weights, trained on warden's encoding of the first rows."""
    frame.iloc[TRAIN_ROWS : TRAIN_ROWS + REFERENCE_ROWS].to_csv(
        folder / "reference.csv", index=False
    )
    model_cfg = definition(folder, frame)
    encoding = warden_encoder(WardenConfig(models={MODEL: model_cfg}), MODEL)
    training = frame.iloc[:TRAIN_ROWS]
    train_first_version(
        lambda: mlp_classifier(encoding.width, len(encoding.classes)),
        encoding.transform(training),
        encoding.targets(training),
        epochs=100,
        patience=8,
        weights=folder / "weights.pt",
    )
    return model_cfg, encoding.width


def write_config(folder: Path, model_cfg: ModelConfig, width: int, bootstrap: str) -> Path:
    config = folder / "warden.toml"
    config.write_text(
        f"""[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "bench"

[storage]
url = "sqlite:///warden.db"
registry = "registry"
reports = "reports"

[alerts]
log = true
kafka = false
file = "alerts.jsonl"

[http]
port = 0

[models.{MODEL}]
factory = "correctors.zoo:mlp_classifier"
factory_kwargs = {{ n_inputs = {width}, n_classes = 2 }}
weights = "weights.pt"
reference = "reference.csv"
numeric_features = {json.dumps(model_cfg.numeric_features)}
categorical_features = {json.dumps(model_cfg.categorical_features)}

[models.{MODEL}.checks]
interval_seconds = 2

[models.{MODEL}.approval]
mode = "auto"
"""
    )
    return config


def _warden(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = open(log, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", *args], stdout=out, stderr=out, env=env
    )


def stream_through_warden(folder: Path, frame: pd.DataFrame, run: Run, rate: float) -> None:
    model_cfg, width = prepare_model(folder, frame)
    live = frame.iloc[TRAIN_ROWS + REFERENCE_ROWS :].reset_index(drop=True)
    features = [*model_cfg.numeric_features, *model_cfg.categorical_features]
    with EmbeddedBroker(folder / "broker.log") as broker:
        config = write_config(folder, model_cfg, width, broker.bootstrap)
        cfg_kafka = WardenConfig.model_validate({"kafka": {"bootstrap_servers": broker.bootstrap}})
        ensure_topics(cfg_kafka.kafka, ["predictions", "labels", "warden.alerts"])
        daemon = _warden("run", "--config", str(config), log=folder / "run.log")
        port = free_port()
        serve = _warden(
            "serve", MODEL, "--config", str(config), "--port", str(port), log=folder / "serve.log"
        )
        producer = make_producer(cfg_kafka.kafka)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        try:
            _wait_ready(client)
            started = time.monotonic()
            for start in range(0, len(live), BATCH):
                chunk = live.iloc[start : start + BATCH]
                ids = [f"{run.stream}-{run.seed}-{i}" for i in chunk.index]
                rows = [{f: _plain(r[f]) for f in features} for _, r in chunk.iterrows()]
                body = client.post("/predict", json={"rows": rows, "ids": ids}).json()
                run.served += [str(p) for p in body["predictions"]]
                run.versions += [body["version"]] * len(chunk)
                due = live.iloc[
                    max(0, start - LABEL_DELAY) : max(0, start + len(chunk) - LABEL_DELAY)
                ]
                _send_labels(producer, run, due)
                run.timeline.append((time.time(), start + len(chunk)))
                lag = started + (start + len(chunk)) / rate - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
            _send_labels(producer, run, live.iloc[max(0, len(live) - LABEL_DELAY) :])
            producer.flush()
            time.sleep(5)
        finally:
            client.close()
            producer.close()
            for proc in (serve, daemon):
                proc.send_signal(signal.SIGTERM)
            for proc in (serve, daemon):
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _send_labels(producer, run: Run, rows: pd.DataFrame) -> None:
    for i, label in zip(rows.index, rows["label"], strict=True):
        message = {"prediction_id": f"{run.stream}-{run.seed}-{i}", "label": int(label)}
        producer.send("labels", encode(message))


def _wait_ready(client: httpx.Client, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("warden serve did not become ready")


def _row_at(run: Run, when: str | None) -> int | None:
    """The live row being sent when the daemon did something (from its timestamps)."""
    if when is None:
        return None
    ts = datetime.fromisoformat(when).timestamp() if isinstance(when, str) else when
    sent = [rows for t, rows in run.timeline if t <= ts]
    return sent[-1] if sent else 0


def daemon_milestones(folder: Path, run: Run) -> dict:
    db = sqlite3.connect(folder / "warden.db")
    try:
        opened = db.execute("select min(opened_at) from incidents where kind = 'error'").fetchone()[
            0
        ]
        swaps = [
            r[0] for r in db.execute("select ts from events where kind = 'swapped' order by ts")
        ]
        cands = db.execute(
            "select id, status, training from candidates order by created_at"
        ).fetchall()
        rollbacks = db.execute("select count(*) from events where kind = 'rolled_back'").fetchone()[
            0
        ]
    finally:
        db.close()
    utc = lambda s: s if s is None or "+" in s else s + "+00:00"  # noqa: E731 - SQLite is naive
    summaries = [json.loads(t or "{}") for _, _, t in cands]
    strategies = [t.get("strategy") for t in summaries]
    return {
        "attempt_seconds": [t["seconds_total"] for t in summaries if "seconds_total" in t],
        "strategy_seconds": strategy_seconds(summaries),
        "incident_row": _row_at(run, utc(opened)),
        "swap_row": _row_at(run, utc(swaps[0])) if swaps else None,
        "candidates": [
            f"{cid}:{status}:{s}" for (cid, status, _), s in zip(cands, strategies, strict=True)
        ],
        "rollbacks": rollbacks,
    }


def strategy_seconds(summaries: list[dict]) -> dict[str, list[float]]:
    """Per strategy, the training seconds of each attempt (worker time where it had one)."""
    out: dict[str, list[float]] = {}
    for summary in summaries:
        for row in summary.get("strategies", []):
            training = row.get("training") or {}
            seconds = training.get("worker_seconds", training.get("seconds"))
            if seconds is not None:
                out.setdefault(row["strategy"].split(" ")[0], []).append(float(seconds))
    return out


def print_times(results: list[dict]) -> None:
    """Correction time per attempt and per strategy, over every run (medians, maxima)."""
    attempts = [s for r in results for s in r["attempt_seconds"]]
    if attempts:
        print(
            f"correction time per attempt: median {np.median(attempts):.1f} s, "
            f"max {max(attempts):.1f} s over {len(attempts)} attempts"
        )
    merged: dict[str, list[float]] = {}
    for r in results:
        for name, values in r["strategy_seconds"].items():
            merged.setdefault(name, []).extend(values)
    for name, values in sorted(merged.items()):
        print(f"  {name}: median {np.median(values):.3f} s, max {max(values):.3f} s")


def river_prequential(frame: pd.DataFrame, model) -> np.ndarray:
    """Predict then learn, from the first training row; returns the live rows' hits."""
    hits = []
    for i, row in enumerate(frame.to_dict("records")):
        y = row.pop("label")
        x = {k: v for k, v in row.items()}
        if i >= TRAIN_ROWS + REFERENCE_ROWS:
            hits.append(model.predict_one(x) == y)
        model.learn_one(x, y)
    return np.asarray(hits, dtype=float)


def oracle_hits(folder: Path, frame: pd.DataFrame, change: int, third: int) -> np.ndarray:
    """The same MLP on warden's encoding, trained on every post-change row before the last
    third (that is what a full retrain on the new concept could know then)."""
    model_cfg = definition(folder, frame)
    encoding = warden_encoder(WardenConfig(models={MODEL: model_cfg}), MODEL)
    live = frame.iloc[TRAIN_ROWS + REFERENCE_ROWS :].reset_index(drop=True)
    train = live.iloc[change:third]
    result = train_first_version(
        lambda: mlp_classifier(encoding.width, len(encoding.classes)),
        encoding.transform(train),
        encoding.targets(train),
        epochs=200,
        patience=8,
    )
    test = live.iloc[third:]
    predicted = predict_proba(result.model, encoding.transform(test)).argmax(axis=1)
    return (predicted == encoding.targets(test)).astype(float)


def report(spec: StreamSpec, seed: int, folder: Path, frame: pd.DataFrame, run: Run, change: int):
    live = frame.iloc[TRAIN_ROWS + REFERENCE_ROWS :].reset_index(drop=True)
    truth = live["label"].astype(str).to_numpy()
    served = np.asarray(run.served) == truth
    third = 2 * len(live) // 3
    hat = river_prequential(frame, tree.HoeffdingAdaptiveTreeClassifier(seed=seed))
    arf = river_prequential(frame, forest.ARFClassifier(seed=seed))
    oracle = oracle_hits(folder, frame, change, third)
    got = daemon_milestones(folder, run)
    to_row = lambda r: None if r is None else r - change  # noqa: E731
    last = {
        "served": served[third:].mean(),
        "river_hat": hat[third:].mean(),
        "river_arf": arf[third:].mean(),
        "oracle": oracle.mean(),
    }
    print(
        f"{spec.name:<14} seed {seed} ({spec.kind}): served before {served[:change].mean():.3f}, "
        f"after {served[change:].mean():.3f}; change→incident {to_row(got['incident_row'])} rows, "
        f"change→swap {to_row(got['swap_row'])} rows; last third: served {last['served']:.3f}, "
        f"HAT {last['river_hat']:.3f}, ARF {last['river_arf']:.3f}, oracle {last['oracle']:.3f}"
    )
    print(f"  candidates {got['candidates']}, rollbacks {got['rollbacks']}")
    print(f"ratio served/oracle {spec.name} seed {seed}: {last['served'] / last['oracle']:.3f}")
    print(
        f"ratio served/river_hat {spec.name} seed {seed}: {last['served'] / last['river_hat']:.3f}"
    )
    return {**last, **got, "stream": spec.name, "seed": seed, "change": change}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default=",".join(STREAMS))
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--rate", type=float, default=60.0, help="live rows per second")
    parser.add_argument("--live", type=int, default=8000, help="live rows per stream")
    parser.add_argument("--change", type=int, default=2000, help="live row of the change")
    parser.add_argument("--keep", type=Path, default=None, help="keep each run's folder here")
    args = parser.parse_args()
    results = []
    for name in args.streams.split(","):
        spec = STREAMS[name]
        for seed in (int(s) for s in args.seeds.split(",")):
            base = args.keep or Path(tempfile.mkdtemp(prefix="warden-streams-"))
            folder = base / f"{name}-{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            frame = generate(spec, seed, args.live, args.change)
            run = Run(name, seed)
            stream_through_warden(folder, frame, run, args.rate)
            results.append(report(spec, seed, folder, frame, run, args.change))
    print_times(results)
    print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
