"""`warden serve` over HTTP against the same model in torch eager, measured in the same run.

    python bench/serve.py [--requests 2000] [--seconds 10] [--clients 4] [--no-kafka]

Builds the demo's credit-risk MLP in a temp folder (train, bootstrap v1, register a perturbed
v2), then measures:

1. torch eager in-process: `model(x)` on the already encoded batch (the baseline), and
   onnxruntime in-process on the same batch (what the server runs, for reference);
2. `warden serve` as users start it (its own process, `--no-log`): latency p50/p99 of batch-1
   requests from one client, throughput (rows/s) of batch-256 requests from `--clients`
   threads, then failed requests while 20 ACTIVE swaps (v1 ↔ v2) happen under load;
3. the same with prediction logging on (embedded broker), unless `--no-kafka`.

Server latencies are what an HTTP client sees (httpx, keep-alive, pre-encoded JSON body):
JSON decoding, validation, encoding, onnxruntime and the response included.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from correctors.models.champion import bootstrap, load_champion, register_version  # noqa: E402
from correctors.models.runtime import OnnxModel  # noqa: E402
from storage.db import make_engine  # noqa: E402
from storage.registry import ModelRegistry  # noqa: E402
from watcher.config import load_config  # noqa: E402
from watcher.demo.credit import CATEGORICAL, NUMERIC, generate  # noqa: E402
from watcher.demo.run import MODEL, train_initial_model, write_config  # noqa: E402
from watcher.kafka.broker import EmbeddedBroker
from watcher.kafka.clients import ensure_topics  # noqa: E402

console = Console(width=120)
FEATURES = NUMERIC + CATEGORICAL
HEADERS = {"content-type": "application/json"}


def percentiles(seconds: list[float]) -> tuple[float, float]:
    return float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 99) * 1e3)


def time_calls(fn: Callable[[], object], n: int, warmup: int = 200) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def rows_per_second(fn: Callable[[], object], rows: int, seconds: float) -> float:
    for _ in range(20):
        fn()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        done += rows
    return done / (time.perf_counter() - start)


# -- the model --------------------------------------------------------------------------------
def build_model(folder: Path, bootstrap_server: str) -> tuple[Path, ModelRegistry]:
    width = train_initial_model(folder, Console(quiet=True))
    config = write_config(folder, bootstrap_server, width)
    cfg = load_config(config)
    registry = ModelRegistry(cfg.storage.registry)
    bootstrap(make_engine(cfg.storage.engine_url()), registry, MODEL, cfg.models[MODEL])
    champion = load_champion(registry, MODEL, "v1")
    model = copy.deepcopy(champion.torch_model)
    with torch.no_grad():
        model[-1].bias += torch.tensor([0.5, -0.5])
    card = {k: v for k, v in champion.card.items() if k not in {"onnx_sha256", "version"}}
    register_version(registry, MODEL, "v2", model, champion.encoder, {**card, "parent": "v1"})
    return config, registry


def in_process(registry: ModelRegistry, rows: list[dict], args) -> dict[str, dict]:
    champion = load_champion(registry, MODEL, "v1")
    model = champion.torch_model.eval()
    onnx = OnnxModel.load(registry, MODEL, "v1")
    x1 = onnx.encoder.transform(_frame(rows[:1]))
    x256 = onnx.encoder.transform(_frame(rows[:256]))
    t1, t256 = torch.from_numpy(x1), torch.from_numpy(x256)
    out = {}
    with torch.inference_mode():
        out["torch eager, in-process (baseline)"] = {
            "lat": percentiles(time_calls(lambda: model(t1), args.requests)),
            "rps": rows_per_second(lambda: model(t256), 256, args.seconds / 2),
        }
    out["onnxruntime, in-process"] = {
        "lat": percentiles(time_calls(lambda: onnx.proba_encoded(x1), args.requests)),
        "rps": rows_per_second(lambda: onnx.proba_encoded(x256), 256, args.seconds / 2),
    }
    return out


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows)


# -- the server -------------------------------------------------------------------------------
class ServeProcess:
    """`warden serve` in its own process, as users start it; the URL comes from its log."""

    def __init__(self, config: Path, log_path: Path, log_predictions: bool) -> None:
        flag = "--log" if log_predictions else "--no-log"
        cmd = [sys.executable, "-m", "watcher.cli", "serve", MODEL, "--config", str(config)]
        self.log_path = log_path
        with log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [*cmd, "--port", "0", flag],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.url = self._wait_for("serve_listening", 60)["url"]

    def _wait_for(self, event: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.log_path.read_text().splitlines():
                if f'"{event}"' in line:
                    return json.loads(line)
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"warden serve: no {event}:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        closed = self._wait_for("prediction_log_closed", 5)
        return {"exit": code, "sent": closed.get("sent"), "failed": closed.get("failed")}


def server_latency(url: str, body: bytes, n: int) -> tuple[float, float]:
    with httpx.Client(base_url=url, timeout=10) as http:

        def call() -> None:
            r = http.post("/predict", content=body, headers=HEADERS)
            if r.status_code != 200:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

        return percentiles(time_calls(call, n))


def load(url: str, bodies: list[bytes], clients: int, until: Callable[[], bool]) -> dict:
    """`clients` threads posting bodies round-robin until `until()`; counts outcomes."""
    lock = threading.Lock()
    tally: dict = {"ok": 0, "rows": 0, "failed": 0, "errors": Counter(), "versions": Counter()}
    sizes = [len(json.loads(b)["rows"]) for b in bodies]

    def client(seed: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            i = seed
            while not until():
                i += 1
                k = i % len(bodies)
                try:
                    r = http.post("/predict", content=bodies[k], headers=HEADERS)
                    ok = r.status_code == 200
                    version = msgspec.json.decode(r.content)["version"] if ok else None
                    error = None if ok else f"HTTP {r.status_code}"
                except Exception as exc:  # noqa: BLE001 - a failed request is what we count
                    version, error = None, type(exc).__name__
                with lock:
                    if error is None:
                        tally["ok"] += 1
                        tally["rows"] += sizes[k]
                        tally["versions"][version] += 1
                    else:
                        tally["failed"] += 1
                        tally["errors"][error] += 1

    threads = [threading.Thread(target=client, args=(s,)) for s in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tally["seconds"] = time.perf_counter() - start
    return tally


def measure_server(
    config: Path, registry: ModelRegistry, rows: list[dict], log: bool, args, folder: Path
) -> dict:
    server = ServeProcess(config, folder / f"serve-{'log' if log else 'nolog'}.log", log)
    try:
        one = json.dumps({"rows": rows[:1]}).encode()
        batch = json.dumps({"rows": rows[:256]}).encode()
        lat = server_latency(server.url, one, args.requests)
        with httpx.Client(base_url=server.url, timeout=10) as http:  # HTTP + client floor
            floor = percentiles(time_calls(lambda: http.get("/healthz"), args.requests))
        deadline = time.monotonic() + args.seconds
        tp = load(server.url, [batch], args.clients, lambda: time.monotonic() > deadline)
        small = [json.dumps({"rows": rows[i : i + 1 + i % 8]}).encode() for i in range(16)]
        done = threading.Event()
        swapper = threading.Thread(target=swap_20_times, args=(registry, done))
        swapper.start()
        swaps = load(server.url, small, 4, done.is_set)
        swapper.join()
    finally:
        closed = server.stop()
    return {
        "lat": lat,
        "floor": floor,
        "rps": tp["rows"] / tp["seconds"],
        "tp_failed": tp["failed"],
        "swaps": swaps,
        "closed": closed,
    }


def swap_20_times(registry: ModelRegistry, done: threading.Event) -> None:
    time.sleep(0.5)
    for i in range(20):
        registry.activate(MODEL, "v2" if i % 2 == 0 else "v1", actor="bench")
        time.sleep(0.3)
    time.sleep(0.3)
    done.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="batch-1 requests timed")
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput run length")
    parser.add_argument("--clients", type=int, default=4, help="client threads, batch 256")
    parser.add_argument("--no-kafka", action="store_true", help="skip the run with logging")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="intra-op threads of the torch baseline"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)  # the server's onnxruntime runs 1 per request
    console.print(
        f"cpus {os.cpu_count()}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )
    with tempfile.TemporaryDirectory(prefix="warden-bench-serve-") as tmp:
        folder = Path(tmp)
        broker = None if args.no_kafka else EmbeddedBroker(log_path=folder / "broker.log").start()
        try:
            bootstrap_server = broker.bootstrap if broker else "127.0.0.1:9"
            with console.status("training the demo model, registering v1 and v2…"):
                config, registry = build_model(folder, bootstrap_server)
            if broker:
                ensure_topics(load_config(config).kafka, ["predictions"])
            rows = generate(256, seed=3)[FEATURES].to_dict(orient="records")
            with console.status("torch eager and onnxruntime in-process…"):
                results = in_process(registry, rows, args)
            for log in [False] if broker is None else [False, True]:
                name = f"warden serve, HTTP ({'Kafka logging on' if log else '--no-log'})"
                registry.activate(MODEL, "v1", actor="bench")
                with console.status(f"{name}…"):
                    results[name] = measure_server(config, registry, rows, log, args, folder)
        finally:
            if broker:
                broker.stop()
    report(results, args)


def report(results: dict[str, dict], args) -> None:
    base = results["torch eager, in-process (baseline)"]
    table = Table(
        title=f"serving the demo MLP (batch 1: {args.requests} sequential requests; "
        f"batch 256: {args.clients} clients × {args.seconds:.0f} s)"
    )
    for col in ("path", "p50 ms", "p99 ms", "p50 / torch", "rows/s @256", "rows/s / torch"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for name, r in results.items():
        (p50, p99), rps = r["lat"], r["rps"]
        table.add_row(
            name,
            f"{p50:.3f}",
            f"{p99:.3f}",
            f"{p50 / base['lat'][0]:.1f}×",
            f"{rps:,.0f}",
            f"{rps / base['rps']:.3f}",
        )
    console.print(table)
    for name, r in results.items():
        if "floor" in r:
            p50, p99 = r["floor"]
            console.print(
                f"{name}: GET /healthz (HTTP + client floor) p50 {p50:.3f} ms, p99 {p99:.3f} ms"
            )
    for name, r in results.items():
        if "swaps" not in r:
            continue
        s, closed = r["swaps"], r["closed"]
        console.print(
            f"{name}: 20 swaps under load (4 clients, batch 1–8): {s['ok']:,} requests ok, "
            f"[bold]{s['failed']} failed[/] {dict(s['errors']) or ''}, versions served "
            f"{dict(s['versions'])}; throughput run failures {r['tp_failed']}; "
            f"exit {closed['exit']}, logged sent={closed['sent']} failed={closed['failed']}"
        )


if __name__ == "__main__":
    main()
