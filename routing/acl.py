"""A user's permissions, compiled from its rules against the command table.

Checked at the proxy before anything is sent (docs/architecture.md, "Invariants"), with
Redis 7.0's own error words so clients react as they do with Redis. What a rule word
means is Redis':
commands by name (`+config` covers every CONFIG subcommand, `+config|get` one of them),
by category as the primary's `COMMAND` reply gives them (so modules' commands are
covered), in order (`+@all -flushall`); keys by glob, with `%R~`/`%W~` for read or write
only, every key of a command found from Redis' key specifications
(`routing.keyspecs`; keys that cannot be found need `allkeys`); channels by glob.

georedis' own verbs are commands named `proxy|<verb>`, in `@proxystatus` (reading
status) or `@proxyadmin` (changing state); the per-connection knobs are open to every
user, as AUTH and HELLO are (Redis' `no_auth` commands).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from config.aclrules import KEY_READ, KEY_WRITE, AclRules
from proxy.resp.limits import KeyTest
from routing.commands import PROXY_ADMIN, PROXY_STATUS, CommandInfo, Kind
from routing.keyspecs import keys_of, one_key_index

NOAUTH = "NOAUTH Authentication required."
NOPERM_KEY = "NOPERM this user has no permissions to access one of the keys used as arguments"
NOPERM_CHANNEL = (
    "NOPERM this user has no permissions to access one of the channels used as arguments"
)

_ALWAYS = frozenset({"auth", "hello", "quit", "reset"})  # Redis' `no_auth` commands
_PUBLISH = frozenset({"publish", "spublish"})
_SUBSCRIBE = frozenset({"subscribe", "ssubscribe"})


def _always(key: bytes) -> bool:
    return True


def noperm_command(name: str) -> str:
    return f"NOPERM this user has no permissions to run the '{name}' command"


def glob_regex(pattern: str) -> re.Pattern[bytes]:
    """Redis' stringmatch glob (`*`, `?`, `[abc]`, `[^a-z]`, `\\x`) as a regex."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : end]
                neg = body.startswith("^")
                body = body[1:] if neg else body
                out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile(("".join(out) + r"\Z").encode(), re.DOTALL)


_GLOB_SPECIALS = frozenset("*?[\\")


def _literal(pattern: str) -> bool:
    return not _GLOB_SPECIALS.intersection(pattern)


def key_matcher(patterns: list[str]) -> Callable[[bytes], bool]:
    """One test for "does any of these globs match": keys are checked on every command
    of a user with key patterns, so the common shapes skip the regex engine. `prefix*`
    patterns become one `bytes.startswith` over a tuple, literal ones a set lookup, and
    only the rest one combined regex."""
    if "*" in patterns:
        return lambda key: True
    prefixes = tuple(p[:-1].encode() for p in patterns if p.endswith("*") and _literal(p[:-1]))
    exact = frozenset(p.encode() for p in patterns if _literal(p))
    rest = [p for p in patterns if not _literal(p) and not (p.endswith("*") and _literal(p[:-1]))]
    regex = (
        re.compile(b"|".join(b"(?:" + glob_regex(p).pattern + b")" for p in rest), re.DOTALL).match
        if rest
        else None
    )
    if regex is None and not exact:
        return lambda key: key.startswith(prefixes)  # (an empty tuple matches nothing)

    def match(key: bytes) -> bool:
        return key.startswith(prefixes) or key in exact or (regex is not None and
                                                            regex(key) is not None)  # fmt: skip

    return match


def key_prefixes(patterns: list[str]) -> tuple[bytes, ...] | None:
    """The prefixes when every pattern is `literal*` (`~app:*`, the usual shape): then
    "does any match" is "does the key start with one", which `keys_match` tests in C
    without calling the matcher per key. None for any other pattern."""
    if all(p.endswith("*") and _literal(p[:-1]) for p in patterns):
        return tuple(p[:-1].encode() for p in patterns)
    return None


