"""ACL rules against redis-server 7.0's real command table: what a user may run, with
which keys and channels, in Redis' own words. No sockets."""

from __future__ import annotations

import random

import pytest

from config.aclrules import parse_rules
from proxy.resp.limits import keys_match, keys_match_py
from routing.acl import (
    NOAUTH,
    NOPERM_CHANNEL,
    NOPERM_KEY,
    NOT_AUTHENTICATED,
    Permissions,
    glob_regex,
    key_matcher,
    key_prefixes,
    noperm_command,
)
from tests.helpers.commands import command_table

TABLE = command_table()


def _user(rules: str) -> Permissions:
    parsed, problems = parse_rules(rules)
    assert problems == []
    return Permissions("u", parsed)


def _check(p: Permissions, *args: str) -> str | None:
    raw = [a.encode() for a in args]
    return p.check(TABLE.lookup(raw), raw)


def test_commands_by_category_and_name_in_order() -> None:
    p = _user("on ~* +@read +@write -@dangerous +flushall -set")
    assert _check(p, "GET", "k") is None
    assert _check(p, "SET", "k", "v") == noperm_command("set")  # -set came later
    assert _check(p, "FLUSHALL") is None  # +flushall after -@dangerous
    assert _check(p, "KEYS", "*") == noperm_command("keys")  # @dangerous
    assert _check(p, "PING") == noperm_command("ping")  # @connection, not granted
    assert _check(p, "AUTH", "x") is None  # AUTH, HELLO, QUIT, RESET: always


def test_a_container_covers_its_subcommands_and_a_subcommand_only_itself() -> None:
    p = _user("on ~* +config|get")
    assert _check(p, "CONFIG", "GET", "maxmemory") is None
    assert _check(p, "CONFIG", "SET", "maxmemory", "1") == noperm_command("config|set")
    q = _user("on ~* +config -config|set")
    assert _check(q, "CONFIG", "RESETSTAT") is None
    assert _check(q, "CONFIG", "SET", "a", "b") == noperm_command("config|set")


def test_keys_read_write_and_movable() -> None:
    p = _user("on %R~pub:* ~app:* +@all")
    assert _check(p, "GET", "pub:1") is None
    assert _check(p, "SET", "pub:1", "v") == NOPERM_KEY  # read only
    assert _check(p, "SET", "app:1", "v") is None
    assert _check(p, "MSET", "app:1", "v", "x:1", "v") == NOPERM_KEY
    assert _check(p, "EVAL", "s", "2", "app:1", "x:2") == NOPERM_KEY
    assert _check(p, "EVAL", "s", "1", "app:1", "x:2") is None  # x:2 is an argument
    assert _check(p, "ZUNIONSTORE", "app:d", "2", "pub:a", "app:b") is None  # pub:a is read
    assert _check(p, "ZUNIONSTORE", "pub:d", "2", "app:a", "app:b") == NOPERM_KEY  # written
    assert _check(p, "ZUNIONSTORE", "app:d", "2", "app:a", "x:b") == NOPERM_KEY
    assert _check(p, "XREAD", "STREAMS", "app:s", "other", "0", "0") == NOPERM_KEY
    # Keys Redis 7.0's specs cannot tell (SORT, MIGRATE): only with every key allowed.
    assert _check(p, "SORT", "app:l") == NOPERM_KEY
    assert _check(_user("on allkeys +@all"), "SORT", "app:l") is None


def test_channels() -> None:
    p = _user("on ~* &news:* +@all")
    assert _check(p, "PUBLISH", "news:1", "m") is None
    assert _check(p, "PUBLISH", "other", "m") == NOPERM_CHANNEL
    assert _check(p, "SUBSCRIBE", "news:a", "other") == NOPERM_CHANNEL
    assert _check(p, "PSUBSCRIBE", "news:*") is None  # literally one of the patterns
    assert _check(p, "PSUBSCRIBE", "news:a*") == NOPERM_CHANNEL
    assert _check(p, "UNSUBSCRIBE", "other") is None
    assert _check(_user("on ~* allchannels +@all"), "PUBLISH", "x", "m") is None


