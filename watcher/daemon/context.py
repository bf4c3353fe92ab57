"""What the daemon's jobs share: the store, the registry, the current config, how to alert,
whether this daemon holds a lease, the training progress callback and the stop flag.

Each job takes this context and, explicitly, the few collaborators it calls (as callables);
`service.Daemon` builds the context and wires the jobs together, and no job imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from storage.registry import ModelRegistry
from watcher.config import WardenConfig

SendAlert = Callable[[dict], None]
EpochCallback = Callable[[int, float, float], None]  # epoch, train loss, held-out loss


@dataclass(frozen=True)
class DaemonContext:
    engine: Engine
    registry: ModelRegistry
    config: Callable[[], WardenConfig]  # the current config (a reload replaces it)
    config_path: Path
    send_alert: SendAlert  # queued: a slow webhook never delays the caller
    holds: Callable[[str], bool]  # take or keep a lease; False while another daemon holds it
    stop_event: threading.Event
    on_epoch: EpochCallback | None = None  # training progress (the demo prints it)
