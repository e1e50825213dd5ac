"""ACL, answered by georedis: the clients' view of who they are and what they may run.

Never forwarded: the backends' users (and their password hashes) are not the clients'
business, and a backend user created through the proxy could log in to the nodes
directly. The users are georedis' `[[users]]` (proxy.server.auth); without any, every
client is Redis' `default` user with no password and every command except those the
command policy refuses (`[policy] refuse`), and that is what ACL WHOAMI, LIST, USERS
and GETUSER say. Passwords are never shown, not even as hashes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from config.aclrules import KEY_READ, KEY_WRITE, AclRules
from proxy.errors import Refused, bad_argument, reply_for, wrong_args
from proxy.resp.replies import encode, encode_bulk, encode_int, encode_null
from routing.commands import refusal

if TYPE_CHECKING:
    from proxy.server.host import Client

USER = "default"
_HELP = [
    "ACL <subcommand> [<arg> ...], answered by georedis:",
    "WHOAMI, USERS, LIST, GETUSER <name>, CAT [<category>], LOG [<count> | RESET], "
    "GENPASS [<bits>]",
    "(SETUSER, DELUSER, SAVE, LOAD: users are georedis' [[users]] in its config file)",
]
_OFF = AclRules()  # Redis' default user when [[users]] name others and not it
# No [[users]]: the default user of a plain Redis (the command policy still applies).
_OPEN = AclRules(enabled=True, nopass=True, commands=((True, "@all"),),
                 keys=((KEY_READ | KEY_WRITE, "*"),), channels=("*",))  # fmt: skip


def _commands_rule(s: Client) -> str:
    refused = sorted(s.host.table.refuse)
    return " ".join(["+@all", *(f"-{name}" for name in refused)])


def _rules_of(s: Client, name: str) -> AclRules | None:
    """A user's rules; None for no such user. Without [[users]]: the open `default`."""
    users = s.host.users.by_name
    if not users:
        return None if name != USER else _OPEN
    user = users.get(name)
    if user is None:
        return _OFF if name == USER else None
    return user.perms.rules if user.perms is not None else _OPEN


def _line(s: Client, name: str, rules: AclRules) -> str:
    if rules is _OPEN:
        return f"user {name} on nopass sanitize-payload ~* &* {_commands_rule(s)}"
    return f"user {name} {rules.text(hashes=False)}"


def _names(s: Client) -> list[str]:
    return sorted({USER, *s.host.users.by_name})


def _whoami(s: Client, args: list[bytes]) -> bytes:
    return encode_bulk(s.state.user) if len(args) == 2 else wrong_args("acl|whoami")


def _users(s: Client, args: list[bytes]) -> bytes:
    return encode(_names(s), s.state.proto)  # type: ignore[arg-type]


def _list(s: Client, args: list[bytes]) -> bytes:
    lines = []
    for name in _names(s):
        rules = _rules_of(s, name)
        if rules is not None:
            lines.append(_line(s, name, rules))
    return encode(lines, s.state.proto)  # type: ignore[arg-type]


def _getuser(s: Client, args: list[bytes]) -> bytes:
    if len(args) != 3:
        return wrong_args("acl|getuser")
    rules = _rules_of(s, args[2].decode(errors="replace"))
    if rules is None:
        return encode_null(s.state.proto)
    flags = ["on" if rules.enabled else "off"] + (["nopass"] if rules.nopass else [])
    info: dict[str, object] = {
        "flags": [*flags, "sanitize-payload"] if rules is _OPEN else flags,
        "passwords": [],  # never shown, not even as hashes
        "commands": _commands_rule(s) if rules is _OPEN else rules.commands_text(),
        "keys": " ".join(_key_words(rules)),
        "channels": " ".join(f"&{p}" for p in rules.channels),
        "selectors": [],
    }
    return encode(info, s.state.proto)  # type: ignore[arg-type]


def _key_words(rules: AclRules) -> list[str]:
    words = rules.text(hashes=False).split()
    return [w for w in words if w.startswith(("~", "%"))]


def _cat(s: Client, args: list[bytes]) -> bytes:
    """Categories as the primary's COMMAND gives them, plus georedis' two."""
    table = s.host.table
    if len(args) == 2:
        return encode(sorted(c[1:] for c in table.categories()), s.state.proto)  # type: ignore[arg-type]
    if len(args) != 3:
        return wrong_args("acl|cat")
    want = "@" + args[2].decode(errors="replace").lower()
    names = table.in_category(want)
    if names is None:
        return bad_argument(f"Unknown category '{want[1:]}'")
    return encode(names, s.state.proto)  # type: ignore[arg-type]


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


def _deluser(s: Client, args: list[bytes]) -> bytes:
    """Users are the config's: one named there is not deleted through georedis (the
    refusal); others do not exist, and Redis answers 0 for those (a test suite's
    cleanup of users it failed to make)."""
    if len(args) < 3:
        return wrong_args("acl|deluser")
    names = {a.decode(errors="replace") for a in args[2:]}
    if names & set(_names(s)):
        return reply_for(Refused(refusal("acl|deluser", frozenset())))
    return encode_int(0)


HANDLERS: dict[str, Callable[[Client, list[bytes]], bytes]] = {
    "acl|whoami": _whoami,
    "acl|users": _users,
    "acl|list": _list,
    "acl|getuser": _getuser,
    "acl|cat": _cat,
    "acl|log": _log,
    "acl|genpass": _genpass,
    "acl|help": _help,
    "acl|deluser": _deluser,
}
