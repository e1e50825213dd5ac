"""Memory held per idle client: open N connections to georedis, report its RSS.

    python3 -m benchmarks.idle_clients [--clients 10000]

Starts one redis-server and georedis (workers = 1), measures the proxy's resident set
before and after N idle clients connect (each sends one PING first, so its session is
fully set up), and checks the last one is still answered. N is capped by the open-file
limit of this process (the proxy raises its own).
"""

from __future__ import annotations

import argparse
import resource
import socket
import tempfile
import time
from pathlib import Path

from benchmarks.targets import Topology


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=10000)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    n = min(args.clients, hard - 100)
    with tempfile.TemporaryDirectory() as tmp, Topology(Path(tmp), Path(tmp)) as topo:
        redis = topo.start_redis("primary")
        proxy = topo.start_georedis([redis.port], workers=1)
        time.sleep(1)
        before = rss_kb(proxy.proc.pid)
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", proxy.port))
            s.sendall(b"PING\r\n")
            if s.recv(16) != b"+PONG\r\n":
                raise RuntimeError("no PONG")
            socks.append(s)
        time.sleep(1)
        after = rss_kb(proxy.proc.pid)
        socks[-1].sendall(b"PING\r\n")
        alive = socks[-1].recv(16) == b"+PONG\r\n"
        for s in socks:
            s.close()
    per_client = (after - before) * 1024 / n
    print(
        f"{n} idle clients: proxy RSS {before / 1024:.0f} MB -> {after / 1024:.0f} MB "
        f"({per_client:.0f} bytes per client); still answering: {alive}"
    )


if __name__ == "__main__":
    main()