# `admit`'s shortcut for one command: the key's index, its matcher, and the same test in
# the form `keys_match` takes (the matcher's prefixes where it has only those).
_Fast = tuple[int, Callable[[bytes], bool], KeyTest]


class Permissions:
    """What one user may run. `allows` is cached per command: the rules are applied
    once per command name, not per call."""

    __slots__ = ("_all_channels", "_channels", "_commands", "_fast", "_key_tests", "_keys",
                 "_open_keys", "_verdicts", "channel_patterns", "name", "noauth",
                 "rules")  # fmt: skip

    def __init__(self, name: str, rules: AclRules, noauth: bool = False) -> None:
        self.name = name
        self.noauth = noauth  # not logged in: everything but AUTH and HELLO is NOAUTH
        self.rules = rules
        self._commands = rules.commands
        self._verdicts: dict[str, bool] = {}
        # Per command entry (the object: a reloaded table brings new ones), the whole
        # check of a command that may run and has at most one fixed key: that key's
        # index, its matcher and its test, or None where `check` must look (`_fast_entry`).
        self._fast: dict[CommandInfo, _Fast | None] = {}
        # Per access mask a key may be used with (none, read, write, both): the
        # patterns whose bits cover it, as one matcher, and as `keys_match`'s test.
        patterns = [[p for bits, p in rules.keys if bits & access == access] for access in range(4)]
        self._keys = [key_matcher(ps) for ps in patterns]
        self._key_tests: list[KeyTest] = [
            key_prefixes(ps) or match for ps, match in zip(patterns, self._keys, strict=True)
        ]
        # `allkeys` (or `~*`): keys need no looking at, not even finding.
        self._open_keys = any(p == "*" and bits == KEY_READ | KEY_WRITE for bits, p in rules.keys)
        self.channel_patterns = rules.channels
        self._all_channels = "*" in rules.channels
        self._channels = [glob_regex(p).match for p in rules.channels]

    def allows(self, name: str, categories: frozenset[str]) -> bool:
        """Whether the command rules let `name` ("get", "config|get") run."""
        verdict = self._verdicts.get(name)
        if verdict is None:
            verdict = self._decide(name, categories)
            if len(self._verdicts) < 8192:  # names come from the table; bounded anyway
                self._verdicts[name] = verdict
        return verdict

    def _decide(self, name: str, categories: frozenset[str]) -> bool:
        parent = name.partition("|")[0]
        verdict = False
        for allow, word in self._commands:
            if word in ("@all", name, parent) or word in categories:
                verdict = allow
        return verdict

    def admit(self, info: CommandInfo, args: list[bytes]) -> CommandInfo:
        """What to run: `info`; its `granted` twin when the policy refuses it and these
        rules name it (`+flushall`, `+config|set`, `+config`: a category or `+@all` is
        not enough); or a DENIED entry whose `name` is the error, for NOAUTH / NOPERM."""
        # Every command of a user with rules passes here: GET and SET cost a dict
        # lookup and one key match, not the whole `check`.
        fast = self._fast.get(info)
        if fast is None and info not in self._fast:
            fast = self._fast_entry(info)
        if fast is not None:
            pos, match, _ = fast
            if pos < len(args) and match(args[pos]):
                return info
        error = self.check(info, args)
        if error is not None:
            return CommandInfo(error, Kind.DENIED)
        granted = info.granted
        if granted is not None and self._names(info.name):
            return granted
        return info

    def admits_all(self, cmds: list[list[bytes]], lookup: Callable[[list[bytes]], CommandInfo],
                   kind: int) -> bool:  # fmt: skip
        """True when every command of a batch is of `kind` and `admit` would return its
        own entry: the batch path's whole test in one call. (A batch of one command n
        times takes `admits_run`.)"""
        admit = self.admit
        for args in cmds:
            info = lookup(args)
            if info.kind != kind or admit(info, args) is not info:
                return False
        return True

    def admits_run(self, info: CommandInfo, cmds: list[list[bytes]],
                   keys_match: Callable[[list[list[bytes]], int, KeyTest], bool]
                   ) -> bool:  # fmt: skip
        """`admits_all` for a batch that is one command (`info`) n times (a pipeline of
        GETs): its shortcut's key test over every command at once (`keys_match`, the
        loop in C, with no call per key for prefix rules), else `admit` command by command."""
        entry = self._fast.get(info)
        if entry is not None and (entry[1] is _always or keys_match(cmds, entry[0], entry[2])):
            return True
        return all(self.admit(info, args) is info for args in cmds)

    def _fast_entry(self, info: CommandInfo) -> _Fast | None:
        """`admit`'s shortcut for `info`: (key index, matcher, test) when `check` would only
        test that one key (a command these rules allow, no policy twin, no channels,
        no verb); (0, always, always) when it has no key to test. Kept per entry, bounded."""
        entry = self._shortcut(info)
        if len(self._fast) >= 8192:
            self._fast.clear()  # old tables' entries after many reloads
        self._fast[info] = entry
        return entry

    def _shortcut(self, info: CommandInfo) -> _Fast | None:
        name = info.name
        if self.noauth or name in _ALWAYS or info.granted is not None:
            return None
        if info.kind in (Kind.ADMIN, Kind.SUBSCRIBE) or name in _PUBLISH:
            return None
        if not self.allows(name, info.categories):
            return None
        if self._open_keys or not info.has_keys:
            return 0, _always, _always
        pos = one_key_index(info.key_specs)
        if pos is None:
            return None
        access = info.key_specs[0].access
        return pos, self._keys[access], self._key_tests[access]

    def _names(self, name: str) -> bool:
        """The last rule naming the command (or its container) allows it. Only asked
        once `check` allowed it, so no later category rule took it away."""
        parent = name.partition("|")[0]
        named = [allow for allow, word in self._commands if word in (name, parent)]
        return bool(named) and named[-1]

    def check(self, info: CommandInfo, args: list[bytes]) -> str | None:
        """None when the user may run this command with these arguments, else the error
        (without the leading '-')."""
        name = info.name
        if name in _ALWAYS:
            return None
        if self.noauth:
            return NOAUTH
        if info.kind == Kind.ADMIN:
            return self._check_verb(args)
        if not self.allows(name, info.categories):
            return noperm_command(name)
        if not self._open_keys and info.has_keys:
            found = keys_of(info.key_specs, args)
            if found is None:
                return NOPERM_KEY  # keys not findable: only `allkeys` may run it
            for key, access in found:
                if not self._key_ok(key, access):
                    return NOPERM_KEY
        if info.kind == Kind.SUBSCRIBE or name in _PUBLISH:
            return self._check_channels(name, args)
        return None

    def _key_ok(self, key: bytes, access: int) -> bool:
        return self._keys[access](key)

    def _check_channels(self, name: str, args: list[bytes]) -> str | None:
        if self._all_channels:
            return None
        if name in _PUBLISH:
            channels = args[1:2]
        elif name in _SUBSCRIBE:
            channels = args[1:]
        elif name == "psubscribe":
            # As Redis: a pattern must be one of the user's patterns, literally.
            allowed = {p.encode() for p in self.channel_patterns}
            return None if all(a in allowed for a in args[1:]) else NOPERM_CHANNEL
        else:
            return None  # unsubscribing needs no permission
        ok = all(any(m(c) for m in self._channels) for c in channels)
        return None if ok else NOPERM_CHANNEL

    def _check_verb(self, args: list[bytes]) -> str | None:
        if len(args) < 2:
            return None  # PROXY's own usage error
        verb = args[1].decode(errors="replace").lower()
        if verb in PROXY_STATUS:
            category = "@proxystatus"
        elif verb in PROXY_ADMIN:
            category = "@proxyadmin"
        else:
            return None  # HELP, WHEREAMI, REGION, MAXLAG, CONSISTENCY: per connection
        name = f"proxy|{verb}"
        return None if self.allows(name, frozenset({category})) else noperm_command(name)


# A connection before AUTH when users are configured and no passwordless `default` is.
NOT_AUTHENTICATED = Permissions("", AclRules(), noauth=True)
