"""docs/operators-guide.md is tested: every command of its `sh` blocks runs, in document order,
against a real setup, and docs/config-reference.md is the generator's current output.

The setup: the guide's own config (the TOML block whose first line is
`# /etc/warden/warden.toml`) with `/var/lib/warden` replaced by a temporary data folder,
`kafka:9092` by an embedded broker of this test's own (the guide uses the default topic names,
which other tests also use on the session broker) and the ports 9464 / 8080 by free ones;
the demo's reference set and initial weights in the data folder; `$CONFIG`, `$WARDEN_DATA`,
`$BACKUP`, `$WARDEN_DB_URL` and `$WARDEN_HTTP_TOKEN` in the environment. `WARDEN_DB_URL` is a
scratch PostgreSQL database holding warden's tables (for `pg_dump` / `pg_restore`); without
PostgreSQL those two commands are skipped with the reason (and fail when CI is set, as the
storage tests do).

How a command runs: `warden run` and `warden serve` start in the background (the test waits
until their /readyz answers 200 and stops them with SIGTERM, expecting exit 0); any other
`warden …` line without shell syntax runs in-process through typer's CliRunner; the rest
(curl, jq, sqlite3, tar, pg_dump, pipes) runs in bash with `pipefail`. Every command must exit
0. A block whose first line is `# stop every warden process first` stops the background
processes before it runs. Between commands the test checks what the guide says happens:
the served prediction and the label reach the database, `warden approve` makes the running
daemon swap the candidate in, `warden rollback` restores v1. Python blocks are executed
(`kafka:9092` replaced), TOML blocks validated against the schema, JSON messages decoded by
the daemon's decoder. `sh-doc-only` blocks (PyPI, Docker, systemd) are not run; they must
say why in their first line, and there must be few of them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from correctors.models.champion import load_champion, register_version
from correctors.swap import await_approval
from storage.db import make_engine
from storage.registry import ModelRegistry
from storage.tables import Candidate, Prediction
from tests.conftest import PG_URL
from watcher.alerts.message import sign
from watcher.cli import app
from watcher.config import WardenConfig, load_config
from watcher.config.reference import COMMAND, render
from watcher.daemon.service import wait_for
from watcher.kafka.broker import EmbeddedBroker, free_port
from watcher.kafka.wire import parse_label, parse_prediction

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "operators-guide.md"
REFERENCE = ROOT / "docs" / "config-reference.md"
CONFIG_MARK = "# /etc/warden/warden.toml"
STOP_MARK = "# stop every warden process first"
DOC_ONLY_MARK = "# not run by the tests: "
LANGUAGES = {"sh", "sh-doc-only", "toml", "json", "python"}
MODEL = "credit"
TOKEN = "guide-token-" + uuid.uuid4().hex
SHELL_SYNTAX = re.compile(r"[|<>;&`]|\$\(")
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


@dataclass
class Block:
    lang: str
    text: str
    line: int

    def commands(self) -> list[str]:
        """Shell lines, continuations joined, comments and blank lines left out."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [c.strip() for c in joined.splitlines() if c.strip() and not c.startswith("#")]


def guide_blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    return [
        Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
        for m in FENCE.finditer(text)
    ]


def test_config_reference_is_current():
    assert REFERENCE.read_text(encoding="utf-8") == render(), (
        f"docs/config-reference.md differs from the config schema: run `{COMMAND}`"
    )


def test_every_block_is_tested_or_says_why_not():
    blocks = guide_blocks()
    assert {b.lang for b in blocks} <= LANGUAGES, "a fence language the test does not handle"
    doc_only = [b for b in blocks if b.lang == "sh-doc-only"]
    for block in doc_only:
        first = block.text.splitlines()[0]
        assert first.startswith(DOC_ONLY_MARK) and len(first) > len(DOC_ONLY_MARK) + 5, (
            f"operators-guide.md:{block.line}: an sh-doc-only block must start with "
            f"'{DOC_ONLY_MARK}<reason>'"
        )
    assert len(doc_only) <= 4, "keep untested blocks few"
    assert sum(len(b.commands()) for b in blocks if b.lang == "sh") >= 30
    assert sum(b.text.startswith(CONFIG_MARK) for b in blocks if b.lang == "toml") == 1


