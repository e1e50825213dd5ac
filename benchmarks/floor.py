"""The floor under any proxy written like georedis: CPU per request of a bare multiplexer.

    python -m benchmarks.floor [--rounds N]

The floor is the least a uvloop proxy in Python does for each request: it reads a
client's bytes, counts its commands (the same `RequestParser`, whose C split is one call),
forwards the bytes as read to one shared backend connection (written once per loop turn),
cuts the replies (`ReplySplitter`, one C call) and writes each to the client waiting at
the head of the FIFO. Nothing else: no routing, no command table, no ordering across
backends, no stats, no backpressure, no error handling. It is not a proxy, only a
measure: what the event loop, the syscalls and the few Python calls no design can skip
cost on this machine, beside which georedis' own per-command work shows.

One redis-server, georedis from this tree and the floor, alternating, as
`benchmarks.cpu_ab` (redis-benchmark SET and GET at -P 1 and -P 16, -c 50): the median
CPU µs per request of each and georedis / floor.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from collections import deque
from pathlib import Path

from benchmarks.cpu_ab import Side, alternate, report, start_proxy
from benchmarks.targets import HOST, REPO_ROOT, wait_ready
from proxy.resp.limits import Limits
from proxy.resp.replies import ReplySplitter
from proxy.resp.requests import RequestParser


class _Backend(asyncio.Protocol):
    def __init__(self) -> None:
        self.fifo: deque[_Client] = deque()
        self.out: list[bytes] = []
        self.flushing = False
        self.transport: asyncio.Transport | None = None
        self.splitter = ReplySplitter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, data: bytes, client: _Client, n: int) -> None:
        self.fifo.extend([client] * n)
        self.out.append(data)
        if not self.flushing:
            self.flushing = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flushing = False
        out, self.out = self.out, []
        assert self.transport is not None
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        fifo = self.fifo
        for reply in self.splitter.split(data):
            client = fifo.popleft().transport
            if client is not None and not client.is_closing():
                client.write(reply)


class _Client(asyncio.Protocol):
    def __init__(self, backend: _Backend) -> None:
        self.backend = backend
        self.parser = RequestParser(Limits(512 << 20, 1 << 20, 64 << 10))
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        n = len(self.parser.feed(data).commands)
        if n:
            self.backend.send(data, self, n)


async def _serve(port: int, redis_port: int) -> None:
    loop = asyncio.get_running_loop()
    _, backend = await loop.create_connection(_Backend, HOST, redis_port)
    server = await loop.create_server(lambda: _Client(backend), HOST, port)
    await server.serve_forever()


def _start_floor(port: int, redis_port: int, work: Path) -> subprocess.Popen[bytes]:
    log = (work / f"floor-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.floor", "--serve", str(port), str(redis_port)],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_ready(port, 15.0, proc)
    return proc


def _start_georedis(port: int, redis_port: int, work: Path) -> subprocess.Popen[bytes]:
    return start_proxy(REPO_ROOT, port, redis_port, work)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--serve", nargs=2, type=int, metavar=("PORT", "REDIS_PORT"),
                    help=argparse.SUPPRESS)  # fmt: skip
    args = ap.parse_args(argv)
    if args.serve:
        import uvloop

        uvloop.run(_serve(*args.serve))
        return
    sides: dict[str, Side] = {"georedis": (_start_georedis, ()), "floor": (_start_floor, ())}
    report(alternate(sides, args.rounds, "georedis-floor-"), "floor", "georedis")


if __name__ == "__main__":
    main()
