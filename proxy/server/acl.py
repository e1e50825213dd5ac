"""ACL, answered by georedis: the clients' view of who they are and what they may run.

Never forwarded: the backends' users (and their password hashes) are not the clients'
business, and a backend user created through the proxy could log in to the nodes
directly. Until users are configured in georedis, every client is Redis' `default`
user with no password and every command except those the command policy refuses
(`[policy] refuse`), and that is what ACL WHOAMI, LIST, USERS and GETUSER say.
The place where configured users (AUTH, rules) will answer from.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from proxy.errors import bad_argument, wrong_args
from proxy.resp.replies import encode, encode_bulk, encode_null

if TYPE_CHECKING:
    from proxy.server.host import Client

USER = "default"
_HELP = [
    "ACL <subcommand> [<arg> ...], answered by georedis:",
    "WHOAMI, USERS, LIST, GETUSER <name>, CAT, LOG [<count> | RESET], GENPASS [<bits>]",
    "(SETUSER, DELUSER, SAVE, LOAD: the backends' users are not managed through georedis)",
]


def _commands_rule(s: Client) -> str:
    refused = sorted(s.host.table.refuse)
    return " ".join(["+@all", *(f"-{name}" for name in refused)])


def _whoami(s: Client, args: list[bytes]) -> bytes:
    return encode_bulk(USER) if len(args) == 2 else wrong_args("acl|whoami")


def _users(s: Client, args: list[bytes]) -> bytes:
    return encode([USER], s.state.proto)


def _list(s: Client, args: list[bytes]) -> bytes:
    line = f"user {USER} on nopass sanitize-payload ~* &* {_commands_rule(s)}"
    return encode([line], s.state.proto)


def _getuser(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 3:
        return wrong_args("acl|getuser")
    if args[2].decode(errors="replace") != USER:
        return encode_null(s.state.proto)
    info: dict[str, object] = {
        "flags": ["on", "nopass", "sanitize-payload"],
        "passwords": [],
        "commands": _commands_rule(s),
        "keys": "~*",
        "channels": "&*",
        "selectors": [],
    }
    return encode(info, s.state.proto)  # type: ignore[arg-type]


def _cat(s: Client, args: list[bytes]) -> bytes:
    # Categories are Redis' own; the command table does not keep them yet.
    return bad_argument("ACL CAT is not answered by georedis yet; ask a node directly")


def _log(s: Client, args: list[bytes]) -> bytes:
    return b"+OK\r\n" if len(args) == 3 and args[2].upper() == b"RESET" else b"*0\r\n"


def _genpass(s: Client, args: list[bytes]) -> bytes:
    try:
        bits = int(args[2]) if len(args) > 2 else 256
    except ValueError:
        return bad_argument("ACL GENPASS argument must be the number of bits")
    if not 0 < bits <= 4096:
        return bad_argument("ACL GENPASS argument must be the number of bits (1-4096)")
    return encode_bulk(secrets.token_hex((bits + 7) // 8)[: (bits + 3) // 4])


def _help(s: Client, args: list[bytes]) -> bytes:
    return encode(_HELP, s.state.proto)  # type: ignore[arg-type]


HANDLERS: dict[str, Callable[[Client, list[bytes]], bytes]] = {
    "acl|whoami": _whoami,
    "acl|users": _users,
    "acl|list": _list,
    "acl|getuser": _getuser,
    "acl|cat": _cat,
    "acl|log": _log,
    "acl|genpass": _genpass,
    "acl|help": _help,
}
