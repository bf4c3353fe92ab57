from pathlib import Path

import pytest
from typer.testing import CliRunner

from watcher.cli import app
from watcher.config import ConfigError, load_config
from watcher.demo.run import write_config


def _config(workdir: Path, width: int) -> Path:
    return write_config(workdir, "127.0.0.1:9", width)


def test_valid_config_resolves_paths_relative_to_the_file(workdir, trained):
    cfg = load_config(_config(workdir, trained[1]))
    model = cfg.models["credit"]
    assert model.reference == workdir / "reference.csv"
    assert cfg.storage.url == f"sqlite:///{workdir / 'warden.db'}"
    assert cfg.storage.registry == workdir / "registry"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("window = 1500", "window = -5", "models.credit.checks.window"),
        (
            "min_flagged = 300",
            "min_flagged = 300\nreplay_ratoi = 2",
            "models.credit.correction.replay_ratoi",
        ),
        ('mode = "auto"', 'mode = "sometimes"', "models.credit.approval.mode"),
        ('reference = "reference.csv"', 'reference = "missing.csv"', "models.credit.reference"),
    ],
)
def test_errors_name_the_key(workdir, trained, old, new, key):
    path = _config(workdir, trained[1])
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value)


def test_config_check_command(workdir, trained):
    path = _config(workdir, trained[1])
    runner = CliRunner()
    ok = runner.invoke(app, ["config", "check", str(path)])
    assert ok.exit_code == 0, ok.output
    path.write_text(path.read_text().replace("drift_share = 0.2", "drift_share = 7"))
    bad = runner.invoke(app, ["config", "check", str(path)])
    assert bad.exit_code == 2
    assert "models.credit.checks.drift_share" in bad.output


def test_not_toml_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[kafka\nx = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