def test_proxy_verbs() -> None:
    p = _user("on ~* +@read +@proxystatus")
    assert _check(p, "PROXY", "BACKENDS") is None
    assert _check(p, "PROXY", "CLUSTER") is None  # status of the slot map: read-only
    assert _check(p, "PROXY", "FAILOVER") == noperm_command("proxy|failover")
    assert _check(p, "PROXY", "WHEREAMI") is None  # per connection: open to all
    assert _check(_user("on ~* +@all -proxy|backends"), "PROXY", "BACKENDS") == noperm_command(
        "proxy|backends"
    )
    assert _check(_user("on ~* +@all"), "PROXY", "FAILOVER") is None


def test_not_authenticated() -> None:
    assert _check(NOT_AUTHENTICATED, "GET", "k") == NOAUTH
    assert _check(NOT_AUTHENTICATED, "AUTH", "u", "p") is None
    assert _check(NOT_AUTHENTICATED, "HELLO", "3") is None  # HELLO answers NOAUTH itself


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("app:*", [b"app:", b"app:x:y"], [b"ap", b"xapp:1"]),
        ("a?c", [b"abc"], [b"ac", b"abbc"]),
        ("[ab]x", [b"ax", b"bx"], [b"cx"]),
        ("[^ab]x", [b"cx"], [b"ax"]),
        ("a\\*", [b"a*"], [b"ab"]),
        ("a.b", [b"a.b"], [b"axb"]),
    ],
)
def test_glob_is_redis_stringmatch(pattern: str, yes: list[bytes], no: list[bytes]) -> None:
    m = glob_regex(pattern).match
    assert all(m(k) for k in yes) and not any(m(k) for k in no)


def test_rule_words() -> None:
    rules, problems = parse_rules("on >secret <x #" + "0" * 64 + " %W~w:* resetkeys ~k:* bogus")
    assert len(problems) == 3 and all("secret" not in p for p in problems)
    assert rules.keys == ((3, "k:*"),) and rules.hashes == ("0" * 64,)
    assert parse_rules("on nopass allkeys allchannels allcommands")[0].text() == (
        "on nopass ~* &* +@all"
    )
    assert parse_rules("on ~a +@all reset")[0].text() == "off resetkeys resetchannels -@all"


def test_a_command_the_policy_refuses_runs_only_for_a_user_that_names_it() -> None:
    from routing.commands import CommandTable, Kind
    from tests.helpers.commands import command_reply

    table = CommandTable.from_command_reply(command_reply(), frozenset({"flushall", "config|set"}))

    def kind(rules: str, *args: str) -> Kind:
        raw = [a.encode() for a in args]
        return _user(rules).admit(table.lookup(raw), raw).kind

    assert kind("on ~* +@all", "FLUSHALL") == Kind.REFUSED  # +@all is not enough
    assert kind("on ~* +@all +flushall", "FLUSHALL") == Kind.WRITE
    assert kind("on ~* +@all +config", "CONFIG", "SET", "a", "b") == Kind.CONFIG_SET
    assert kind("on ~* +@all +flushall -flushall", "FLUSHALL") == Kind.DENIED
    assert kind("on ~* +@read", "FLUSHALL") == Kind.DENIED


KEY_PATTERNS = ["app:*", "a?c", "[ab]x", "[^ab]x", "a\\*", "a.b", "exact", "", "*:tail",
                "x*y*", "pre*", "p[0-9]*"]  # fmt: skip
KEYS = [b"", b"app:", b"app:x", b"ap", b"abc", b"ac", b"ax", b"bx", b"cx", b"a*", b"ab",
        b"a.b", b"axb", b"exact", b"exactly", b"k:tail", b"xay", b"xy", b"x", b"pre",
        b"prefix", b"p7q", b"pq", b"\n", b"app:\n"]  # fmt: skip


@pytest.mark.parametrize("size", [0, 1, 2, 3, len(KEY_PATTERNS)])
def test_key_matcher_agrees_with_each_glob(size: int) -> None:
    """The combined matcher (prefixes, literals, one regex) says what trying each glob
    alone says, for every subset shape: the fast paths change nothing."""
    rng = random.Random(size)
    for _ in range(40):
        patterns = rng.sample(KEY_PATTERNS, size)
        match = key_matcher(patterns)
        for key in KEYS:
            want = any(glob_regex(p).match(key) for p in patterns)
            assert match(key) == want, (patterns, key)
    assert key_matcher(["x", "*"])(b"anything")


