"""Where the pages read from: the store, the registry, the config (re-read after a reload)
and, inside the daemon, its own words for what a correction will do next (the daemon's
service builds one with `waiting_action`; the CLI and the tests without)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from storage.registry import ModelRegistry
from storage.tables import Incident
from watcher.config import WardenConfig


@dataclass
class Sources:
    config: Callable[[], WardenConfig]
    engine: Engine
    registry: ModelRegistry
    config_path: Path | None = None
    # incident → the daemon's next action while no candidate exists (the alert's words)
    waiting_action: Callable[[Incident], str] | None = None

    def page_path(self, model: str, incident_id: int) -> Path:
        """The incident's page: beside the model's Evidently reports, one file per incident."""
        return Path(self.config().storage.reports) / model / f"incident-{incident_id}.html"
