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

Only one connection is served, only from the target's own address, and the RDB only
after AUTH with the one-time token the restore set as the target's masterauth: the
payload is the whole data set in plaintext.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Callable

import hiredis

from proxy.errors import BackupError, reply_for
from proxy.resp.requests import pack

Payload = Callable[[], AsyncIterator[bytes]]


class RdbServer:
    def __init__(self, peer_ip: str, length: int, payload: Payload, token: str) -> None:
        self._peer_ip = peer_ip
        self._token = token.encode()
        self._authed = False
        self._pinged = 0.0
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
            # The restore set the target's masterauth to a one-time token for this.
            self._authed = hmac.compare_digest(bytes(cmd[-1]), self._token)
            writer.write(b"+OK\r\n" if self._authed else reply_for(BackupError("bad token")))
        elif name in (b"PSYNC", b"SYNC"):
            if not self._authed:
                raise BackupError("a replica asked for the RDB without the restore's token")
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
        # Each chunk is written only once the next one has come: the last one waits
        # until the payload's own end checks passed, so a backup that fails them at its
        # very end leaves the target short of its payload (it then keeps its data)
        # instead of whole and corrupt (it would flush its data and exit).
        held: bytes | None = None
        async for chunk in self._payload():
            sent += len(chunk)
            if sent > self._length:
                raise BackupError("the RDB is longer than its manifest says")
            if held is not None:
                writer.write(held)
                await writer.drain()
            held = chunk
        if sent != self._length:
            raise BackupError(f"the RDB is {sent} bytes, its manifest says {self._length}")
        if held is not None:
            writer.write(held)
            await writer.drain()
        self._writer = writer
        self.sent.set_result(None)

    async def stream(self, *cmds: tuple[str | bytes | int, ...]) -> int:
        """Send `cmds` as replication stream; the offset the target reaches with them."""
        data = b"".join(pack([a if isinstance(a, bytes) else str(a).encode() for a in c])
                        for c in cmds)  # fmt: skip
        return await self.stream_raw(data)

    def keepalive(self) -> None:
        """A PING on the stream at most each second, as a master sends them: the target
        drops a silent master after its repl-timeout."""
        now = time.monotonic()
        if self._writer is not None and not self._writer.is_closing() and now - self._pinged > 1:
            self._pinged = now
            data = pack([b"PING"])
            self._writer.write(data)
            self.offset += len(data)

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