def test_links_resolve():
    """Anchors as GitHub makes them from headings; relative links to existing files."""
    for doc in (GUIDE, REFERENCE, ROOT / "deploy" / "README.md"):
        text = doc.read_text(encoding="utf-8")
        anchors = set()
        for heading in re.findall(r"^#+ (.+)$", text, re.M):
            kept = "".join(c for c in heading.lower() if c.isalnum() or c in "-_ ")
            anchors.add(kept.replace(" ", "-"))
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith("#"):
                assert target[1:] in anchors, f"{doc.name}: no heading for {target}"
            elif not target.startswith("http"):
                path = target.split("#")[0]
                assert (doc.parent / path).exists(), f"{doc.name}: {target} does not exist"


def test_toml_examples_are_valid():
    for block in guide_blocks():
        if block.lang == "toml":
            try:
                WardenConfig.model_validate(tomllib.loads(block.text))
            except Exception as exc:  # noqa: BLE001 - name the block
                pytest.fail(f"operators-guide.md:{block.line}: {exc}")


def test_json_examples_decode_as_the_daemon_decodes_them():
    kinds = []
    for block in guide_blocks():
        if block.lang != "json":
            continue
        doc = json.loads(block.text)
        raw = block.text.encode()
        if "features" in doc:
            row = parse_prediction(raw, 10**6)
            assert row["prediction"] == "0" and row["label"] is None
            kinds.append("prediction")
        elif set(doc) == {"prediction_id", "label"}:
            assert parse_label(raw, 10**6) == {"prediction_id": doc["prediction_id"], "label": "1"}
            kinds.append("label")
        else:
            assert {"alert", "alert_id", "model", "ts", "next_action"} <= set(doc)
            kinds.append("alert")
    assert sorted(kinds) == ["alert", "label", "prediction"]


def test_webhook_verification_snippet_accepts_warden_signatures_only():
    [block] = [b for b in guide_blocks() if b.lang == "python" and "def verify" in b.text]
    namespace: dict = {}
    exec(compile(block.text, f"operators-guide.md:{block.line}", "exec"), namespace)
    verify = namespace["verify"]
    key, body, ts = b"k3y", b'{"alert":"swapped","model":"credit"}', str(int(time.time()))
    headers = {"X-Warden-Timestamp": ts, "X-Warden-Signature": sign(key, ts, body)}
    assert verify(key, headers, body)
    assert not verify(key, headers, body + b" ")
    assert not verify(b"other", headers, body)
    old = str(int(time.time()) - 3600)
    assert not verify(key, {**headers, "X-Warden-Timestamp": old}, body)


# -- the commands ----------------------------------------------------------------------------


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


def add_candidates(engine, registry) -> None:
    """Two candidates awaiting approval, as the daemon leaves them in manual mode: v2 and v3
    (the champion's weights under new version numbers)."""
    champion = load_champion(registry, MODEL, "v1")
    card = {k: v for k, v in champion.card.items() if k not in ("model", "version")}
    for version in ("v2", "v3"):
        register_version(registry, MODEL, version, champion.torch_model, champion.encoder, card)
        with Session(engine) as session:
            session.add(
                Candidate(
                    id=f"{MODEL}-{version}",
                    model=MODEL,
                    version=version,
                    parent_version="v1",
                    status="validated",
                    champion_metrics={"recent_holdout_accuracy": 0.71},
                    candidate_metrics={"recent_holdout_accuracy": 0.86},
                    verdict={"passed": True, "reasons": ["recent accuracy +0.15"]},
                )
            )
            session.commit()
        await_approval(engine, f"{MODEL}-{version}")


class Guide:
    """Runs the guide's commands and keeps the background processes."""

    def __init__(self, tmp_path: Path, env: dict[str, str], ports: dict[str, int]) -> None:
        self.tmp, self.env, self.ports = tmp_path, env, ports
        self.background: dict[str, subprocess.Popen] = {}
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.candidates = False

    def substitute(self, text: str) -> str:
        text = text.replace("127.0.0.1:9464", f"127.0.0.1:{self.ports['http']}")
        text = text.replace("127.0.0.1:8080", f"127.0.0.1:{self.ports['serve']}")
        return text.replace("--port 8080", f"--port {self.ports['serve']}")

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
        port = self.ports["http" if kind == "run" else "serve"]
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


