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

Section 13 ("Bring your own model") runs in a setup of its own (the same config, a fresh
data folder and broker), after the test writes the CSV files the section starts from: its
Python blocks whose first line names a file (`# $WARDEN_DATA/models/risk_model.py`) are saved
there (the daemon imports the module, the section runs the script), its TOML block marked
`# add to $CONFIG` is appended to the config (checks every 3 s instead of 60), and its
commands run as above. Before `warden candidates`, the test sends shifted traffic through the
section's `warden serve` and its labels to Kafka, as section 4 describes, until the daemon
has corrected the new model and swapped the candidate in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import tomllib
from pathlib import Path

import pytest
from sqlmodel import Session, select

from correctors.models.champion import load_champion, register_version
from correctors.swap import await_approval
from storage.db import make_engine
from storage.registry import ModelRegistry
from storage.tables import Candidate, CheckRun
from tests.support.guide_runner import (
    CONFIG_MARK,
    DOC_ONLY_MARK,
    GUIDE,
    MODEL,
    RISK,
    ROOT,
    STOP_MARK,
    Guide,
    drop_postgres,
    guide_blocks,
    scratch_postgres,
    send_shifted_traffic,
    setup,
    stored,
    write_risk_data,
)
from watcher.alerts.message import sign
from watcher.config import WardenConfig, load_config
from watcher.config.reference import COMMAND, render
from watcher.daemon.service import wait_for
from watcher.kafka.broker import EmbeddedBroker
from watcher.kafka.wire import parse_label, parse_prediction

REFERENCE = ROOT / "docs" / "config-reference.md"
LANGUAGES = {"sh", "sh-doc-only", "toml", "json", "python"}
BYOM = "13. Bring your own model"  # run by test_bring_your_own_model_section_runs
ADD_MARK = "# add to $CONFIG"
FILE_MARK = re.compile(r"^# \$WARDEN_DATA/(\S+)\n")


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


DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS += [ROOT / "deploy" / "README.md", ROOT / "bench" / "README.md"]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose(doc: Path) -> str:
    """The document without its fenced blocks (a `#` line there is a comment, not a heading)."""
    return FENCE.sub("", doc.read_text(encoding="utf-8"))


