"""Expected start-up failures are one line on stderr naming the key (or the address tried) and
the fix, with a non-zero exit code and no traceback, from the real CLI in a subprocess:
`warden config check --files` and `warden run` check each model's factory, kwargs, weights,
one encoded reference row and the output width; `warden run` then waits
`daemon.startup_timeout_s` for the database and the broker. `--debug` shows the traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from watcher.demo.run import write_config
from watcher.kafka.broker import free_port


def warden(*args: str, cwd: Path, timeout: float = 90) -> tuple[int, str, str, float]:
    """Run the `warden` console script (not `python -m`: the current folder is not on
    sys.path, as for a user); (exit code, stdout, stderr, seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "warden"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def one_line(stderr: str) -> str:
    """The message: the one stderr line that is not a JSON log line of the daemon's."""
    lines = [line for line in stderr.splitlines() if line.strip() and not log_line(line)]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def log_line(line: str) -> bool:
    try:
        return "event" in json.loads(line)
    except ValueError:
        return False


@pytest.fixture()
def config(workdir, trained) -> Path:
    """The demo's credit model (17 inputs, 2 classes), a broker address nothing listens on."""
    return write_config(workdir, f"127.0.0.1:{free_port()}", trained[1])


def edit(config: Path, old: str, new: str) -> Path:
    text = config.read_text()
    assert old in text, old
    config.write_text(text.replace(old, new, 1))
    return config


WEIGHTS = 'weights = "initial-weights.pt"'
KWARGS = "factory_kwargs = { n_inputs = 17, n_classes = 2 }"
BROKEN = {  # config edit -> (the line's start, a fragment of the fix)
    "factory module": (
        ("correctors.zoo:mlp_classifier", "hmodels:census"),
        "models.credit.factory: module 'hmodels' not importable from",
        "add its folder to PYTHONPATH or set models.credit.python_path",
    ),
    "factory function": (
        ("correctors.zoo:mlp_classifier", "correctors.zoo:mlp_classifer"),
        "models.credit.factory: cannot import model factory",
        "has no function 'mlp_classifer'",
    ),
    "factory kwargs": (
        (KWARGS, "factory_kwargs = { n_inputs = 17, n_classes = 2, depth = 3 }"),
        "models.credit.factory_kwargs: correctors.zoo:mlp_classifier(**",
        "the factory takes (n_inputs, n_classes, hidden, layers)",
    ),
    "input width": (
        (KWARGS, "factory_kwargs = { n_inputs = 20, n_classes = 2 }"),
        "models.credit.factory_kwargs.n_inputs: is 20, the standard encoding gives 17 inputs",
        "set n_inputs = 17",
    ),
    "output width": (
        (KWARGS, "factory_kwargs = { n_inputs = 17, n_classes = 3 }"),
        "models.credit.factory_kwargs.n_classes: the model returns shape (1, 3) for 1 row; "
        "the task has 2 classes ['0', '1']",
        "set n_classes = 2",
    ),
    "regression task": (
        ('label_column = "label"', 'label_column = "label"\ntask = "regression"'),
        "models.credit.task: regression needs one output per row",
        'or set task = "classification"',
    ),
    "weights shape": (
        (KWARGS, "factory_kwargs = { n_inputs = 17, n_classes = 2, hidden = 32 }"),
        "models.credit.weights: do not fit the model",
        "0.weight: [64, 17] in the file, [32, 17] in the model",
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_config_check_files_names_the_key_and_the_fix(config, broken):
    (old, new), start, fix = BROKEN[broken]
    code, _out, err, _s = warden(
        "config", "check", "--files", str(edit(config, old, new)), cwd=config.parent
    )
    line = one_line(err)
    assert code == 2 and line.startswith(start) and fix in line, line


def test_config_check_files_passes_and_python_path_finds_a_local_module(config):
    code, out, err, _s = warden("config", "check", "--files", str(config), cwd=config.parent)
    assert code == 0 and "ok" in out, out + err
    models = config.parent / "mymodels"
    models.mkdir()
    (models / "hmodels.py").write_text(
        "from correctors.zoo import mlp_classifier\n\n\n"
        "def census(n_inputs, n_classes):\n    return mlp_classifier(n_inputs, n_classes)\n"
    )
    edit(config, "correctors.zoo:mlp_classifier", "hmodels:census")
    code, _out, err, _s = warden("config", "check", "--files", str(config), cwd=config.parent)
    assert code == 2 and "not importable" in one_line(err)
    edit(
        config,
        'weights = "initial-weights.pt"',
        'weights = "initial-weights.pt"\npython_path = ["mymodels"]',
    )
    code, out, err, _s = warden("config", "check", "--files", str(config), cwd=config.parent)
    assert code == 0, out + err


def test_corrupt_weights_and_a_missing_python_path_folder(config):
    (config.parent / "initial-weights.pt").write_bytes(b"not a state dict")
    code, _out, err, _s = warden("config", "check", "--files", str(config), cwd=config.parent)
    line = one_line(err)
    assert code == 2 and line.startswith("models.credit.weights: cannot load weights from"), line
    assert "save it with torch.save(model.state_dict(), path)" in line
    edit(
        config,
        'weights = "initial-weights.pt"',
        'weights = "initial-weights.pt"\npython_path = ["nowhere"]',
    )
    code, out, _err, _s = warden("config", "check", "--files", str(config), cwd=config.parent)
    assert code == 2 and "models.credit.python_path: folder not found" in out, out  # as files


def test_run_checks_the_models_first_in_seconds(config):
    """The 9-second traceback of the issue: now one line, before the daemon is imported."""
    edit(config, "correctors.zoo:mlp_classifier", "hmodels:census")
    code, out, err, seconds = warden("run", "--config", str(config), cwd=config.parent)
    line = one_line(err)
    assert code == 2 and line.startswith("models.credit.factory: module 'hmodels'"), line
    assert "daemon_starting" not in out
    assert seconds < 20, seconds  # torch's import is most of it (~3 s on an idle machine)


def test_run_config_error_is_one_line(config):
    edit(config, "window = 1500", "window = -5")
    code, _out, err, _s = warden("run", "--config", str(config), cwd=config.parent)
    line = one_line(err)
    assert code == 2 and "invalid configuration: models.credit.checks.window:" in line, line


def test_unreachable_broker_after_startup_timeout_with_the_address(config):
    config.write_text("[daemon]\nstartup_timeout_s = 2\n" + config.read_text())
    address = config.read_text().split('bootstrap_servers = "')[1].split('"')[0]
    code, _out, err, seconds = warden("run", "--config", str(config), cwd=config.parent)
    line = one_line(err)
    assert code == 1, err
    assert line.startswith(f"kafka.bootstrap_servers {address}: no broker answered within 2 s")
    assert "raise daemon.startup_timeout_s" in line
    assert seconds < 25, seconds


def test_unreachable_database_after_startup_timeout_with_the_address(config):
    port = free_port()
    edit(
        config,
        'url = "sqlite:///warden.db"',
        f'url = "postgresql://warden@127.0.0.1:{port}/warden"',
    )
    config.write_text("[daemon]\nstartup_timeout_s = 2\n" + config.read_text())
    code, _out, err, seconds = warden("run", "--config", str(config), cwd=config.parent)
    line = one_line(err)
    assert code == 1, err
    assert line.startswith(f"storage.url postgresql+psycopg://warden@127.0.0.1:{port}/warden: ")
    assert "database unreachable for 2 s" in line and "Connection refused" in line, line
    assert seconds < 25, seconds


def test_debug_shows_the_traceback(config):
    edit(config, "correctors.zoo:mlp_classifier", "hmodels:census")
    code, out, err, _s = warden("run", "--config", str(config), "--debug", cwd=config.parent)
    assert code != 0 and "Traceback" in out + err
    assert "No module named 'hmodels'" in out + err  # the cause, chained
