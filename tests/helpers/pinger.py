"""A latency witness in a process of its own: PING every millisecond, print the latencies.

`python -m tests.helpers.pinger PORT SECONDS [COMMAND...]` prints one JSON list of
seconds. A separate process, so the test's own load-generating threads (and their GIL)
do not show up in what it measures.
"""

from __future__ import annotations

import json
import socket
import sys
import time

import hiredis


def measure(port: int, seconds: float, args: list[str]) -> list[float]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = hiredis.pack_command(tuple(args or ["PING"]))
    reader = hiredis.Reader()
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        sock.sendall(request)
        while reader.gets() is False:
            reader.feed(sock.recv(65536))
        out.append(time.perf_counter() - t)
        time.sleep(0.001)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:])))
