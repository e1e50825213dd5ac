"""PROXY BACKUP, BACKUPS, RESTORE: the verbs over `proxy.backup.service.Backups`.

`PROXY BACKUP [FROM <host:port>|<region>]` answers with the new backup's id at once
(the backup runs on; `PROXY BACKUP STATUS <id>` follows it). In cluster mode the id
names a set of one backup per shard (`proxy.backup.clusterset`); FROM takes a region
only there. VERIFY and RESTORE take as
long as the data takes and answer when done (an awaitable reply: this client's later
replies wait behind it, other clients are served meanwhile).
"""

from __future__ import annotations

from collections.abc import Awaitable

from config.convert import parse_address
from config.model import Address
from proxy.admin.host import AdminClient, AdminHost
from proxy.backup.clusterrun import verify_set
from proxy.backup.service import master_key
from proxy.backup.verify import verify
from proxy.errors import BackupError, reply_for, usage
from proxy.resp.replies import OK, encode, encode_bulk

Reply = bytes | Awaitable[bytes]

BACKUP_USAGE = (
    "PROXY BACKUP [FROM <host:port>|<region>] [ARCHIVE] | STATUS <id> | VERIFY <id> | STOP <id>"
)
RESTORE_USAGE = "PROXY RESTORE <id> [TO <host:port>] [AT <unix-ms>]"


def backup(app: AdminHost, s: AdminClient, args: list[bytes]) -> Reply:
    sub = args[0].upper() if args else b""
    if sub in (b"STATUS", b"VERIFY", b"STOP"):
        if len(args) != 2:
            return usage(BACKUP_USAGE)
        ident = args[1].decode(errors="replace")
        if sub == b"STATUS":
            return _status(app, ident, s.proto)
        if sub == b"VERIFY":
            return _verify(app, ident, s.proto)
        return _stop(app, ident)
    words = [a.decode(errors="replace") for a in args]
    archive = bool(words) and words[-1].upper() == "ARCHIVE"
    if archive:
        words.pop()
    frm: str | None = None
    if len(words) == 2 and words[0].upper() == "FROM":
        frm = words[1]
    elif words:
        return usage(BACKUP_USAGE)
    try:
        return encode_bulk(app.backups.start(frm, archive).encode())
    except BackupError as e:
        return reply_for(e)
    except Exception as e:  # no boto3, a TLS file gone: this client's error only
        return reply_for(BackupError(f"{type(e).__name__}: {e}"))


def _stop(app: AdminHost, ident: str) -> bytes:
    try:
        app.backups.stop_archive(ident)
    except BackupError as e:
        return reply_for(e)
    return OK


def backups(app: AdminHost, s: AdminClient, args: list[bytes]) -> Reply:
    if args:
        return usage("PROXY BACKUPS")
    return _listing(app, s.proto)


def restore(app: AdminHost, s: AdminClient, args: list[bytes]) -> Reply:
    if not args or len(args) % 2 != 1:
        return usage(RESTORE_USAGE)
    pairs = zip(args[1::2], args[2::2], strict=True)
    options = {k.upper(): v.decode(errors="replace") for k, v in pairs}
    if set(options) - {b"TO", b"AT"}:
        return usage(RESTORE_USAGE)
    to = at = None
    try:
        if b"TO" in options:
            to = parse_address(options[b"TO"])
        if b"AT" in options:
            at = int(options[b"AT"])
    except ValueError as e:
        return reply_for(BackupError(f"bad TO or AT: {e}"))
    return _restore(app, args[0].decode(errors="replace"), to, at, s.proto)


async def _listing(app: AdminHost, proto: int) -> bytes:
    try:
        rows = await app.backups.listing()
    except BackupError as e:
        return reply_for(e)
    except Exception as e:  # a target's failure (disk, S3): this client's error only
        return reply_for(BackupError(str(e)))
    return encode(rows, proto)  # type: ignore[arg-type]


async def _status(app: AdminHost, ident: str, proto: int) -> bytes:
    try:
        return encode(await app.backups.status(ident), proto)  # type: ignore[arg-type]
    except BackupError as e:
        return reply_for(e)


async def _verify(app: AdminHost, ident: str, proto: int) -> bytes:
    b = app.backups
    stats = app.stats
    try:
        b.check_idle()
    except BackupError as e:
        return reply_for(e)
    b.busy = f"verify {ident}"
    try:
        try:
            m = await b.manifest(ident)
            if ident in b.archives:  # it writes the manifest on: the result goes in its copy
                m = b.archives[ident].m
            key = master_key(app.config)
            check = verify_set if m.is_set else verify  # a cluster set: every shard's object
            result = await check(b.target, m, key, app.config.backup.redis_server, b.clock())
        finally:
            b.busy = None
    except BackupError as e:
        stats.verifies_failed += 1
        return reply_for(e)
    stats.verifies_ok += 1
    return encode(result, proto)  # type: ignore[arg-type]


async def _restore(app: AdminHost, ident: str, to: Address | None, at: int | None,
                   proto: int) -> bytes:  # fmt: skip
    try:
        return encode(await app.backups.restore(ident, to, at), proto)  # type: ignore[arg-type]
    except BackupError as e:
        return reply_for(e)
