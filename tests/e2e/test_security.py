"""Security (issue 6, point 3), with real code and no mocks.

* HTTP: binds 127.0.0.1 unless configured; off localhost a bearer token is required (config
  error otherwise). Bad tokens → 401 and oversized bodies → 413 are exercised over real HTTP in
  tests/watcher/daemon/test_http_api.py::test_bearer_token_guards_everything_but_healthz and
  tests/watcher/serving/test_serve.py::test_oversized_malformed_and_unauthorized_requests.
* Registry: names and symlinks cannot escape the root.
* Weights: `load_state_dict` (weights_only=True) refuses a pickle that would run code.
* Secrets: the database password from `storage.password_env` / `storage.password_file`, the Kafka
  SASL password from `kafka.sasl_password_env` (the webhook key from `alerts.webhook_secret_env`
  is covered by tests/watcher/alerts/test_alerts.py); logs mask secrets and URL passwords.
* Kafka: SASL/SSL settings reach kafka-python's clients; PLAINTEXT still works on the real broker.
"""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import time
import uuid
from pathlib import Path

import pytest
import structlog
import torch
from pydantic import ValidationError

from correctors.models.modeling import ModelLoadError, load_state_dict
from storage.db import make_engine, redact_url, with_password
from storage.registry import ModelRegistry, RegistryError
from watcher import logs
from watcher.config import ConfigError, HttpConfig, KafkaConfig, StorageConfig, load_config
from watcher.daemon.endpoint import DaemonEndpoint
from watcher.daemon.metrics import WardenMetrics
from watcher.kafka.clients import client_security, ensure_topics, make_consumer, make_producer

SECRET = "S3cr3t-p@ss/w:rd"  # characters that need escaping inside a URL
DB_ENV = "WARDEN_TEST_DB_PASSWORD"
SASL_ENV = "WARDEN_TEST_SASL_PASSWORD"


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "warden.toml"
    path.write_text(body)
    return path


# -- HTTP ---------------------------------------------------------------------------------------
def test_http_binds_localhost_by_default_and_needs_a_token_elsewhere():
    assert HttpConfig().host == "127.0.0.1"
    from watcher.cli import serve

    assert inspect.signature(serve).parameters["host"].default.default == "127.0.0.1"
    with pytest.raises(ValidationError, match="token_env"):
        HttpConfig(host="0.0.0.0")
    assert HttpConfig(host="0.0.0.0", token_env="SOME_TOKEN").token_env == "SOME_TOKEN"
    assert HttpConfig(host="0.0.0.0", enabled=False).enabled is False

    server = DaemonEndpoint(
        HttpConfig(port=0),
        status=dict,
        ready=lambda: (True, "ok"),
        metrics=WardenMetrics(intake=lambda: None, incidents=dict),
    )
    server.start()
    try:
        assert server._sock.getsockname()[0] == "127.0.0.1"
    finally:
        server.stop()


def test_http_host_without_token_is_a_config_error(tmp_path):
    path = write_config(tmp_path, '[http]\nhost = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match=r"http: .*token_env"):
        load_config(path)


# -- registry -----------------------------------------------------------------------------------
def make_version(reg: ModelRegistry, version: str) -> None:
    vdir = reg.version_dir("m", version)
    vdir.mkdir(parents=True)
    (vdir / "model.onnx").write_bytes(b"onnx" + version.encode())
    reg.write_card("m", version, {"version": version})


@pytest.mark.parametrize(
    "bad", ["..", "../x", "a/b", "/etc", "/", ".hidden", "a\\b", "", "x" * 200]
)
def test_registry_names_cannot_escape(tmp_path, bad):
    reg = ModelRegistry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="unsafe registry name"):
        reg.version_dir("m", bad)
    with pytest.raises(RegistryError, match="unsafe registry name"):
        reg.model_dir(bad)


def test_registry_symlinks_pointing_outside_are_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "model.onnx").write_bytes(b"evil")
    (outside / "card.json").write_text("{}")
    reg = ModelRegistry(tmp_path / "reg")
    make_version(reg, "v1")
    reg.activate("m", "v1", actor="daemon")

    (reg.model_dir("m") / "v2").symlink_to(outside, target_is_directory=True)  # a version dir
    with pytest.raises(RegistryError, match="escapes the registry root"):
        reg.version_dir("m", "v2")
    with pytest.raises(RegistryError, match="escapes"):
        reg.activate("m", "v2", actor="operator")

    (reg.root / "other").symlink_to(outside, target_is_directory=True)  # a model dir
    with pytest.raises(RegistryError, match="escapes"):
        reg.active("other")

    make_version(reg, "v3")  # a file inside a real version dir
    onnx = reg.version_dir("m", "v3") / "model.onnx"
    onnx.unlink()
    onnx.symlink_to(outside / "model.onnx")
    with pytest.raises(RegistryError, match="outside"):
        reg.onnx_path("m", "v3")
    with pytest.raises(RegistryError, match="outside"):
        reg.activate("m", "v3", actor="operator")

    history = reg.model_dir("m") / "history.jsonl"  # appending must not write through a link
    history.unlink()
    target = outside / "history.jsonl"
    history.symlink_to(target)
    with pytest.raises(RegistryError, match="outside"):
        reg.activate("m", "v1", actor="operator")
    assert not target.exists()
    assert reg.active("m") == "v1"

    inside = reg.version_dir("m", "v1")  # a link that stays inside the root is fine
    (reg.model_dir("m") / "v1-alias").symlink_to(inside, target_is_directory=True)
    assert reg.card("m", "v1-alias")["version"] == "v1"


