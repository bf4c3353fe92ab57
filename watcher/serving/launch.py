"""`warden serve`'s lifecycle: the prediction topic and logger, the inference server, and the
wait for SIGTERM/SIGINT, after which the server stops and the buffered logs are flushed."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from kafka.errors import KafkaError

from storage.registry import ModelRegistry
from watcher.config import HttpConfig, WardenConfig
from watcher.http_server import HttpServerError
from watcher.kafka.clients import ensure_topics
from watcher.serving.prediction_logger import PredictionLogger
from watcher.serving.server import InferenceServer


def serve_until_stopped(
    cfg: WardenConfig,
    model: str,
    http_cfg: HttpConfig,
    *,
    max_body_bytes: int,
    log_predictions: bool,
    say: Callable[[str], None],
) -> int:
    """Serve `model` until a stop signal; the exit code (1: broker, 2: address), with the
    reason given to `say`."""
    try:
        if log_predictions:  # as the daemon does: logs must not wait for it to create the topic
            ensure_topics(cfg.kafka, [cfg.kafka.predictions_topic])
        logger = PredictionLogger(cfg.kafka, model, enabled=log_predictions)
    except KafkaError as exc:
        say(f"kafka.bootstrap_servers {cfg.kafka.bootstrap_servers}: {exc!r}")
        return 1
    server = InferenceServer(
        ModelRegistry(cfg.storage.registry),
        model,
        http_cfg,
        logger=logger,
        max_body_bytes=max_body_bytes,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except HttpServerError as exc:
        say(f"--host/--port: {exc}")
        logger.close()
        return 2
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
        logger.close()
    return 0