def anchors(doc: Path) -> set[str]:
    """Anchors as GitHub makes them from headings: lower case, punctuation but - and _ dropped."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", prose(doc), re.M):
        kept = "".join(c for c in heading.lower() if c.isalnum() or c in "-_ ")
        found.add(kept.replace(" ", "-"))
    return found


def test_readme_stays_short():
    """The README says what it is, the two commands, the flow, the layout, the commands and
    where to read on; the rest lives in docs/."""
    assert len((ROOT / "README.md").read_bytes()) <= 12_000


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: str(d.relative_to(ROOT)))
def test_links_resolve(doc):
    """Every relative link of the README and the docs names an existing file, and every anchor
    (in the same document or another one) a heading there."""
    assert REFERENCE in DOCS and GUIDE in DOCS
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(doc)):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.exists(), f"{doc.name}: {target} does not exist"
        if anchor:
            assert file.suffix == ".md", f"{doc.name}: {target}: an anchor outside markdown"
            assert anchor in anchors(file), f"{doc.name}: no heading for {target}"


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


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_every_command_of_the_guide_runs(tmp_path, trained, monkeypatch):
    missing = [t for t in ("bash", "curl", "jq", "sqlite3", "tar") if shutil.which(t) is None]
    assert not missing, f"the guide's commands need {missing} on PATH"
    pg_url, pg_name, pg_reason = scratch_postgres()
    if pg_url is None and os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required when CI is set: {pg_reason}")
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ready = setup(tmp_path, trained, broker.bootstrap, pg_url)
        monkeypatch.chdir(ready.data)
        guide = Guide(tmp_path, ready.env, ready.ports)
        cfg = load_config(ready.config)
        engine = make_engine(cfg.storage.url)
        registry = ModelRegistry(cfg.storage.registry)
        try:
            run_guide(guide, broker.bootstrap, engine, registry, ready.data)
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


def run_guide(guide: Guide, bootstrap: str, engine, registry, data: Path) -> None:
    """The guide's blocks in order (its own-model section aside): Python blocks run here,
    shell commands through `guide`, each checked for the effect the guide says it has."""
    namespace: dict = {}
    for block in guide_blocks():
        if block.section == BYOM:
            continue
        if block.lang == "python":
            code = block.text.replace("kafka:9092", bootstrap)
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


# -- section 13: bring your own model --------------------------------------------------------


def corrected_by_traffic(ready, started: float) -> dict:
    """Traffic until the daemon swapped a corrected `risk` in; when the first check ran."""
    cfg = load_config(ready.config)
    engine, registry = make_engine(cfg.storage.url), ModelRegistry(cfg.storage.registry)
    url = f"http://127.0.0.1:{ready.ports['serve_risk']}"
    seen: dict = {}

    def swapped() -> bool:
        if "first_check_s" not in seen:
            with Session(engine) as session:
                if session.exec(select(CheckRun).where(CheckRun.model == RISK)).first():
                    seen["first_check_s"] = round(time.monotonic() - started, 1)
        return registry.active(RISK) not in (None, "v1")

    try:
        for round_ in range(4):
            send_shifted_traffic(url, cfg, 1500, seed=70 + round_)
            if wait_for(swapped, 120, step_s=1.0):
                return seen
        pytest.fail(f"the daemon did not correct {RISK}: active {registry.active(RISK)}")
    finally:
        engine.dispose()


def byom_effect(command: str, output: str, data: Path) -> None:
    """What section 13 says each command does, checked."""
    if command.startswith("warden model encoder") and "--json" not in command:
        assert "width: 14 inputs" in output and "0 = '0', 1 = '1'" in output, output
    elif command.startswith("warden model encoder"):
        assert json.loads(output) == {"width": 14, "classes": ["0", "1"]}
    elif "train_risk.py" in command:
        assert "14 inputs" in output and (data / "risk" / "risk-v1.pt").is_file()
    elif command.startswith("warden model init"):
        assert "factory_kwargs = { n_inputs = 14, n_classes = 2 }" in output, output
        assert (data / "risk" / "risk-init.pt").is_file()
    elif command.startswith("warden config check"):
        assert "ok" in output, output
    elif "/predict" in command:
        answer = json.loads(output)
        assert (answer["model"], answer["version"]) == (RISK, "v1")
    elif command.startswith("warden candidates"):
        assert f"{RISK}-v" in output, output
    elif command.startswith("warden status"):
        assert json.loads(output)["active"] not in (None, "v1"), output


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bring_your_own_model_section_runs(tmp_path, trained, monkeypatch, capsys):
    blocks = [b for b in guide_blocks() if b.section == BYOM]
    assert blocks, f"the guide lost its section {BYOM!r}"
    started = time.monotonic()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ready = setup(tmp_path, trained, broker.bootstrap)
        write_risk_data(ready.data)
        monkeypatch.chdir(ready.data)
        guide = Guide(tmp_path, ready.env, ready.ports)
        seen: dict = {}
        try:
            for block in blocks:
                named = FILE_MARK.match(block.text)
                if block.lang == "toml" and block.text.startswith(ADD_MARK):
                    text = block.text.replace("/var/lib/warden", str(ready.data))
                    text = text.replace("interval_seconds = 60", "interval_seconds = 3")
                    with ready.config.open("a", encoding="utf-8") as fh:
                        fh.write("\n" + text)
                elif block.lang == "python" and named:
                    target = ready.data / named.group(1)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(block.text, encoding="utf-8")
                elif block.lang == "python":
                    exec(compile(block.text, f"operators-guide.md:{block.line}", "exec"), {})
                elif block.lang == "sh":
                    for command in block.commands():
                        if command.startswith("warden candidates") and not guide.candidates:
                            seen = corrected_by_traffic(ready, started)
                            guide.candidates = True
                        byom_effect(command, guide.run(command), ready.data)
        finally:
            guide.stop_all()
    subcommands = {" ".join(c.split()[1:3]) for c in guide.ran if c.startswith("warden ")}
    for wanted in ("model encoder", "model init", "config check", "run --config", "serve risk"):
        assert wanted in subcommands, f"section 13 no longer runs `warden {wanted}`"
    with capsys.disabled():
        print(
            f"\nsection 13: first check of {RISK} {seen.get('first_check_s')} s after the "
            f"start, corrected after {time.monotonic() - started:.0f} s"
        )
