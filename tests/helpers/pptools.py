"""PROXY protocol headers and a raw RESP client for end-to-end tests.

The encoder is written from haproxy's doc/proxy-protocol.txt and shares no code with
`proxy.server.proxyproto`: a test that used the proxy's own parser to build its input could not
catch a misreading of the spec on both sides.

`RawClient` is a blocking socket that writes whatever bytes it is given (a PROXY header,
split or whole, then RESP commands) and parses replies with hiredis, so tests control
exactly what reaches the proxy and when.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import time
from collections.abc import Iterable
from typing import Any

import hiredis

# The 12-byte v2 signature (spec section 2.2).
V2_SIGNATURE = b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
_V2_VERSION = 0x20  # high nibble 2
_V2_CMD_LOCAL = 0x0
_V2_CMD_PROXY = 0x1
_V2_AF_INET_STREAM = 0x11
_V2_AF_INET6_STREAM = 0x21
_V2_UNSPEC = 0x00


def v1_header(src: str, dst: str = "127.0.0.1", sport: int = 40000, dport: int = 6380) -> bytes:
    """`PROXY TCP4|TCP6 src dst sport dport\\r\\n`; the family follows `src`.

    `dst` is rewritten to the loopback of `src`'s family when the families differ, since
    the spec requires both addresses in one family.
    """
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(dst)
    if d.version != s.version:
        d = ipaddress.ip_address("::1" if s.version == 6 else "127.0.0.1")
    proto = "TCP4" if s.version == 4 else "TCP6"
    return f"PROXY {proto} {s} {d} {sport} {dport}\r\n".encode("ascii")


def v1_unknown() -> bytes:
    return b"PROXY UNKNOWN\r\n"


def v2_header(
    src: str,
    dst: str = "127.0.0.1",
    sport: int = 40000,
    dport: int = 6380,
    tlvs: bytes = b"",
) -> bytes:
    """A v2 PROXY command over TCP/IPv4 or TCP/IPv6 (family from `src`), TLVs appended."""
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(dst)
    if d.version != s.version:
        d = ipaddress.ip_address("::1" if s.version == 6 else "127.0.0.1")
    family = _V2_AF_INET_STREAM if s.version == 4 else _V2_AF_INET6_STREAM
    body = s.packed + d.packed + struct.pack("!HH", sport, dport) + tlvs
    return _v2(_V2_CMD_PROXY, family, body)


def v2_local(body: bytes = b"") -> bytes:
    """A v2 LOCAL command (a balancer's own health check); `body` is to be ignored."""
    return _v2(_V2_CMD_LOCAL, _V2_UNSPEC, body)


def v2_raw(command_byte: int, family_byte: int, body: bytes) -> bytes:
    """A v2 header with arbitrary version/command and family bytes, for malformed input."""
    return V2_SIGNATURE + bytes([command_byte, family_byte]) + struct.pack("!H", len(body)) + body


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def _v2(command: int, family: int, body: bytes) -> bytes:
    return v2_raw(_V2_VERSION | command, family, body)


def header(version: int, src: str) -> bytes:
    """A PROXY header of `version` (1 or 2) carrying `src` as the client address."""
    return v1_header(src) if version == 1 else v2_header(src)


def resp(*args: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class RawClient:
    """A blocking TCP client that sends raw bytes and reads RESP replies."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.reader = hiredis.Reader()

    @property
    def local_port(self) -> int:
        return int(self.sock.getsockname()[1])

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_split(self, data: bytes, chunk: int = 1, pause: float = 0.002) -> None:
        """Send `data` in `chunk`-byte segments with a pause between them (TCP_NODELAY
        is on, so each usually arrives in a read of its own)."""
        for i in range(0, len(data), chunk):
            self.sock.sendall(data[i : i + chunk])
            time.sleep(pause)

    def read_reply(self, timeout: float | None = None) -> Any:
        """The next reply; raises ConnectionError on EOF, TimeoutError on timeout."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("connection closed by the proxy")
            self.reader.feed(data)

    def command(self, *args: str | bytes | int) -> Any:
        self.send(resp(*args))
        return self.read_reply()

    def pipeline(self, commands: Iterable[tuple[str | bytes | int, ...]]) -> list[Any]:
        cmds = list(commands)
        self.send(b"".join(resp(*c) for c in cmds))
        return [self.read_reply() for _ in cmds]

    def wait_closed(self, timeout: float) -> tuple[bytes, float]:
        """Read until EOF: (everything received, seconds it took). TimeoutError if the
        connection is still open after `timeout` seconds."""
        start = time.monotonic()
        deadline = start + timeout
        chunks: list[bytes] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"connection still open after {timeout}s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                return b"".join(chunks), time.monotonic() - start
            chunks.append(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(port: int, head: bytes) -> RawClient:
    """A RawClient that has sent `head` (a PROXY header) as its first bytes."""
    c = RawClient(port)
    if head:
        c.send(head)
    return c


def as_dict(reply: Any) -> dict[str, Any]:
    """A RESP2 flat array of (bulk key, value) pairs (or a RESP3 map) as a str-keyed dict,
    bulk strings decoded."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        assert isinstance(reply, list) and len(reply) % 2 == 0, reply
        items = list(zip(reply[::2], reply[1::2], strict=True))
    return {_text(k): _decode(v) for k, v in items}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _decode(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v
