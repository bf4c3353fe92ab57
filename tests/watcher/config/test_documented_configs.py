"""The configuration people copy (docs/configuration.md's example, deploy/warden.toml) must stay
valid against the schema: a documented key that the daemon refuses is a bug."""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.support import ROOT  # noqa: E402
from watcher.config import WardenConfig

EXAMPLE = "docs/configuration.md"


def documented_example() -> str:
    text = (ROOT / EXAMPLE).read_text(encoding="utf-8")
    match = re.search(r"^## Example\n.*?```toml\n(.*?)```", text, re.S | re.M)
    assert match, f"{EXAMPLE} lost its configuration example"
    return match.group(1)


@pytest.mark.parametrize("source", [EXAMPLE, "deploy/warden.toml"])
def test_documented_config_is_valid(source):
    text = documented_example() if source == EXAMPLE else (ROOT / source).read_text("utf-8")
    cfg = WardenConfig.model_validate(tomllib.loads(text))
    assert cfg.models, f"{source}: the example should declare a model"