@pytest.mark.parametrize("size", [0, 1, 2, 3])
def test_prefix_patterns_are_a_startswith(size: int) -> None:
    """Where `key_prefixes` gives prefixes (every pattern `literal*`), a key starting
    with one is exactly a key the matcher accepts; any other pattern gives None."""
    rng = random.Random(size)
    shapes = [*KEY_PATTERNS, "*", "k:*", "app:x*"]
    for _ in range(60):
        patterns = rng.sample(shapes, size)
        prefixes = key_prefixes(patterns)
        plain = all(p.endswith("*") and not set("*?[\\") & set(p[:-1]) for p in patterns)
        assert (prefixes is not None) == plain, patterns
        if prefixes is not None:
            match = key_matcher(patterns)
            for key in KEYS:
                assert key.startswith(prefixes) == match(key), (patterns, key)


RULE_SETS = ["on ~app:* +@all", "on %R~pub:* %W~app:* +@read +@write -set", "on allkeys +@all",
             "on ~app:* +@all -@dangerous +flushall &news:*", "on ~* +get",
             "on ~app:* ~x* ~pub:* +@all", "on ~app:* ~exact ~a?p:* +@all"]  # fmt: skip
ARG_SHAPES = [["app:1", "v"], ["pub:1", "v"], ["x", "v"], [], ["app:1", "app:2", "x"],
              ["news:1", "m"]]  # fmt: skip


@pytest.mark.parametrize("rules", RULE_SETS)
def test_admit_shortcut_answers_what_the_whole_check_answers(rules: str) -> None:
    """`admit` skips `check` for commands with one fixed key (or none): for every command
    of Redis' table and several argument shapes, cold and warm, it answers what a
    user whose every answer comes from `check` answers."""
    from routing.commands import CommandTable, Kind
    from tests.helpers.commands import command_reply

    reply = command_reply()
    table = CommandTable.from_command_reply(reply, frozenset({"flushall"}))
    names = sorted({e[0].decode() if isinstance(e[0], bytes) else str(e[0]) for e in reply})
    assert len(names) > 200
    p = _user(rules)
    for name in names:
        for shape in ARG_SHAPES:
            raw = [name.encode(), *(a.encode() for a in shape)]
            info = table.lookup(raw)
            error = _user(rules).check(info, raw)  # a fresh user: nothing cached
            for _ in range(2):
                got = p.admit(info, raw)
                if error is not None:
                    assert (got.kind, got.name) == (Kind.DENIED, error), raw
                else:
                    assert got.kind != Kind.DENIED, raw


@pytest.mark.parametrize("rules", RULE_SETS)
def test_a_batch_is_admitted_as_each_of_its_commands_would_be(rules: str) -> None:
    """`admits_all`, the batch path's one call, against `admit` command by command: the
    same verdict for batches of one command and of several, repeated and mixed, cold
    (a fresh user) and warm."""
    from routing.commands import CommandTable
    from tests.helpers.commands import command_reply

    table = CommandTable.from_command_reply(command_reply(), frozenset({"flushall"}))
    names = [b"get", b"set", b"incr", b"mget", b"flushall", b"publish", b"config", b"lpush"]
    rng = random.Random(rules)
    for _ in range(400):
        batch = [[rng.choice(names), *(a.encode() for a in rng.choice(ARG_SHAPES))]
                 for _ in range(rng.randint(1, 6))]  # fmt: skip
        if rng.random() < 0.5:
            batch = batch[:1] * len(batch)  # a pipeline of one command
        kind = table.lookup(batch[0]).kind
        p = _user(rules)
        for _ in range(2):
            each = all(
                table.lookup(a).kind == kind and p.admit(table.lookup(a), a) is table.lookup(a)
                for a in batch
            )
            assert _user(rules).admits_all(batch, table.lookup, kind) == each, batch
            assert p.admits_all(batch, table.lookup, kind) == each, batch
            if all(a == batch[0] for a in batch):  # one command n times: `admits_run`
                info = table.lookup(batch[0])
                for match in (keys_match_py, keys_match):
                    assert _user(rules).admits_run(info, batch, match) == each, batch
                    assert p.admits_run(info, batch, match) == each, batch
