"""Micro-benchmarks of the hot path's pure parts: ns per command, no sockets.

    python3 -m benchmarks.micro

Measures the request parser (16-command pipelines of GET and SET, inline PING), the
reply splitter (simple, bulk and LRANGE-100 replies), the command lookup and the replica
choice. Numbers are medians of several timeit repeats; compare them across commits on
the same machine, not across machines.
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable

from config.model import Address, ProxyConfig
from proxy.resp.replies import ReplySplitter, encode
from proxy.resp.requests import Limits, RequestParser, pack
from routing.commands import CommandInfo, CommandTable, Kind
from routing.select import select_read
from routing.topology import NodeState, Reason, Role, Snapshot

PIPELINE = 16


def _per_item_ns(fn: Callable[[], object], items: int, number: int = 2000) -> float:
    runs = timeit.repeat(fn, number=number, repeat=5)
    return statistics.median(runs) / number / items * 1e9


def bench_requests() -> dict[str, float]:
    get = b"".join(pack([b"GET", b"key:000000001"]) for _ in range(PIPELINE))
    setc = b"".join(pack([b"SET", b"key:000000001", b"xxx"]) for _ in range(PIPELINE))
    inline = b"PING\r\n" * PIPELINE
    p = ProxyConfig()  # the limits a proxy with the default config parses with
    parser = RequestParser(Limits(p.max_bulk_len, p.max_multibulk_len, p.max_inline_len))
    return {
        "parse GET (pipeline of 16)": _per_item_ns(lambda: parser.feed(get), PIPELINE),
        "parse SET (pipeline of 16)": _per_item_ns(lambda: parser.feed(setc), PIPELINE),
        "parse inline PING (x16)": _per_item_ns(lambda: parser.feed(inline), PIPELINE),
    }


def bench_replies() -> dict[str, float]:
    ok = b"+OK\r\n" * PIPELINE
    bulk = b"$3\r\nxxx\r\n" * PIPELINE
    lrange = encode([b"xxx"] * 100, 2)
    splitter = ReplySplitter()
    return {
        "split +OK (x16)": _per_item_ns(lambda: splitter.split(ok), PIPELINE),
        "split $3 bulk (x16)": _per_item_ns(lambda: splitter.split(bulk), PIPELINE),
        "split LRANGE 100 reply": _per_item_ns(lambda: splitter.split(lrange), 1, 500),
    }


def bench_routing() -> dict[str, float]:
    table = CommandTable(
        {"get": CommandInfo("get", Kind.READ), "set": CommandInfo("set", Kind.WRITE)}
    )
    args = [b"GET", b"k"]
    nodes = tuple(
        NodeState(Address("127.0.0.1", 7000 + i), region, up=True, role=Role.REPLICA,
                  eligible=True, reason=Reason.OK)
        for i, region in enumerate(("ap-southeast-1", "us-east-1", "eu-west-1"))
    )  # fmt: skip
    snap = Snapshot(
        version=1,
        nodes=nodes,
        primary=None,
        eligible_by_region={n.region: (n,) for n in nodes},
    )
    ranking = ("eu-west-1", "us-east-1", "ap-southeast-1")
    return {
        "command lookup": _per_item_ns(lambda: table.lookup(args), 1, 200000),
        "select_read": _per_item_ns(lambda: select_read(ranking, snap, lambda a: 0), 1, 200000),
    }


def main() -> None:
    results = {**bench_requests(), **bench_replies(), **bench_routing()}
    width = max(len(k) for k in results)
    print(f"{'operation':{width}}  ns per item")
    for name, ns in results.items():
        print(f"{name:{width}}  {ns:10.0f}")


if __name__ == "__main__":
    main()
