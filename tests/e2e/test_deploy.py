"""deploy/: the compose file, the Dockerfile, the systemd units and the example config, checked
without a Docker engine or systemd (the development machines have neither).

The compose file is parsed with PyYAML (installed with evidently) and cross-checked with
deploy/warden.toml: services, images, KRaft mode, the topics created at start, health checks,
restart policies, volumes, dependencies, and that secrets are only `${VAR}` references to the
variables warden.toml names. `warden config check deploy/warden.toml` runs through the CLI on a
temporary copy whose absolute paths point at files this test creates (the example names
/var/lib/warden/reference/churn.csv and models/churn-v1.pt, which exist only in a real
deployment). The Dockerfile's COPY list is built into a wheel the way `pip install .` in the
image builds it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.support import ROOT  # noqa: E402
from watcher.cli import app
from watcher.config import WardenConfig

DEPLOY = ROOT / "deploy"
SECRET = re.compile(r"PASSWORD|TOKEN|SECRET|KEY", re.I)
ENV_REF = re.compile(r"^\$\{([A-Z][A-Z0-9_]*)(:\?[^}]*)?\}$")
LONG_RUNNING = ("kafka", "postgres", "warden", "warden-serve")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def example() -> WardenConfig:
    return WardenConfig.model_validate(tomllib.loads((DEPLOY / "warden.toml").read_text("utf-8")))


def health_command(service: dict) -> str:
    test = service["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL"), test
    return " ".join(test[1:])


def test_services_images_and_kraft(compose):
    services = compose["services"]
    assert set(services) == {"kafka", "kafka-init", "postgres", "warden", "warden-serve"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka-init"]["image"] == services["kafka"]["image"]
    assert services["postgres"]["image"].startswith("postgres:")
    kafka_env = services["kafka"]["environment"]
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_CONTROLLER_QUORUM_VOTERS" in kafka_env and "zookeeper" not in str(compose)
    warden, serve = services["warden"], services["warden-serve"]
    assert warden["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / warden["build"]["context"] / warden["build"]["dockerfile"]).is_file()
    assert serve["image"] == warden["image"], "serve runs the image the daemon builds"
    assert warden["command"][:2] == ["run", "--config"]
    assert serve["command"][:2] == ["serve", "churn"]


def test_topics_created_at_start_are_the_configs(compose, example):
    services = compose["services"]
    script = " ".join(services["kafka-init"]["command"])
    created = set(re.findall(r"--create --if-not-exists --topic (\S+)", script))
    kafka = example.kafka
    assert created == {kafka.predictions_topic, kafka.labels_topic, kafka.alerts_topic}
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{kafka.bootstrap_servers}" in advertised.split(",")


def test_health_checks_restart_policies_and_dependencies(compose, example):
    services = compose["services"]
    for name in LONG_RUNNING:
        assert services[name]["restart"] == "unless-stopped", name
        assert health_command(services[name]), name
    assert services["kafka-init"]["restart"] == "no"
    # the daemon's liveness probe: /healthz (no token) on warden.toml's http port, in the image
    # (python, no curl)
    probe = health_command(services["warden"])
    assert f"http://127.0.0.1:{example.http.port}/healthz" in probe and "python" in probe
    assert example.http.host == "0.0.0.0" and example.http.token_env
    serve_port = services["warden-serve"]["command"][
        services["warden-serve"]["command"].index("--port") + 1
    ]
    assert f"http://127.0.0.1:{serve_port}/healthz" in health_command(services["warden-serve"])
    assert services["warden"]["depends_on"] == {
        "kafka-init": {"condition": "service_completed_successfully"},
        "postgres": {"condition": "service_healthy"},
    }
    assert services["kafka-init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["warden-serve"]["depends_on"]["warden"]["condition"] == "service_healthy"
    for name in ("warden", "warden-serve"):  # graceful stop: warden handles SIGTERM
        assert services[name]["stop_signal"] == "SIGTERM"
        assert int(services[name]["stop_grace_period"].rstrip("s")) >= 30


def test_volumes_and_config_mount(compose, example):
    services = compose["services"]
    named = set(compose["volumes"])
    used = set()
    for service in services.values():
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":")
            if not source.startswith("."):
                used.add(source)
            if target == "/etc/warden":  # a folder mount: renamed saves (approve) show up
                assert (DEPLOY / source / "warden.toml").is_file() and mode == ["ro"]
    assert used == named == {"kafka-data", "postgres-data", "warden-data"}
    mounts = {name: service.get("volumes", []) for name, service in services.items()}
    assert "postgres-data:/var/lib/postgresql/data" in mounts["postgres"]
    assert "kafka-data:" + services["kafka"]["environment"]["KAFKA_LOG_DIRS"] in mounts["kafka"]
    assert "warden-data:/var/lib/warden" in mounts["warden"]
    assert "warden-data:/var/lib/warden:ro" in mounts["warden-serve"]
    for path in (example.storage.registry, example.storage.reports, *_model_files(example)):
        assert Path(path).is_relative_to("/var/lib/warden"), f"{path} is not in the volume"


def test_secrets_are_environment_references_to_what_the_config_names(compose, example):
    services = compose["services"]
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET.search(key):
                assert ENV_REF.match(str(value)), f"{name}.{key}: inline secret {value!r}"
    warden_env = services["warden"]["environment"]
    named = {
        example.storage.password_env,
        example.http.token_env,
        example.alerts.webhook_secret_env,
    }
    assert None not in named and named <= set(warden_env)
    for var in named:  # passed through under the same name
        assert ENV_REF.match(warden_env[var]).group(1) == var
    serve_cmd = services["warden-serve"]["command"]
    token_var = serve_cmd[serve_cmd.index("--token-env") + 1]
    assert ENV_REF.match(services["warden-serve"]["environment"][token_var])
    postgres = services["postgres"]["environment"]
    url = example.storage.url  # postgresql://warden@postgres:5432/warden, no password
    assert (
        url == f"postgresql://{postgres['POSTGRES_USER']}@postgres:5432/{postgres['POSTGRES_DB']}"
    )
    assert ENV_REF.match(postgres["POSTGRES_PASSWORD"]).group(1) == example.storage.password_env


def test_example_config_passes_config_check(tmp_path):
    """`warden config check` on a copy whose /var/lib/warden is a temporary folder holding
    the reference CSV and weights file the example names."""
    text = (DEPLOY / "warden.toml").read_text(encoding="utf-8")
    config = tmp_path / "warden.toml"
    config.write_text(text.replace("/var/lib/warden", str(tmp_path)), encoding="utf-8")
    cfg = WardenConfig.model_validate(tomllib.loads(config.read_text("utf-8")))
    for path in _model_files(cfg):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"placeholder")
    result = CliRunner().invoke(app, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "churn" in result.output
    assert "note" not in result.output, "the example should carry no inline password"


def test_systemd_units_stop_gracefully():
    for unit, program in (
        ("warden.service", "warden run"),
        ("warden-serve.service", "warden serve"),
    ):
        service = _unit(DEPLOY / unit)["Service"]
        assert service["Type"] == "simple"
        assert service["KillSignal"] == "SIGTERM"
        assert int(service["TimeoutStopSec"]) >= 30
        assert service["Restart"] == "on-failure"
        argv = shlex.split(service["ExecStart"])
        assert " ".join([Path(argv[0]).name, argv[1]]) == program
        assert argv[argv.index("--config") + 1] == "/etc/warden/warden.toml"
        assert service["EnvironmentFile"] == "/etc/warden/env", "secrets come from a file"
        assert not any(SECRET.search(k) for k in service if k != "EnvironmentFile")
    daemon = _unit(DEPLOY / "warden.service")["Service"]
    assert daemon["KillMode"] == "mixed" and daemon["ReadWritePaths"] == "/var/lib/warden"


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    """systemd's own parser (no running systemd needed); ExecStart points at this venv's
    `warden`, since /opt/warden/venv does not exist here. Warnings (unknown keys, bad values)
    fail the test."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail(
                "systemd-analyze is required under CI (.ci/run installs the systemd package)"
            )
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    warden = Path(sys.executable).parent / "warden"
    units = []
    for unit in ("warden.service", "warden-serve.service"):
        text = (DEPLOY / unit).read_text(encoding="utf-8")
        (tmp_path / unit).write_text(text.replace("/opt/warden/venv/bin/warden", str(warden)))
        units.append(str(tmp_path / unit))
    done = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_dockerfile_copies_what_pip_install_needs(tmp_path):
    """The image runs `pip install .` on the files the Dockerfile copies: build that wheel
    from the same files and check it holds every package (migrations included) and the
    `warden` command."""
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r'^ENTRYPOINT \["warden"\]$', dockerfile, re.M)
    assert re.search(r"^USER warden$", dockerfile, re.M), "runs as a non-root user"
    assert re.search(r'^VOLUME \["/var/lib/warden"\]$', dockerfile, re.M)
    context = tmp_path / "context"
    for src, _dest in re.findall(r"^COPY (\S+) (\S+)$", dockerfile, re.M):
        source = ROOT / src
        if source.is_dir():
            shutil.copytree(source, context / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy(source, context / src)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path / "wheel"), str(context)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheel").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("watcher", "correctors", "storage"):
        shipped = {n for n in names if n.startswith(f"{package}/") and n.endswith(".py")}
        on_disk = {
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / package).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        assert shipped == on_disk, f"{package}: not in the wheel: {sorted(on_disk - shipped)}"
    [entry_points] = [n for n in names if n.endswith("entry_points.txt")]
    assert "warden = watcher.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _model_files(cfg: WardenConfig) -> list[Path]:
    return [p for m in cfg.models.values() for p in (m.reference, m.weights) if p is not None]


def _unit(path: Path) -> dict[str, dict[str, str]]:
    """A systemd unit as {section: {key: value}} (the last value of a repeated key)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


def test_config_check_of_the_example_as_is():
    """Acceptance: `warden config check deploy/warden.toml` passes here, where the production
    files do not exist: they are listed, and --files turns them into a failure."""
    result = CliRunner().invoke(app, ["config", "check", str(DEPLOY / "warden.toml")])
    assert result.exit_code == 0, result.output
    assert "not on this machine" in result.output and "models.churn.weights" in result.output
    strict = CliRunner().invoke(app, ["config", "check", str(DEPLOY / "warden.toml"), "--files"])
    assert strict.exit_code == 2
