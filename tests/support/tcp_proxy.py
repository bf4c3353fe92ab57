"""A small threaded TCP proxy for fault-injection tests.

``cut()`` drops every forwarded connection and closes the listening socket (new connects are
refused); ``restore()`` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading

_CHUNK = 64 * 1024
_CONNECT_S = 3.0  # upstream connect timeout
_JOIN_S = 5.0  # longer than _CONNECT_S, so cut() outwaits an acceptor busy connecting


def _shut(sock: socket.socket) -> None:
    """Shut a socket down both ways: the peer sees the close, blocked threads wake up."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Pair:
    """A client socket and its upstream socket, pumped by one thread per direction."""

    def __init__(self, proxy: TcpProxy, client: socket.socket, upstream: socket.socket) -> None:
        self._proxy, self._socks, self._left = proxy, (client, upstream), 2
        self._lock = threading.Lock()  # guards _left
        self._threads = [
            threading.Thread(target=self._pump, args=(a, b), daemon=True, name=f"tcp-proxy-{n}")
            for a, b, n in ((client, upstream, "up"), (upstream, client, "down"))
        ]

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(_CHUNK):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # pass the EOF on; the other direction may go on
        except OSError:
            self.shutdown()
        finally:
            with self._lock:
                self._left -= 1
                last = self._left == 0
            if last:  # only the last pump closes, so no thread is blocked on a closed fd
                self.shutdown()
                self.close()
                with self._proxy._lock:
                    self._proxy._pairs.discard(self)

    def shutdown(self) -> None:
        for s in self._socks:
            _shut(s)

    def close(self) -> None:
        for s in self._socks:
            s.close()

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)


class TcpProxy:
    """Forward 127.0.0.1:``port`` to ``target_host:target_port``, with cut/restore faults."""

    def __init__(self, target_host: str, target_port: int, listen_port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = listen_port or 0
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._stop_accepting = threading.Event()

    @property
    def connections(self) -> int:
        """Forwarded connection pairs currently open."""
        with self._lock:
            return len(self._pairs)

    def start(self) -> TcpProxy:
        """Start listening (a no-op when already listening)."""
        self.restore()
        return self

    def restore(self) -> None:
        """Listen again on the same port and forward new connections."""
        with self._lock:
            if self._listener is not None:
                return
            lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                lsock.bind(("127.0.0.1", self.port))  # SO_REUSEADDR: fine beside TIME_WAIT
            except OSError:
                lsock.close()
                raise
            lsock.listen(128)
            lsock.settimeout(0.05)  # the acceptor polls its stop event this often
            self.port = lsock.getsockname()[1]
            self._listener, self._stop_accepting = lsock, threading.Event()
            args = (lsock, self._stop_accepting)
            self._acceptor = threading.Thread(
                target=self._accept_loop, args=args, daemon=True, name="tcp-proxy-accept"
            )
            self._acceptor.start()

    def cut(self) -> None:
        """Close the listening socket (connects are refused) and every forwarded connection."""
        with self._lock:
            lsock, acceptor = self._listener, self._acceptor
            self._listener = self._acceptor = None
            self._stop_accepting.set()  # under the lock: no pair is added after this
            pairs = list(self._pairs)
        if acceptor is not None:
            acceptor.join(_JOIN_S)
        if lsock is not None:
            lsock.close()
        for pair in pairs:
            pair.shutdown()
        for pair in pairs:
            pair.join(_JOIN_S)
            pair.close()

    def stop(self) -> None:
        """Stop for good: like cut(), and every thread is joined."""
        self.cut()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_loop(self, lsock: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._open(client, stop)

    def _open(self, client: socket.socket, stop: threading.Event) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=_CONNECT_S)
        except OSError:
            _shut(client)
            client.close()
            return
        for s in (client, upstream):
            s.settimeout(None)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            pair = _Pair(self, client, upstream)
            if stop.is_set():  # cut() came while we were connecting upstream
                pair.shutdown()
                pair.close()
                return
            self._pairs.add(pair)
            for t in pair._threads:
                t.start()
