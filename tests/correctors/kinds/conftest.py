"""A demo credit model of each non-torch kind, bootstrapped into a fresh registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from correctors.models.champion import bootstrap
from storage.db import make_engine
from storage.registry import ModelRegistry
from watcher.config import load_config
from watcher.demo.run import MODEL, train_kind_model, write_config


@pytest.fixture(scope="session")
def kind_files(tmp_path_factory):
    """Per demo model (svc, lightgbm, xgboost): its folder (reference + model file), the
    input width and the config lines; trained once per session."""
    made: dict[str, tuple[Path, int, str]] = {}

    def make(model: str) -> tuple[Path, int, str]:
        if model not in made:
            folder = tmp_path_factory.mktemp(model)
            width, lines = train_kind_model(folder, Console(quiet=True), model)
            made[model] = (folder, width, lines)
        return made[model]

    return make


def kind_setup(
    tmp_path: Path, made: tuple[Path, int, str], bootstrap_server: str = "127.0.0.1:9", **kw
):
    """The demo config for that model in `tmp_path`, bootstrapped: (config, cfg, engine,
    registry)."""
    folder, width, lines = made
    for item in folder.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    config = write_config(tmp_path, bootstrap_server, width, model_lines=lines, **kw)
    cfg = load_config(config)
    engine = make_engine(cfg.storage.engine_url())
    registry = ModelRegistry(cfg.storage.registry)
    bootstrap(engine, registry, MODEL, cfg.models[MODEL])
    return config, cfg, engine, registry
