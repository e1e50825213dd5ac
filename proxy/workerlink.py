"""The supervisor<->worker link of `[proxy] workers = N` (proxy/workers.py)."""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any


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
