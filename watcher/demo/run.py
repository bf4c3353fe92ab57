"""`warden demo`: the whole loop on embedded defaults, visibly, in a few minutes.

Embedded Tansu broker, a SQLite file and a registry under the demo folder, a built-in MLP
trained on generated credit data, served with onnxruntime; normal traffic, then a covariate +
concept shift. The daemon (the same class `warden run` starts) detects, alerts, fine-tunes,
validates and swaps; the demo then measures accuracy on shifted traffic before and after.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, select
from sqlmodel import col

from correctors.models.first_version import train_first_version
from correctors.models.runtime import OnnxModel
from correctors.zoo import mlp_classifier
from storage.tables import Event
from watcher import logs
from watcher.checks.evidently_page import wait_for_pages
from watcher.config import KafkaConfig, ModelConfig, WardenConfig
from watcher.daemon.service import Daemon, wait_for
from watcher.daemon.status import render_status
from watcher.demo.credit import (
    CATEGORICAL,
    NORMAL,
    NUMERIC,
    SHIFTED,
    Shift,
    generate,
    prediction_messages,
)
from watcher.kafka.broker import EmbeddedBroker
from watcher.kafka.clients import make_producer
from watcher.kafka.wire import encode
from watcher.onboarding import warden_encoder
from watcher.pages.incident_page import page_paths, publish_pages
from watcher.serving.active import ActiveModel

MODEL = "credit"
CONFIG_TEMPLATE = """\
# Written by `warden demo`. Edit and run `warden run --config {config}` to keep it going.
[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "warden-demo"

[storage]
url = "sqlite:///warden.db"
registry = "registry"
reports = "reports"

[alerts]
log = true
kafka = true

[http]
port = 0  # any free port; the daemon logs the address (9464 is the production default)

[models.{model}]
{model_lines}
reference = "reference.csv"
label_column = "label"
numeric_features = {numeric}
categorical_features = {categorical}

[models.{model}.checks]
interval_seconds = {interval}
window = 1500
min_rows = 300
min_labelled = 200
drift_share = 0.2
max_accuracy_drop = 0.05

[models.{model}.correction]
enabled = true
min_flagged = 300

[models.{model}.approval]
mode = "{mode}"
approved = []
"""


@dataclass
class Tally:
    """Accuracy of served predictions per (phase, version), from the generator's true labels."""

    correct: dict[tuple[str, str], int] = field(
        default_factory=lambda: collections.defaultdict(int)
    )
    total: dict[tuple[str, str], int] = field(default_factory=lambda: collections.defaultdict(int))

    def add(self, phase: str, version: str, hits: int, n: int) -> None:
        self.correct[(phase, version)] += hits
        self.total[(phase, version)] += n

    def accuracy(self, phase: str, version: str) -> float | None:
        n = self.total.get((phase, version), 0)
        return self.correct[(phase, version)] / n if n else None


class Traffic:
    """The serving side: scores rows with the ACTIVE model, logs predictions, labels later."""

    def __init__(self, kafka_cfg: KafkaConfig, server: ActiveModel, label_delay_s: float) -> None:
        self.producer = make_producer(kafka_cfg)
        self.server, self.delay = server, label_delay_s
        # (when due, [(prediction id, label), ...]), oldest first
        self.pending: collections.deque[tuple[float, list[tuple[str, int]]]] = collections.deque()
        self.tally = Tally()
        self.sent = 0

    def stream(
        self,
        phase: str,
        shift: Shift,
        rows: int,
        rate: float,
        seed: int,
        until: Callable[[], bool] | None = None,
        batch: int = 50,
    ) -> None:
        frame = generate(rows, shift, seed=seed)
        for start in range(0, rows, batch):
            if until is not None and until():
                break
            chunk = frame.iloc[start : start + batch]
            version, preds, scores = self.server.predict(chunk)
            msgs = prediction_messages(chunk, MODEL, version, preds, scores)
            for msg in msgs:
                self.producer.send(
                    "predictions", key=msg["prediction_id"].encode(), value=encode(msg)
                )
            truth = chunk["label"].to_numpy()
            hits = int((np.array(preds).astype(int) == truth).sum())
            self.tally.add(phase, version, hits, len(chunk))
            due = time.monotonic() + self.delay
            labels = [(m["prediction_id"], int(t)) for m, t in zip(msgs, truth, strict=True)]
            self.pending.append((due, labels))
            self.sent += len(chunk)
            self.flush_labels()
            time.sleep(batch / rate)

    def flush_labels(self, force: bool = False) -> None:
        now = time.monotonic()
        while self.pending and (force or self.pending[0][0] <= now):
            _, labels = self.pending.popleft()
            for pid, label in labels:
                self.producer.send(
                    "labels", key=pid.encode(), value=encode({"prediction_id": pid, "label": label})
                )
        self.producer.flush()


def write_config(
    folder: Path,
    bootstrap: str,
    n_inputs: int,
    *,
    interval: float = 3,
    mode: str = "auto",
    group_id: str = "warden-demo",
    model_lines: str | None = None,
) -> Path:
    """The demo's config file (the tests write theirs the same way); `model_lines`: how the
    first model is loaded (default: the built-in MLP's factory and `initial-weights.pt`)."""
    config = folder / "warden.toml"
    text = (
        CONFIG_TEMPLATE.format(
            config=config,
            bootstrap=bootstrap,
            model=MODEL,
            model_lines=model_lines or mlp_lines(n_inputs),
            numeric=NUMERIC,
            categorical=CATEGORICAL,
            interval=interval,
            mode=mode,
        )
        .replace("'", '"')
        .replace('group_id = "warden-demo"', f'group_id = "{group_id}"')
    )
    config.write_text(text)
    return config


def mlp_lines(n_inputs: int) -> str:
    return (
        'factory = "correctors.zoo:mlp_classifier"\n'
        f"factory_kwargs = {{ n_inputs = {n_inputs}, n_classes = 2 }}\n"
        'weights = "initial-weights.pt"'
    )


def train_initial_model(folder: Path, console: Console) -> int:
    """Write the reference set and train the built-in MLP on other rows, on the encoding the
    daemon will use (`warden_encoder`: fitted on the reference); returns its input width."""
    # The reference is held-out labelled data, not the training set: figures calibrated on
    # the model's own training rows would be optimistic and make clean traffic look worse.
    generate(4000, NORMAL, seed=0).to_csv(folder / "reference.csv", index=False)
    training = generate(4000, NORMAL, seed=100)
    definition = ModelConfig(
        factory="correctors.zoo:mlp_classifier",
        reference=folder / "reference.csv",
        numeric_features=NUMERIC,
        categorical_features=CATEGORICAL,
    )
    encoding = warden_encoder(WardenConfig(models={MODEL: definition}), MODEL)
    with console.status("training the built-in credit-risk MLP on 4,000 generated rows…"):
        result = train_first_version(
            lambda: mlp_classifier(encoding.width, len(encoding.classes)),
            encoding.transform(training),
            encoding.targets(training),
            epochs=40,
            patience=5,
            weights=folder / "initial-weights.pt",
        )
    console.print(
        f"  trained in {result.seconds:.1f}s ({result.epochs_run} epochs), "
        f"validation loss {min(result.val_loss):.3f}"
    )
    return encoding.width


def train_kind_model(folder: Path, console: Console, model: str) -> tuple[int, str]:
    """`train_initial_model` for another demo model (`svc`, `lightgbm`, `xgboost`, see
    `watcher.demo.first_models`): the same rows and encoding; returns the input width and the
    config lines that load it."""
    from watcher.demo.first_models import train_first_model

    generate(4000, NORMAL, seed=0).to_csv(folder / "reference.csv", index=False)
    training = generate(4000, NORMAL, seed=100)
    definition = ModelConfig(
        factory="correctors.zoo:mlp_classifier",
        reference=folder / "reference.csv",
        numeric_features=NUMERIC,
        categorical_features=CATEGORICAL,
    )
    encoding = warden_encoder(WardenConfig(models={MODEL: definition}), MODEL)
    with console.status(f"training the demo's {model} on 4,000 generated rows…"):
        began = time.perf_counter()
        x, y = encoding.transform(training), encoding.targets(training)
        lines = train_first_model(model, folder, x, y)
    console.print(f"  trained {model} in {time.perf_counter() - began:.1f}s")
    return encoding.width, lines


NARRATIVE = {
    "model_registered": "registered {subject} (reference accuracy {reference_accuracy:.3f})",
    "activated": "ACTIVE → {subject}",
    "incident_opened": "[bold red]incident #{subject}[/] {incident_kind} ({severity}): {summary}\n"
    "      report: {report}",
    "candidate_training": "fine-tuning {subject}: {flagged_total} flagged rows "
    "({flagged_misclassified} misclassified, {flagged_drift_region} in the "
    "drifted region) + {replay_rows} replayed reference rows",
    "candidate_validated": "[bold green]{subject} validated[/]: {reasons_text}",
    "candidate_rejected": "[yellow]{subject} rejected[/]: {reasons_text}",
    "awaiting_approval": "{subject} awaits approval in the config file",
    "swapped": "[bold green]swapped[/] {previous_version} → {version} (actor {actor})",
    "incident_resolved": "incident #{subject} resolved",
}


def _narrate(console: Console, engine: Engine, last_id: int) -> tuple[int, list[Event]]:
    """Print the audit events after `last_id`; returns the newest id and the events."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Event).where(col(Event.id) > last_id).order_by(col(Event.id))
        ).all()
    events = []
    for row in rows:
        event = Event(**row._mapping)
        events.append(event)
        last_id = max(last_id, event.id or 0)
        template = NARRATIVE.get(event.kind)
        if template is None:
            continue
        detail = {**event.detail, "subject": event.subject, "actor": event.actor}
        detail["reasons_text"] = "; ".join(event.detail.get("reasons", []))
        try:
            console.print(f"  [dim]{event.ts:%H:%M:%S}[/] " + template.format(**detail))
        except (KeyError, ValueError):
            console.print(f"  [dim]{event.ts:%H:%M:%S}[/] {event.kind} {event.subject}")
    return last_id, events


def run_demo(
    folder: Path,
    *,
    rate: float = 400.0,
    normal_rows: int = 3000,
    timeout_s: float = 300.0,
    mode: str = "auto",
    console: Console | None = None,
    model: str = "mlp",
) -> int:
    """The whole loop; 0 once it closed (swapped, and better on shifted traffic), else 1.
    `model`: mlp (the built-in torch MLP), svc, lightgbm or xgboost."""
    console = console or Console()
    started = time.monotonic()
    folder = _fresh_folder(folder, console)
    broker = EmbeddedBroker(log_path=folder / "broker.log").start()
    console.print(f"embedded Kafka-compatible broker (Tansu) on {broker.bootstrap}")
    daemon = None
    try:
        config = _set_up(folder, broker.bootstrap, mode, console, model)
        progress = Progress()
        daemon = Daemon(config, on_epoch=_epoch_printer(console, progress))
        with console.status("starting the daemon (registers v1, exports ONNX)…"):
            daemon.start()
        server = ActiveModel(daemon.registry, MODEL)
        traffic = Traffic(daemon.cfg.kafka, server, label_delay_s=2.0)
        narrator = Narrator(console, daemon.engine, progress)
        narrator.start()
        _play(console, traffic, server, progress, normal_rows, rate, timeout_s)
        narrator.stop()
        return _conclude(console, daemon, traffic, progress.events, started, folder, config)
    finally:
        if daemon is not None:
            daemon.shutdown()
        broker.stop()


def _fresh_folder(folder: Path, console: Console) -> Path:
    folder = folder.resolve()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    console.rule("[bold]model-warden demo")
    console.print(f"working folder: {folder}")
    return folder


def _set_up(folder: Path, bootstrap: str, mode: str, console: Console, model: str) -> Path:
    """The first model, the config and the daemon's log file; returns the config's path."""
    if model == "mlp":
        n_inputs, lines = train_initial_model(folder, console), None
    else:
        n_inputs, lines = train_kind_model(folder, console, model)
    config = write_config(folder, bootstrap, n_inputs, interval=3, mode=mode, model_lines=lines)
    log_file = (folder / "warden.log").open("w")
    logs.configure(json_lines=True, stream=log_file)
    console.print(f"config: {config}\ndaemon log (JSON lines): {folder / 'warden.log'}")
    return config


@dataclass
class Progress:
    """What the narrator has seen, read by the traffic loop and the epoch printer."""

    swapped: bool = False
    done: bool = False
    events: list[Event] = field(default_factory=list)


def _epoch_printer(console: Console, progress: Progress) -> Callable[[int, float, float], None]:
    def on_epoch(epoch: int, train: float, val: float) -> None:
        if progress.done:  # a refinement the shutdown stops: not after the closing screen
            return
        console.print(f"      epoch {epoch:2d}  train loss {train:.3f}  val loss {val:.3f}")

    return on_epoch


class Narrator:
    """Prints the audit log as it grows, from its own thread, and notes the swap."""

    def __init__(self, console: Console, engine: Engine, progress: Progress) -> None:
        self.console, self.engine, self.progress = console, engine, progress
        self.last_event, _ = _narrate(console, engine, 0)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.progress.done = True
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self.progress.done:
            self.last_event, events = _narrate(self.console, self.engine, self.last_event)
            self.progress.events.extend(events)
            if any(e.kind == "swapped" for e in events):
                self.progress.swapped = True
            time.sleep(0.3)


def _play(
    console: Console,
    traffic: Traffic,
    server: ActiveModel,
    progress: Progress,
    normal_rows: int,
    rate: float,
    timeout_s: float,
) -> None:
    """Normal traffic; shifted traffic until the daemon swaps; shifted traffic on the new
    version; then every label still held back."""
    console.rule(f"phase 1: {normal_rows} predictions of normal traffic at ~{rate:.0f}/s")
    traffic.stream("normal", NORMAL, normal_rows, rate, seed=1)
    console.rule(
        "phase 2: shifted traffic (utilisation ↑, income ↓, new rule for "
        "high utilisation) until the daemon swaps"
    )
    deadline = time.monotonic() + timeout_s
    while not progress.swapped and time.monotonic() < deadline:
        traffic.stream(
            "shifted",
            SHIFTED,
            1000,
            rate,
            seed=int(time.time()),
            until=lambda: progress.swapped or time.monotonic() > deadline,
        )
    if progress.swapped:
        wait_for(lambda: server.current().version != "v1", 10)
        console.rule("phase 3: shifted traffic served by the corrected model")
        traffic.stream("after", SHIFTED, 1500, rate, seed=7)
    traffic.flush_labels(force=True)
    time.sleep(1.0)


def _conclude(
    console: Console,
    daemon: Daemon,
    traffic: Traffic,
    events: list[Event],
    started: float,
    folder: Path,
    config: Path,
) -> int:
    """The accuracy table, the status, the pages, and whether the loop closed."""
    registry = daemon.registry
    new_version = registry.active(MODEL)
    if new_version is None:  # the daemon activated v1 when it started
        raise RuntimeError(f"{MODEL} has no ACTIVE version")
    evaluation = generate(3000, SHIFTED, seed=999)
    table = Table(title="Accuracy on shifted traffic")
    table.add_column("model")
    table.add_column("live, while serving")
    table.add_column("fixed evaluation set (3,000 shifted rows)")
    scores = {}
    for version in dict.fromkeys(["v1", new_version]):
        served = OnnxModel.load(registry, MODEL, version)
        preds, _ = served.predict(evaluation)
        scores[version] = float((np.array(preds).astype(int) == evaluation["label"]).mean())
        live = traffic.tally.accuracy("shifted" if version == "v1" else "after", version)
        table.add_row(version, "-" if live is None else f"{live:.3f}", f"{scores[version]:.3f}")
    normal_live = traffic.tally.accuracy("normal", "v1")
    console.print(table)
    console.print(f"v1 on normal traffic (live): {normal_live:.3f}")
    render_status(daemon.cfg, daemon.engine, registry, console)
    kinds = {e.kind for e in events}
    closed = {"incident_opened", "candidate_validated", "swapped"} <= kinds
    better = new_version != "v1" and scores[new_version] >= scores["v1"] + 0.1
    src = daemon.sources
    wait_for_pages()  # the Evidently pages are drawn off the checks' path
    publish_pages(src, MODEL)  # the pages as the incidents ended, not one round before
    pages = "".join(f"\n  {page}" for page in page_paths(src, MODEL))
    console.print(f"incident pages (open them in a browser):{pages}", highlight=False)
    console.print(f"Evidently pages of the failing checks: under {folder / 'reports'}")
    console.print(
        f"took {time.monotonic() - started:.0f}s; inspect with `warden status --config {config}`"
    )
    if closed and better:
        console.print(
            "[bold green]loop closed[/]: incident → candidate → validated → swapped, "
            f"accuracy on shifted traffic {scores['v1']:.3f} → {scores[new_version]:.3f}"
        )
    else:
        console.print(f"[bold red]loop did not close[/]: events seen {sorted(kinds)}")
    if daemon.http is not None:  # the console; at a terminal it stays up until Enter
        console.print(f"console: {daemon.http.url}/ (read-only; up while the demo runs)")
        if sys.stdin.isatty():
            with contextlib.suppress(EOFError, KeyboardInterrupt):
                input("press Enter to stop the demo and its console… ")
    return 0 if closed and better else 1
