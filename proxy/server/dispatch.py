"""Commands of the kinds no attachment of a client owns: scripts, the script and CONFIG GET
broadcasts, PROXY verbs and refusals. `Session.dispatch` hands them here; the kinds that
create or use an attachment (transactions, blocking, pub/sub) stay in the session, which
holds its attachments."""

from __future__ import annotations

from proxy.errors import Refused, reply_for
from proxy.resp.replies import encode_error
from proxy.server import masking, scripts
from proxy.server.host import Client, Router
from proxy.server.slot import LONG
from proxy.server.transaction import Transaction
from proxy.stats import CLASS_ADMIN, CLASS_OTHER, CLASS_WRITE
from routing.commands import CommandInfo, Kind, refusal


def deny(client: Client, tx: Transaction | None, error: str, now: float) -> None:
    """NOAUTH / NOPERM, answered before anything is sent; inside MULTI the transaction
    is doomed (EXEC answers EXECABORT), as Redis does when queueing fails."""
    if tx is not None and tx.in_multi:
        tx.doomed = True
    client.host.stats.commands[CLASS_OTHER] += 1
    client.reply_now(encode_error(error), CLASS_OTHER, now)


def elsewhere(client: Client, router: Router, args: list[bytes], info: CommandInfo,
              now: float) -> None:  # fmt: skip
    kind, host = info.kind, client.host
    if kind == Kind.RUN_SCRIPT:
        if "readonly" in info.flags:  # EVAL_RO, EVALSHA_RO, FCALL_RO
            router.read(args, now, LONG)
        else:
            router.write(args, now, CLASS_WRITE, LONG)
    elif kind == Kind.SCRIPT:
        scripts.copy_to_replicas(client, router, args, now)
    elif kind == Kind.KILL:
        scripts.kill_everywhere(client, args, now)
    elif kind == Kind.MASKED:
        masking.config_get(client, router, args, now)
    elif kind == Kind.ADMIN:
        host.stats.commands[CLASS_ADMIN] += 1
        client.reply_now(host.admin(client.state, args), CLASS_ADMIN, now)
    else:  # REFUSED
        host.stats.commands[CLASS_OTHER] += 1
        why = refusal(info.name, host.table.refuse)
        client.reply_now(reply_for(Refused(why)), CLASS_OTHER, now)
