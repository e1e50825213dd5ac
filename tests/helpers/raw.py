"""`Raw`: a client that sends exact bytes and reads exact replies.

A test chooses exactly which commands arrive together (pipelines, held commands); replies
are parsed with hiredis. For PROXY headers before the commands, see `pptools.RawClient`.
"""

from __future__ import annotations

import socket

import hiredis

from proxy.resp.requests import pack


class Raw:
    """A client that sends exact bytes and reads exact replies."""

    def __init__(self, port: int, timeout: float = 4.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = hiredis.Reader()

    def send(self, *cmds: list[bytes | str]) -> None:
        data = b"".join(pack([a.encode() if isinstance(a, str) else a for a in c]) for c in cmds)
        self.sock.sendall(data)

    def read(self, n: int = 1) -> list[object]:
        out: list[object] = []
        while len(out) < n:
            r = self.reader.gets()
            if r is not False:
                out.append(r)
                continue
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"closed after {out!r}")
            self.reader.feed(data)
        return out

    def call(self, *args: bytes | str) -> object:
        self.send(list(args))
        return self.read(1)[0]

    def close(self) -> None:
        self.sock.close()
