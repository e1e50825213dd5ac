"""The supervisor<->worker link of `[proxy] workers = N` (proxy/workers.py)."""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

from proxy.errors import FailoverError, GeoredisError, ReloadError


class Link:
    """One end of the supervisor<->worker socketpair: length-prefixed pickles.

    On asyncio streams, never blocking the loop: a multiprocessing Connection read from
    a loop callback breaks on a message that arrives in pieces (its fd is non-blocking
    there), and its blocking writes could stall the supervisor behind a stuck worker.
    """

    # A stuck peer does not make us buffer without bound: past this, snapshots are
    # dropped (the next one replaces them anyway).
    MAX_BUFFERED = 8 << 20

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> Link:
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    def send(self, msg: tuple[str, Any]) -> bool:
        if self.writer.is_closing():
            return False
        if self.writer.transport.get_write_buffer_size() > self.MAX_BUFFERED:
            return False
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        self.writer.write(struct.pack("!I", len(data)) + data)
        return True

    async def recv(self) -> tuple[str, Any]:
        """The next message; raises IncompleteReadError when the peer is gone."""
        (size,) = struct.unpack("!I", await self.reader.readexactly(4))
        kind, payload = pickle.loads(await self.reader.readexactly(size))
        return str(kind), payload

    def close(self) -> None:
        self.writer.close()


class Asking:
    """A worker's requests that the supervisor carries out (PROXY FAILOVER, PROXY
    RELOAD), each waiting for its answer: a result, or the text of why it failed."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.next_id = 0
        self.waiting: dict[int, tuple[asyncio.Future[dict[str, object]], type[GeoredisError]]] = {}

    def ask(self, kind: str, payload: object, error: type[GeoredisError]
            ) -> asyncio.Future[dict[str, object]]:  # fmt: skip
        self.next_id += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiting[self.next_id] = (fut, error)
        if not self.link.send((kind, (self.next_id, payload))):
            fut.set_exception(error("the supervisor cannot be reached"))
        return fut

    def failover(self, req: object) -> asyncio.Future[dict[str, object]]:
        return self.ask("failover", req, FailoverError)

    def reload(self) -> asyncio.Future[dict[str, object]]:
        return self.ask("reload", None, ReloadError)

    def answer(self, req_id: int, result: dict[str, object] | str) -> None:
        fut, error = self.waiting.pop(req_id, (None, GeoredisError))
        if fut is None or fut.done():
            return
        if isinstance(result, str):
            fut.set_exception(error(result))
        else:
            fut.set_result(result)
