"""How tests/e2e/test_operator_guide.py runs docs/operators-guide.md: its fenced blocks (with the
`## ` section each is under), the shell commands (in-process through typer's CliRunner, in
bash, or as background processes waited for until /readyz answers), a scratch PostgreSQL
database, and the setup both guide tests share (data folder, environment, the guide's config
pointed at an embedded broker and free ports)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from storage.db import make_engine
from storage.tables import Prediction
from tests.conftest import PG_URL
from tests.support import ROOT  # noqa: E402
from watcher.cli import app
from watcher.config import WardenConfig
from watcher.daemon.service import wait_for
from watcher.demo.credit import NORMAL, SHIFTED, generate
from watcher.kafka.broker import free_port
from watcher.kafka.clients import make_producer
from watcher.kafka.wire import encode

GUIDE = ROOT / "docs" / "operators-guide.md"
CONFIG_MARK = "# /etc/warden/warden.toml"
STOP_MARK = "# stop every warden process first"
DOC_ONLY_MARK = "# not run by the tests: "
MODEL = "credit"
TOKEN = "guide-token-" + uuid.uuid4().hex
SHELL_SYNTAX = re.compile(r"[|<>;&`]|\$\(")
RISK = "risk"  # the model section 13 brings
DOCUMENTED_PORTS = {9464: "http", 8080: "serve", 8081: "serve_risk"}
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass
class Block:
    lang: str
    text: str
    line: int
    section: str = ""  # the `## ` heading it is under

    def commands(self) -> list[str]:
        """Shell lines, continuations joined, comments and blank lines left out."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [c.strip() for c in joined.splitlines() if c.strip() and not c.startswith("#")]


def guide_blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    headings = [(m.start(), m.group(1)) for m in re.finditer(r"^## (.+)$", text, re.M)]
    return [
        Block(
            m.group(1),
            m.group(2),
            text.count("\n", 0, m.start()) + 1,
            next((h for at, h in reversed(headings) if at < m.start()), ""),
        )
        for m in FENCE.finditer(text)
    ]


