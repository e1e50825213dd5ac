"""`georedis restore ID --to HOST:PORT`: a backup loaded into a server, with no proxy running.

The same path as PROXY RESTORE (`proxy.backup.restore`): the backup is read from the
config's `[backup]` target and opened with the key its `key_env` names, checked whole,
then served to the server at HOST:PORT as its replication master would, with the
`[backend]` credentials and TLS. No writes are held (no proxy is in front) and no epoch
is written: if the server becomes a deployment's primary, the proxies give it the next
epoch themselves (docs/architecture.md, "Failover").
"""

from __future__ import annotations

import asyncio
import json
import sys

from config.model import Address, Config
from proxy.backend.probe import ProbeConnection
from proxy.backup.clusterrun import RESTORE_REFUSED
from proxy.backup.control import Control, open_control
from proxy.backup.replay import point_in_time
from proxy.backup.restore import Plan, check, load
from proxy.backup.service import Backups, credentials, make_target, master_key
from proxy.errors import BackupError, ProbeError

_CONNECT_S = 5.0


async def restore(cfg: Config, ident: str, to: Address, check_only: bool,
                  at_ms: int | None = None) -> dict[str, object]:  # fmt: skip
    target = make_target(cfg)
    key = master_key(cfg)
    m = await Backups.read_manifest(target, ident)
    if m.is_set:  # no object of its own: its shards' members are restored one by one
        raise BackupError(RESTORE_REFUSED)
    summary = await check(target, m, key)
    replay = await point_in_time(target, m, key, at_ms)
    if check_only:
        return {"checked": m.id, "keys": m.user_keys, "rdb_bytes": m.rdb_bytes, "ok": True}
    creds = credentials(cfg)

    async def connect() -> ProbeConnection:
        conn = ProbeConnection()
        await conn.connect(to, username=creds.username, password=creds.password,
                           timeout_s=_CONNECT_S, client_name="georedis-restore",
                           tls=creds.tls)  # fmt: skip
        return conn

    ctl: Control | None = None
    try:
        ctl = await open_control(connect)
        return await load(ctl, target, key, Plan(m, summary, epoch=None, replay=replay))
    except ProbeError as e:
        raise BackupError(str(e)) from e
    finally:
        if ctl is not None:
            ctl.conn.close()


def restore_main(cfg: Config, ident: str, to: Address, check_only: bool,
                 at_ms: int | None = None) -> int:  # fmt: skip
    try:
        result = asyncio.run(restore(cfg, ident, to, check_only, at_ms))
    except BackupError as e:
        print(f"georedis: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    return 0
