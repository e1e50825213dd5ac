"""georedis as a replication master for one replica: how an RDB gets into a running server.

A restore needs no access to the target's files: the target is told `REPLICAOF <this
proxy> <port>` and syncs from a listener that speaks just enough of the master's side of
the protocol: `+PONG`, `+OK` to AUTH and REPLCONF, `+FULLRESYNC <replid> 0` to PSYNC
(a bare payload to SYNC), then `$<length>` and the RDB. The target, with Redis' default
`repl-diskless-load disabled`, stores the whole payload before it flushes its data and
loads it: a transfer cut short leaves it as it was. After the payload, `stream` sends
commands as a master's replication stream would (the target obeys its master though it
is read-only): the restore drops georedis' own keys and writes the new epoch that way,
so the target never serves as a master with the backup's stale ones; `offset` is what
the target's `slave_repl_offset` reaches once it has applied them. Then the restore
says `REPLICAOF NO ONE` (`proxy.backup.restore`).

Only one connection is served, and only from the target's own address.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable

import hiredis

from proxy.errors import BackupError, reply_for
from proxy.resp.requests import pack

Payload = Callable[[], AsyncIterator[bytes]]


class RdbServer:
    def __init__(self, peer_ip: str, length: int, payload: Payload) -> None:
        self._peer_ip = peer_ip
        self._length = length
        self._payload = payload
        self._server: asyncio.Server | None = None
        self._taken = False
        self._task: asyncio.Task[None] | None = None
        self.sent = asyncio.get_running_loop().create_future()
        self.replid = secrets.token_hex(20)
        self.offset = 0  # replication stream bytes sent after the RDB
        self._writer: asyncio.StreamWriter | None = None

    async def start(self, host: str) -> int:
        """Listen on `host` (the address the target reaches us at); the port chosen."""
        self._server = await asyncio.start_server(self._accept, host, 0)
        sock = self._server.sockets[0]
        return int(sock.getsockname()[1])

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if self._taken or not peer or _plain(peer[0]) != _plain(self._peer_ip):
            writer.close()  # someone else, or a second connection: never served
            return
        self._taken = True
        self._task = asyncio.create_task(self._serve(reader, writer))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self._writer is not None:
                    # After the RDB the target sends only REPLCONF ACKs, and a bare
                    # "\n" each second while it loads (a master ignores those as empty
                    # inline commands; a reply parser would call them a protocol error).
                    continue
                parser.feed(data)
                while (cmd := parser.gets()) is not False:
                    await self._answer(cmd, writer)
        except (OSError, BackupError, hiredis.ProtocolError) as e:
            if not self.sent.done():
                self.sent.set_exception(BackupError(f"serving the RDB: {e}"))
        finally:
            writer.close()
            if not self.sent.done():
                self.sent.set_exception(BackupError("the target closed the replication link"))

    async def _answer(self, cmd: object, writer: asyncio.StreamWriter) -> None:
        if not isinstance(cmd, list) or not cmd:
            raise BackupError("the target sent something that is not a command")
        name = bytes(cmd[0]).upper()
        if name == b"PING":
            writer.write(b"+PONG\r\n")
        elif name == b"REPLCONF":
            if len(cmd) > 1 and bytes(cmd[1]).upper() in (b"ACK", b"GETACK"):
                return  # ACKs get no reply
            writer.write(b"+OK\r\n")
        elif name == b"AUTH":
            writer.write(b"+OK\r\n")  # the target's masterauth is for its real master
        elif name in (b"PSYNC", b"SYNC"):
            if name == b"PSYNC":
                writer.write(f"+FULLRESYNC {self.replid} 0\r\n".encode())
            await self._send_rdb(writer)
        else:
            writer.write(reply_for(BackupError("this port serves a restore's replication only")))

    async def _send_rdb(self, writer: asyncio.StreamWriter) -> None:
        if self.sent.done():
            raise BackupError("the target asked for the RDB twice")
        writer.write(f"${self._length}\r\n".encode())
        sent = 0
        async for chunk in self._payload():
            sent += len(chunk)
            if sent > self._length:
                raise BackupError("the RDB is longer than its manifest says")
            writer.write(chunk)
            await writer.drain()
        if sent != self._length:
            raise BackupError(f"the RDB is {sent} bytes, its manifest says {self._length}")
        self._writer = writer
        self.sent.set_result(None)

    async def stream(self, *cmds: tuple[str | bytes | int, ...]) -> int:
        """Send `cmds` as replication stream; the offset the target reaches with them."""
        data = b"".join(pack([a if isinstance(a, bytes) else str(a).encode() for a in c])
                        for c in cmds)  # fmt: skip
        return await self.stream_raw(data)

    async def stream_raw(self, data: bytes) -> int:
        """Send commands already encoded (archived RESP) as replication stream."""
        if self._writer is None or self._writer.is_closing():
            raise BackupError("the target closed the replication link")
        self._writer.write(data)
        await self._writer.drain()
        self.offset += len(data)
        return self.offset

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if not self.sent.done():
            self.sent.cancel()


def _plain(ip: str) -> str:
    return ip.removeprefix("::ffff:")