def scratch_postgres() -> tuple[str | None, str | None, str]:
    """(libpq URL, database name, why not): a fresh database with warden's tables."""
    import sqlalchemy as sa

    name = f"warden_guide_{uuid.uuid4().hex[:10]}"
    try:
        admin = sa.create_engine(
            PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:  # noqa: BLE001
        return None, None, f"PostgreSQL unreachable at {PG_URL}: {exc}"
    url = sa.engine.make_url(PG_URL).set(drivername="postgresql", database=name, query={})
    libpq = url.render_as_string(hide_password=False)
    engine = make_engine(libpq)
    engine.dispose()
    return libpq, name, ""


def drop_postgres(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class Guide:
    """Runs the guide's commands and keeps the background processes."""

    def __init__(self, tmp_path: Path, env: dict[str, str], ports: dict[str, int]) -> None:
        self.tmp, self.env, self.ports = tmp_path, env, ports
        self.background: dict[str, subprocess.Popen] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.candidates = False

    def substitute(self, text: str) -> str:
        for documented, kind in DOCUMENTED_PORTS.items():
            text = text.replace(f"127.0.0.1:{documented}", f"127.0.0.1:{self.ports[kind]}")
            text = text.replace(f"--port {documented}", f"--port {self.ports[kind]}")
        return text

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.env[m.group(1)], text)

    def run(self, command: str) -> str:
        command = self.substitute(command)
        if "$WARDEN_DB_URL" in command and not self.env.get("WARDEN_DB_URL"):
            self.skipped.append(command)
            return ""
        if command.startswith(("warden run ", "warden serve ")):
            self.start(command)
            output = ""
        elif command.startswith("warden ") and not SHELL_SYNTAX.search(command):
            args = shlex.split(self.expand(command))[1:]
            result = CliRunner().invoke(app, args, env=self.env)
            assert result.exit_code == 0, f"{command}\n{result.output}\n{result.exception!r}"
            output = result.output
        else:
            done = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command],
                env=self.env,
                cwd=self.env["WARDEN_DATA"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
            output = done.stdout
        self.ran.append(command)
        return output

    def start(self, command: str) -> None:
        kind = command.split()[1]
        log = open(self.tmp / f"{kind}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + command],
            env=self.env,
            cwd=self.env["WARDEN_DATA"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.background[kind] = proc
        given = re.search(r"--port (\d+)", command)
        port = int(given.group(1)) if given else self.ports["http"]
        auth = {"Authorization": f"Bearer {TOKEN}"}

        def ready() -> bool:
            assert proc.poll() is None, f"{command} exited {proc.returncode}:\n{self.log(kind)}"
            try:
                url = f"http://127.0.0.1:{port}/readyz"
                return httpx.get(url, headers=auth, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(ready, 90), f"{command} not ready in 90 s:\n{self.log(kind)}"

    def log(self, kind: str) -> str:
        return (self.tmp / f"{kind}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        """SIGTERM, as systemd and docker stop send it: a clean exit 0 is documented."""
        for kind, proc in list(self.background.items()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"warden {kind} did not stop within 60 s of SIGTERM")
            del self.background[kind]
            assert code == 0, f"warden {kind} exited {code} on SIGTERM:\n{self.log(kind)}"


def stored(engine, prediction_id: str) -> Prediction | None:
    with Session(engine) as session:
        query = select(Prediction).where(Prediction.prediction_id == prediction_id)
        return session.exec(query).first()


@dataclass
class Setup:
    """A data folder with the demo's credit model, the guide's config aimed at `bootstrap`
    and free ports, and the environment the guide's variables name."""

    data: Path
    config: Path
    env: dict[str, str]
    ports: dict[str, int]


def setup(tmp_path: Path, trained, bootstrap: str, pg_url: str | None = None) -> Setup:
    folder, _width = trained
    data, backup = tmp_path / "data", tmp_path / "backup"
    data.mkdir()
    backup.mkdir()
    for name in ("reference.csv", "initial-weights.pt"):
        shutil.copyfile(folder / name, data / name)
    ports = {kind: free_port() for kind in DOCUMENTED_PORTS.values()}
    config = data / "warden.toml"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CONFIG": str(config),
        "WARDEN_DATA": str(data),
        "BACKUP": str(backup),
        "WARDEN_DB_URL": pg_url or "",
        "WARDEN_HTTP_TOKEN": TOKEN,
    }
    [block] = [b for b in guide_blocks() if b.lang == "toml" and b.text.startswith(CONFIG_MARK)]
    text = block.text.replace("/var/lib/warden", str(data))
    text = text.replace("kafka:9092", bootstrap)
    config.write_text(text.replace("port = 9464", f"port = {ports['http']}"))
    return Setup(data, config, env, ports)


# -- section 13's data and traffic ------------------------------------------------------------


def write_risk_data(data: Path) -> None:
    """The CSV files section 13 starts from: a training set and a held-out reference."""
    folder = data / "risk"
    folder.mkdir()
    for name, seed in (("train.csv", 100), ("reference.csv", 0)):
        frame = generate(4000, NORMAL, seed=seed).rename(columns={"label": "defaulted"})
        frame.to_csv(folder / name, index=False)


def send_shifted_traffic(url: str, cfg: WardenConfig, rows: int, seed: int) -> None:
    """Section 4's serving side: shifted rows through `warden serve`, then their labels."""
    frame = generate(rows, SHIFTED, seed=seed)
    features = cfg.models[RISK].features
    producer = make_producer(cfg.kafka)
    with httpx.Client(base_url=url, timeout=30) as http:
        for start in range(0, rows, 100):
            chunk = frame.iloc[start : start + 100]
            body = {
                "rows": chunk[features].to_dict(orient="records"),
                "groups": [{"sex": sex} for sex in chunk["sex"]],
            }
            answer = http.post("/predict", json=body)
            assert answer.status_code == 200, answer.text
            for pid, label in zip(answer.json()["prediction_ids"], chunk["label"], strict=True):
                message = encode({"prediction_id": pid, "label": int(label)})
                producer.send(cfg.kafka.labels_topic, key=pid.encode(), value=message)
    producer.flush()
    producer.close()
