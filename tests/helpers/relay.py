"""A fault-injecting TCP relay for integration tests: delay, cut, black-hole a link.

`DelayRelay(host, port, delay_ms)` listens on a free loopback port and forwards every
connection to host:port. It runs on its own threads, so it behaves the same whatever
event loop (or none) the test uses, and a test blocked in a sync call does not stall it.

Delay model: each chunk read from one side is timestamped and queued; a writer thread
per direction sends it once `delay_ms` has passed since it was read. Reading never
waits for writing, so the link keeps its throughput and only gains latency, like a long
cable: a replica behind a 200 ms relay lags its primary by a steady ~200 ms. Order is
kept (one FIFO per direction). A delay change applies at once to queued chunks too.

Faults:
- `cut()` closes every connection and closes new ones as soon as they are accepted,
  until `restore()` (a crashed link: the peer sees the connection drop).
- `blackhole()` keeps connections open but delivers nothing until `restore()`, which
  then delivers what was held, like TCP after a partition heals.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

HOST = "127.0.0.1"
_CHUNK = 65536
# Writers re-check for shutdown and delay changes at least this often (seconds).
_TICK = 0.005
# Marks the end of one direction's stream (the reader saw EOF or an error).
_EOF = b""


def _close(sock: socket.socket) -> None:
    """Shut down before closing: shutdown wakes a thread blocked in recv on this socket."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class _Link:
    """One relayed connection: the accepted socket, the upstream one, two directions."""

    def __init__(self, relay: DelayRelay, downstream: socket.socket, upstream: socket.socket):
        self.relay = relay
        self.sockets = (downstream, upstream)
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._open_directions = 2
        self.threads = [
            threading.Thread(target=fn, args=args, daemon=True, name=f"relay-{name}")
            for name, fn, args in self._plan(downstream, upstream)
        ]

    def _plan(
        self, down: socket.socket, up: socket.socket
    ) -> list[tuple[str, Callable[..., None], tuple[object, ...]]]:
        to_up: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
        to_down: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
        return [
            ("read-down", self._reader, (down, to_up, "up")),
            ("write-up", self._writer, (up, to_up)),
            ("read-up", self._reader, (up, to_down, "down")),
            ("write-down", self._writer, (down, to_down)),
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.closed.set()
        for s in self.sockets:
            _close(s)

    def _reader(
        self, src: socket.socket, q: queue.SimpleQueue[tuple[float, bytes]], direction: str
    ) -> None:
        data = _EOF
        try:
            while not self.closed.is_set():
                data = src.recv(_CHUNK)
                if not data:
                    break
                self.relay._count(direction, len(data))
                q.put((time.monotonic(), data))
        except OSError:
            pass
        q.put((time.monotonic(), _EOF))

    def _writer(self, dst: socket.socket, q: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        try:
            while not self.closed.is_set():
                try:
                    received, data = q.get(timeout=_TICK * 20)
                except queue.Empty:
                    continue
                if not self._wait_until_due(received):
                    break
                if not data:
                    # The source finished (EOF): pass a half-close on, after the delay.
                    dst.shutdown(socket.SHUT_WR)
                    break
                dst.sendall(data)
        except OSError:
            # The destination failed (reset, closed by cut()): the whole link is over.
            self.close()
        finally:
            self._direction_done()

    def _wait_until_due(self, received: float) -> bool:
        """Sleep until `received + delay` (delay read afresh each tick); False if closed."""
        while not self.closed.is_set():
            remaining = received + self.relay.delay_ms / 1000.0 - time.monotonic()
            if remaining <= 0 and not self.relay._held.is_set():
                return True
            self.closed.wait(min(remaining, _TICK) if remaining > 0 else _TICK)
        return False

    def _direction_done(self) -> None:
        """When both directions have ended, the link is over: close and forget it."""
        with self._lock:
            self._open_directions -= 1
            last = self._open_directions == 0
        if last:
            self.close()
            self.relay._forget(self)


class DelayRelay:
    """A threaded TCP relay 127.0.0.1:<port> -> target, adding latency or faults on demand."""

    def __init__(self, target_host: str, target_port: int, delay_ms: float = 0) -> None:
        self.target = (target_host, target_port)
        self.host = HOST
        self.delay_ms = float(delay_ms)
        self.port = 0
        self.accepted = 0
        self.bytes_up = 0  # client -> target
        self.bytes_down = 0  # target -> client
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._cut = threading.Event()
        self._held = threading.Event()

    def __repr__(self) -> str:
        return (
            f"DelayRelay({self.address} -> {self.target[0]}:{self.target[1]}, "
            f"{self.delay_ms:g} ms, cut={self._cut.is_set()}, held={self._held.is_set()})"
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections currently relayed."""
        with self._lock:
            return len(self._links)

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(128)
        # A timeout lets the accept loop notice stop() without relying on close() waking it.
        listener.settimeout(_TICK * 10)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept_loop, daemon=True, name=f"relay-accept-{self.port}"
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection; join the threads."""
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(5)
        if self._listener is not None:
            self._listener.close()
        links = self._drop_all()
        for link in links:
            for t in link.threads:
                t.join(5)

    def __enter__(self) -> Self:
        return self if self._listener is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------------------

    def set_delay(self, ms: float) -> None:
        """New one-way delay for both directions; applies to chunks already queued too."""
        self.delay_ms = float(ms)

    def cut(self) -> None:
        """Close every current connection; close new ones at once until restore()."""
        self._cut.set()
        self._drop_all()

    def blackhole(self) -> None:
        """Hold all data (connections stay open, nothing is delivered) until restore()."""
        self._held.set()

    def restore(self) -> None:
        """Undo cut() and blackhole(): accept and forward again, deliver held data."""
        self._cut.clear()
        self._held.clear()

    # -- internals --------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                down, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self._cut.is_set():
                _close(down)
                continue
            threading.Thread(
                target=self._connect, args=(down,), daemon=True, name="relay-connect"
            ).start()

    def _connect(self, down: socket.socket) -> None:
        """Open the upstream side (off the accept thread: a slow target must not block it)."""
        down.settimeout(None)
        try:
            up = socket.create_connection(self.target, timeout=5)
            up.settimeout(None)
        except OSError:
            _close(down)
            return
        for s in (down, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(self, down, up)
        with self._lock:
            if self._cut.is_set() or self._stopping.is_set():
                link.close()
                return
            self._links.add(link)
        link.start()

    def _drop_all(self) -> list[_Link]:
        with self._lock:
            links = list(self._links)
            self._links.clear()
        for link in links:
            link.close()
        return links

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _count(self, direction: str, n: int) -> None:
        # Plain int += under the GIL is not atomic across threads; the lock keeps it exact.
        with self._lock:
            if direction == "up":
                self.bytes_up += n
            else:
                self.bytes_down += n