# -- weights ------------------------------------------------------------------------------------
class Payload:
    """Unpickling this creates `marker`: what an attacker's code would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_weights_never_unpickle_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "x": Payload(marker)}, evil)
    with pytest.raises(ModelLoadError, match="cannot load weights"):
        load_state_dict(evil)
    assert not marker.exists()

    torch.save(Payload(marker), evil)  # the object itself, not inside a dict
    with pytest.raises(ModelLoadError):
        load_state_dict(evil)
    assert not marker.exists()

    torch.load(evil, weights_only=False)  # the payload is real: a plain load runs it
    assert marker.exists()

    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(3)}, good)
    assert torch.equal(load_state_dict(good)["w"], torch.ones(3))


# -- database password --------------------------------------------------------------------------
PG = "postgresql://warden@db.internal:5432/warden"


def test_database_password_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DB_ENV, SECRET)
    path = write_config(tmp_path, f'[storage]\nurl = "{PG}"\npassword_env = "{DB_ENV}"\n')
    cfg = load_config(path)
    assert cfg.storage.url == PG and SECRET not in path.read_text()
    url = cfg.storage.engine_url()
    from sqlalchemy.engine import make_url

    assert make_url(url).password == SECRET and make_url(url).host == "db.internal"
    assert make_engine(url, create=False).url.password == SECRET  # reaches the driver's URL
    assert SECRET not in redact_url(url) and "warden:***@db.internal" in redact_url(url)
    assert cfg.storage.notes() == []

    monkeypatch.delenv(DB_ENV)
    with pytest.raises(ConfigError, match=f"storage.password_env: .*{DB_ENV}"):
        cfg.storage.engine_url()
    monkeypatch.setenv(DB_ENV, "")
    with pytest.raises(ConfigError, match="storage.password_env"):
        cfg.storage.engine_url()


def test_database_password_from_a_file_relative_to_the_config(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db").write_text(f"  {SECRET}\n")
    path = write_config(tmp_path, f'[storage]\nurl = "{PG}"\npassword_file = "secrets/db"\n')
    cfg = load_config(path)
    assert cfg.storage.password_file == tmp_path / "secrets" / "db"
    assert with_password(PG, SECRET) == cfg.storage.engine_url()

    (tmp_path / "secrets" / "db").write_text("\n")
    with pytest.raises(ConfigError, match="storage.password_file: .* is empty"):
        cfg.storage.engine_url()
    (tmp_path / "secrets" / "db").unlink()
    with pytest.raises(ConfigError, match="storage.password_file: cannot read") as err:
        cfg.storage.engine_url()
    assert SECRET not in str(err.value)


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        (f'url = "{PG}"\npassword_env = "X"\npassword_file = "f"', "at most one"),
        ('url = "postgresql://u:inline@h/db"\npassword_env = "X"', "remove it from the url"),
        ('url = "sqlite:///w.db"\npassword_env = "X"', "SQLite"),
    ],
)
def test_database_password_misconfigurations_name_the_key(tmp_path, storage, message):
    path = write_config(tmp_path, f"[storage]\n{storage}\n")
    with pytest.raises(ConfigError, match=f"storage: .*{message}"):
        load_config(path)


def test_inline_password_is_accepted_with_a_note():
    cfg = StorageConfig(url="postgresql://u:inline-pw@h/db")
    assert cfg.engine_url() == cfg.url
    assert "storage.password_env" in cfg.notes()[0] and "inline-pw" not in cfg.notes()[0]
    assert StorageConfig().engine_url() == "sqlite:///warden.db"


def test_redact_url():
    assert redact_url("postgresql://u:hunter2@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    assert "hunter2" not in redact_url("postgresql://u@h/db?password=hunter2")
    assert redact_url("sqlite:////var/lib/warden.db") == "sqlite:////var/lib/warden.db"
    assert redact_url("::not a url::hunter2") == "<unparsable database url>"


# -- logs ---------------------------------------------------------------------------------------
@pytest.fixture()
def log_stream():
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.configure(json_lines=True, stream=stream)
    try:
        yield stream
    finally:
        structlog.configure(**saved)
        for handler in root.handlers:
            handler.filters = [
                f for f in handler.filters if not isinstance(f, logs.RedactingFilter)
            ]
        root.handlers[:] = handlers
        root.setLevel(level)


def test_logs_never_carry_secrets(log_stream):
    structlog.get_logger("t").warning(
        "connect to postgresql://warden:hunter2@db:5432/w failed",
        url="postgresql+psycopg://warden:hunter2@db/w",
        password="hunter2",
        db_password=SECRET,
        sasl_plain_password="kafka-pw",
        webhook_secret="hmac-key",
        token="bearer-tok",
        api_key="key-123",
        headers={"Authorization": "Bearer abc.def", "Accept": "json"},
        argv=["--dsn", "redis://:hunter2@cache:6379/0"],
        note="sent Authorization: Bearer tok-xyz",
        token_env="WARDEN_TOKEN",
        password_file="/run/secrets/db",
        auth=True,
        secret=None,
    )
    try:
        raise RuntimeError("cannot connect to postgresql://warden:hunter2@db/w")
    except RuntimeError:
        structlog.get_logger("t").exception("boom")
    lines = [json.loads(line) for line in log_stream.getvalue().splitlines()]
    text = log_stream.getvalue()
    for secret in ("hunter2", SECRET, "kafka-pw", "hmac-key", "bearer-tok", "key-123", "abc.def"):
        assert secret not in text, secret
    assert "tok-xyz" not in text
    first = lines[0]
    assert first["event"] == "connect to postgresql://warden:***@db:5432/w failed"
    assert first["url"] == "postgresql+psycopg://warden:***@db/w"
    assert first["password"] == first["sasl_plain_password"] == first["api_key"] == "***"
    assert first["headers"] == {"Authorization": "***", "Accept": "json"}
    assert first["argv"] == ["--dsn", "redis://:***@cache:6379/0"]
    assert first["note"] == "sent Authorization: Bearer ***"
    # where a secret lives, and flags, stay readable
    assert first["token_env"] == "WARDEN_TOKEN" and first["password_file"] == "/run/secrets/db"
    assert first["auth"] is True and first["secret"] is None
    assert "postgresql://warden:***@db/w" in lines[1]["exception"]


def test_stdlib_records_are_redacted_too():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RedactingFilter())
    lib = logging.getLogger(f"kafka.test.{uuid.uuid4().hex}")
    lib.addHandler(handler)
    lib.propagate = False
    try:
        lib.error("dsn %s rejected", "postgresql://u:hunter2@h/db")
    finally:
        lib.removeHandler(handler)
    assert stream.getvalue().strip() == "dsn postgresql://u:***@h/db rejected"


# -- Kafka --------------------------------------------------------------------------------------
@pytest.fixture()
def tls_files(tmp_path) -> Path:
    tls = tmp_path / "tls"
    tls.mkdir()
    for name in ("ca.pem", "client.pem", "client.key"):
        (tls / name).write_text("-----BEGIN PLACEHOLDER-----\n")
    return tls


def sasl_ssl(tls: Path, **kw) -> KafkaConfig:
    settings = dict(
        bootstrap_servers="127.0.0.1:9",  # nothing listens: the clients must not connect yet
        security_protocol="SASL_SSL",
        ssl_cafile=tls / "ca.pem",
        ssl_certfile=tls / "client.pem",
        ssl_keyfile=tls / "client.key",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="warden",
        sasl_password_env=SASL_ENV,
    )
    return KafkaConfig(**{**settings, **kw})


def test_sasl_ssl_settings_reach_kafka_python(tls_files, monkeypatch):
    monkeypatch.setenv(SASL_ENV, "kafka-secret")
    cfg = sasl_ssl(tls_files)
    expected = {
        "security_protocol": "SASL_SSL",
        "ssl_cafile": str(tls_files / "ca.pem"),
        "ssl_certfile": str(tls_files / "client.pem"),
        "ssl_keyfile": str(tls_files / "client.key"),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "warden",
        "sasl_plain_password": "kafka-secret",
    }
    assert client_security(cfg) == expected
    # real kafka-python clients (api_version given, so nothing connects at construction)
    producer = make_producer(cfg, api_version=(2, 5))
    consumer = make_consumer(cfg, ["t"], api_version=(2, 5))
    try:
        for client in (producer, consumer):
            assert {k: client.config[k] for k in expected} == expected
    finally:
        producer.close(timeout=1)
        consumer.close()

    ssl_only = KafkaConfig(security_protocol="SSL", ssl_cafile=tls_files / "ca.pem")
    assert client_security(ssl_only) == {
        "security_protocol": "SSL",
        "ssl_cafile": str(tls_files / "ca.pem"),
    }
    assert client_security(KafkaConfig()) == {"security_protocol": "PLAINTEXT"}


def test_missing_sasl_password_or_tls_file_is_a_config_error(tls_files, monkeypatch):
    monkeypatch.delenv(SASL_ENV, raising=False)
    cfg = sasl_ssl(tls_files)
    with pytest.raises(ConfigError, match=f"kafka.sasl_password_env: .*{SASL_ENV}"):
        client_security(cfg)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="kafka.sasl_password_env"):
        ensure_topics(cfg, ["t"])  # refused before any connection attempt
    assert time.monotonic() - started < 5
    monkeypatch.setenv(SASL_ENV, "kafka-secret")
    os.remove(tls_files / "client.key")
    with pytest.raises(ConfigError, match="kafka.ssl_keyfile: file not found"):
        make_producer(cfg, api_version=(2, 5))


def test_kafka_security_keys_are_validated_and_resolved(tmp_path, tls_files):
    def check(kafka: str) -> None:
        load_config(write_config(tmp_path, f"[kafka]\n{kafka}\n"))

    with pytest.raises(ConfigError, match="kafka: .*needs sasl_mechanism, sasl_plain_username"):
        check('security_protocol = "SASL_SSL"')
    with pytest.raises(ConfigError, match="kafka: .*needs sasl_password_env"):
        check(
            'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
            'sasl_plain_username = "u"'
        )
    with pytest.raises(ConfigError, match="kafka.sasl_mechanism"):
        check('security_protocol = "SASL_SSL"\nsasl_mechanism = "GSSAPI"')
    with pytest.raises(ConfigError, match="kafka.security_protocol"):
        check('security_protocol = "TLS"')
    with pytest.raises(ConfigError, match="kafka: .*sasl_plain_username only apply with"):
        check('sasl_plain_username = "u"')
    with pytest.raises(ConfigError, match="kafka: .*ssl_cafile only apply with"):
        check('ssl_cafile = "tls/ca.pem"')
    with pytest.raises(ConfigError, match="kafka: .*ssl_keyfile needs ssl_certfile"):
        check('security_protocol = "SSL"\nssl_keyfile = "tls/client.key"')
    with pytest.raises(ConfigError, match="kafka.sasl_password"):
        check('sasl_password = "inline"')  # the password itself is not a key
    with pytest.raises(ConfigError, match="kafka.ssl_certfile: file not found"):
        check('security_protocol = "SSL"\nssl_certfile = "tls/missing.pem"')

    cfg = load_config(
        write_config(
            tmp_path,
            '[kafka]\nsecurity_protocol = "SSL"\nssl_cafile = "tls/ca.pem"\n'
            'ssl_certfile = "tls/client.pem"\nssl_keyfile = "tls/client.key"\n',
        )
    )
    assert cfg.kafka.ssl_cafile == tls_files / "ca.pem"  # relative to the config file
    assert cfg.kafka.ssl_keyfile == tls_files / "client.key"


def test_plaintext_is_unchanged_on_the_real_broker(kafka_cfg):
    assert kafka_cfg.security_protocol == "PLAINTEXT"
    producer = make_producer(kafka_cfg)
    payload = json.dumps({"id": uuid.uuid4().hex}).encode()
    producer.send(kafka_cfg.labels_topic, payload).get(timeout=30)
    producer.close()
    consumer = make_consumer(kafka_cfg, [kafka_cfg.labels_topic])
    try:
        deadline, got = time.monotonic() + 60, []
        while not got and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
        assert got == [payload]
    finally:
        consumer.close()


def test_webhook_key_from_a_file_relative_to_the_config(tmp_path):
    from watcher.alerts.sinks import WebhookSink
    from watcher.config import ConfigError, load_config

    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "hook.key").write_text("k3y-from-file\n")
    config = tmp_path / "warden.toml"
    config.write_text(
        '[alerts]\nwebhook_url = "http://127.0.0.1:9/x"\nwebhook_secret_file = "secrets/hook.key"\n'
    )
    cfg = load_config(config)
    assert cfg.alerts.webhook_secret_file == tmp_path / "secrets" / "hook.key"
    sink = WebhookSink(cfg.alerts.webhook_url, secret_file=cfg.alerts.webhook_secret_file)
    assert sink._key == b"k3y-from-file" and "k3y" not in repr(sink)
    with pytest.raises(ConfigError, match="alerts.webhook_secret_file"):
        WebhookSink("http://127.0.0.1:9/x", secret_file=tmp_path / "missing.key")
