"""The fault-injection TCP proxy, against a real local echo server and real PostgreSQL."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.tcp_proxy import TcpProxy


def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


class EchoServer:
    """A threaded echo server on 127.0.0.1 that counts its open connections."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.open = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _echo(self, conn: socket.socket) -> None:
        with self._lock:
            self.open += 1
        conn.settimeout(10)
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            with self._lock:
                self.open -= 1

    def close(self) -> None:
        self._stop.set()
        for t in list(self._threads):
            t.join(15)
        self.sock.close()


@pytest.fixture()
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture()
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo.port) as running:
        yield running


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def _roundtrip(sock: socket.socket, payload: bytes) -> bytes:
    """Send while receiving (a big payload would otherwise fill every buffer and stall)."""
    sender = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
    sender.start()
    got = bytearray()
    while len(got) < len(payload):
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    sender.join(10)
    return bytes(got)


def _is_closed(sock: socket.socket) -> bool:
    """True when the peer closed: EOF or a reset (a timeout is a failure, not a close)."""
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_bytes_round_trip_exactly(proxy: TcpProxy, echo: EchoServer) -> None:
    assert proxy.port != echo.port
    with _connect(proxy.port) as sock:
        assert _roundtrip(sock, b"hello") == b"hello"
        assert _roundtrip(sock, b"\x00\xff" * 7) == b"\x00\xff" * 7
        assert _wait_for(lambda: proxy.connections == 1)
    assert _wait_for(lambda: proxy.connections == 0 and echo.open == 0)


def test_large_payloads_intact_on_concurrent_connections(proxy: TcpProxy) -> None:
    payloads = [os.urandom(5 * 1024 * 1024) for _ in range(3)]
    results: dict[int, bytes] = {}

    def run(i: int) -> None:
        with _connect(proxy.port) as sock:
            results[i] = _roundtrip(sock, payloads[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i, payload in enumerate(payloads):
        assert results[i] == payload  # exact bytes, exact order


def test_half_close_is_forwarded(proxy: TcpProxy) -> None:
    with _connect(proxy.port) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)  # the echo server sees EOF, answers, then closes
        got = bytearray()
        while chunk := sock.recv(65536):
            got += chunk
    assert bytes(got) == b"last words"


def test_cut_closes_both_sides_and_refuses_then_restore(proxy: TcpProxy, echo: EchoServer) -> None:
    port = proxy.port
    clients = [_connect(port) for _ in range(3)]
    for sock in clients:
        assert _roundtrip(sock, b"ping") == b"ping"
    assert _wait_for(lambda: proxy.connections == 3 and echo.open == 3)

    started = time.monotonic()
    proxy.cut()
    assert time.monotonic() - started < 1.0
    assert proxy.connections == 0
    for sock in clients:
        assert _is_closed(sock)  # the client side sees the close at once
        sock.close()
    assert _wait_for(lambda: echo.open == 0, timeout=2)  # and so does the upstream side
    for _ in range(3):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)

    proxy.cut()  # idempotent
    proxy.restore()
    assert proxy.port == port
    with _connect(port) as sock:
        assert _roundtrip(sock, b"back again") == b"back again"
    proxy.restore()  # idempotent while listening
    assert proxy.port == port


def test_repeated_cut_restore_cycles(proxy: TcpProxy) -> None:
    port = proxy.port
    for i in range(10):
        sock = _connect(port)
        assert _roundtrip(sock, f"cycle {i}".encode()) == f"cycle {i}".encode()
        proxy.cut()
        assert _is_closed(sock)
        sock.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        proxy.restore()
        assert proxy.port == port


def test_fixed_listen_port_and_upstream_down(echo: EchoServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with TcpProxy("127.0.0.1", echo.port, listen_port=free) as proxy:
        assert proxy.port == free
        with _connect(free) as sock:
            assert _roundtrip(sock, b"x") == b"x"
    with socket.socket() as bound:  # bound but not listening: connects to it are refused
        bound.bind(("127.0.0.1", 0))
        with TcpProxy("127.0.0.1", bound.getsockname()[1]) as dead, _connect(dead.port) as sock:
            assert _is_closed(sock)  # the proxy drops the client when upstream refuses
            assert dead.connections == 0


def test_stop_leaks_no_threads(echo: EchoServer) -> None:
    before = set(threading.enumerate())
    proxy = TcpProxy("127.0.0.1", echo.port).start()
    socks = [_connect(proxy.port) for _ in range(4)]
    for sock in socks:
        assert _roundtrip(sock, b"abc") == b"abc"
    proxy.stop()
    for sock in socks:
        sock.close()
    leaked = [
        t for t in threading.enumerate() if t not in before and t.name.startswith("tcp-proxy")
    ]
    assert leaked == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2)


# --- through real PostgreSQL -------------------------------------------------------------


def _pg_dsn(port: int) -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname=test connect_timeout=3"


@pytest.fixture()
def pg_proxy() -> Iterator[TcpProxy]:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(_pg_dsn(5432)).close()
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required when CI is set: {exc}")
        pytest.skip(f"PostgreSQL unreachable at 127.0.0.1:5432: {exc}")
    with TcpProxy("127.0.0.1", 5432) as running:
        yield running


def test_postgres_through_proxy_cut_and_restore(pg_proxy: TcpProxy) -> None:
    import psycopg

    port = pg_proxy.port
    conn = psycopg.connect(_pg_dsn(port), autocommit=True)
    try:
        assert conn.execute("select 1").fetchone() == (1,)
        assert pg_proxy.connections == 1

        pg_proxy.cut()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(_pg_dsn(port))
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    finally:
        conn.close()

    pg_proxy.restore()
    assert pg_proxy.port == port
    with psycopg.connect(_pg_dsn(port)) as again:
        assert again.execute("select 1").fetchone() == (1,)
        assert again.execute("select repeat('x', 3000000)").fetchone()[0] == "x" * 3_000_000