@pytest.mark.timeout(240)
def test_every_command_of_the_guide_runs(tmp_path, trained, monkeypatch):
    missing = [t for t in ("bash", "curl", "jq", "sqlite3", "tar") if shutil.which(t) is None]
    assert not missing, f"the guide's commands need {missing} on PATH"
    folder, _width = trained
    data, backup = tmp_path / "data", tmp_path / "backup"
    data.mkdir()
    backup.mkdir()
    for name in ("reference.csv", "initial-weights.pt"):
        shutil.copyfile(folder / name, data / name)
    ports = {"http": free_port(), "serve": free_port()}
    pg_url, pg_name, pg_reason = scratch_postgres()
    if pg_url is None and os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required when CI is set: {pg_reason}")
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
    monkeypatch.chdir(data)
    blocks = guide_blocks()
    guide = Guide(tmp_path, env, ports)
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        [block] = [b for b in blocks if b.lang == "toml" and b.text.startswith(CONFIG_MARK)]
        text = block.text.replace("/var/lib/warden", str(data))
        text = text.replace("kafka:9092", broker.bootstrap)
        config.write_text(text.replace("port = 9464", f"port = {ports['http']}"))
        cfg = load_config(config)
        engine = make_engine(cfg.storage.url)
        registry = ModelRegistry(cfg.storage.registry)
        namespace: dict = {}
        try:
            for block in blocks:
                if block.lang == "python":
                    code = block.text.replace("kafka:9092", broker.bootstrap)
                    exec(compile(code, f"operators-guide.md:{block.line}", "exec"), namespace)
                    if "labels" in code:  # the logged prediction, then its label, are stored
                        labelled = labelled_check(engine, namespace["ids"][0])
                        assert wait_for(labelled, 30), "prediction or label not stored"
                    continue
                if block.lang != "sh":
                    continue
                if block.text.startswith(STOP_MARK):
                    guide.stop_all()
                for command in block.commands():
                    if command.startswith("warden candidates") and not guide.candidates:
                        assert registry.active(MODEL) == "v1", "the daemon registers v1"
                        add_candidates(engine, registry)  # as a manual-mode correction would
                        guide.candidates = True
                    output = guide.run(command)
                    check_effect(command, output, engine, registry, data)
        finally:
            guide.stop_all()
            engine.dispose()
            if pg_name:
                drop_postgres(pg_name)
    subcommands = {" ".join(c.split()[1:3]) for c in guide.ran if c.startswith("warden ")}
    for wanted in (
        "run --config",
        "serve credit",
        "config check",
        "config reference",
        "status --config",
        "incidents --config",
        "candidates --config",
        "approve credit-v2",
        "reject credit-v3",
        "rollback credit",
        "db upgrade",
    ):
        assert wanted in subcommands, f"the guide no longer runs `warden {wanted}`"
    if guide.skipped:
        pytest.skip(f"ran {len(guide.ran)} commands; skipped {guide.skipped}: {pg_reason}")


def labelled_check(engine, prediction_id: str):
    return lambda: getattr(stored(engine, prediction_id), "label", None) == "1"


def check_effect(command: str, output: str, engine, registry, data: Path) -> None:
    """What the guide says each command does, checked."""
    if command.startswith("warden config reference"):
        assert (data / "config-reference.md").read_text(encoding="utf-8") == render()
    elif "/predict" in command:
        answer = json.loads(output)
        assert answer["model"] == MODEL and answer["version"] == "v1"
        [pid] = answer["prediction_ids"]
        assert wait_for(lambda: stored(engine, pid) is not None, 30), "not logged to Kafka"
    elif command.startswith("warden approve"):
        assert wait_for(lambda: registry.active(MODEL) == "v2", 30), "the daemon did not swap"
    elif command.startswith("warden reject"):
        with Session(engine) as session:
            assert session.get(Candidate, f"{MODEL}-v3").status == "rejected"
    elif command.startswith("warden rollback"):
        assert registry.active(MODEL) == "v1"
    elif "PRAGMA integrity_check" in command:
        assert output.strip() == "ok"
    elif "/metrics" in command:
        assert "warden_ingested_total" in output
