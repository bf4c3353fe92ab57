"""The configuration people copy (the README example, deploy/warden.toml) must stay valid
against the schema: a documented key that the daemon refuses is a bug."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.support import ROOT  # noqa: E402
from watcher.config import WardenConfig


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## Configuration \(TOML\).*?```toml\n(.*?)```", text, re.S)
    assert match, "README lost its configuration example"
    return match.group(1)


@pytest.mark.parametrize("source", ["README.md", "deploy/warden.toml"])
def test_documented_config_is_valid(source):
    text = readme_example() if source == "README.md" else (ROOT / source).read_text("utf-8")
    cfg = WardenConfig.model_validate(tomllib.loads(text))
    assert cfg.models, f"{source}: the example should declare a model"
