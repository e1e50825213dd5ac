"""A user's rules in Redis' ACL SETUSER words, parsed into plain data.

Operators already know `ACL SETUSER` rules, so `[[users]] rules` takes them verbatim:
`on ~app:* &app:* +@read +@write -@dangerous`. This module only reads the words; what a
rule means for a command (categories, keys) is decided where the command table is known
(`routing.acl`). Passwords never appear in rules: `>password` and `<password` are refused
(they would sit in the file in clear); `#<sha256>` is a password hash, as in Redis.

Like every module in config/, this one imports nothing from proxy/ or routing/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Key permission bits of a `~` / `%R~` / `%W~` / `%RW~` pattern.
KEY_READ = 1
KEY_WRITE = 2
_HASH = re.compile(r"#[0-9a-f]{64}")
_COMMAND = re.compile(r"[+-](@[a-z][a-z0-9_-]*|[a-z][a-z0-9_.-]*(\|[a-z][a-z0-9_.-]*)?)")
_KEY_PERM = re.compile(r"%(R|W|RW|WR)~(.+)")
_WORDS = (
    "Redis' ACL SETUSER words: on, off, nopass, resetpass, #<sha256>, ~<pattern>, "
    "%R~<pattern>, %W~<pattern>, allkeys, resetkeys, &<pattern>, allchannels, "
    "resetchannels, +<command>, -<command>, +<command>|<sub>, +@<category>, -@<category>, "
    "allcommands, nocommands, reset"
)


@dataclass(frozen=True, slots=True)
class AclRules:
    """Rules in order where order matters (commands), sets where it does not."""

    enabled: bool = False
    nopass: bool = False
    hashes: tuple[str, ...] = ()  # sha256 hex of the passwords given as `#<hash>`
    # (allow, "get" | "config|get" | "@read"), applied in order as Redis does.
    commands: tuple[tuple[bool, str], ...] = ()
    keys: tuple[tuple[int, str], ...] = ()  # (KEY_READ | KEY_WRITE, glob pattern)
    channels: tuple[str, ...] = ()  # glob patterns; "*" for allchannels

    def text(self, hashes: bool = True) -> str:
        """The rules as ACL LIST prints them (hashes as `#<hash>`, never a password;
        `hashes=False` leaves those out too)."""
        words = ["on" if self.enabled else "off"]
        if self.nopass:
            words.append("nopass")
        if hashes:
            words += [f"#{h}" for h in self.hashes]
        words += [_key_word(bits, p) for bits, p in self.keys] or ["resetkeys"]
        words += [f"&{p}" for p in self.channels] or ["resetchannels"]
        words.append(self.commands_text())
        return " ".join(words)

    def commands_text(self) -> str:
        words = [("+" if allow else "-") + name for allow, name in self.commands]
        return " ".join(words) or "-@all"


def _key_word(bits: int, pattern: str) -> str:
    if bits == KEY_READ | KEY_WRITE:
        return f"~{pattern}"
    return f"%{'R' if bits == KEY_READ else 'W'}~{pattern}"


class _Builder:
    def __init__(self) -> None:
        self.enabled = False
        self.nopass = False
        self.hashes: list[str] = []
        self.commands: list[tuple[bool, str]] = []
        self.keys: list[tuple[int, str]] = []
        self.channels: list[str] = []

    def word(self, w: str) -> str | None:
        """Apply one rule word; a problem in words, or None."""
        low = w.lower()
        simple = _SIMPLE.get(low)
        if simple is not None:
            simple(self)
            return None
        if w[0] in "><":
            return (
                "a password in clear text is not allowed in rules; give its sha256 as "
                "#<hash> (or password_sha256), or name an environment variable (password_env)"
            )
        if w[0] == "#":
            if not _HASH.fullmatch(low):
                return f"'{w}': a password hash is '#' and 64 hex digits (sha256)"
            self.hashes.append(low[1:])
            self.nopass = False
            return None
        if w[0] == "~":
            self.keys.append((KEY_READ | KEY_WRITE, w[1:] or "*"))
            return None
        m = _KEY_PERM.fullmatch(w)
        if m is not None:
            bits = (KEY_READ if "R" in m[1] else 0) | (KEY_WRITE if "W" in m[1] else 0)
            self.keys.append((bits, m[2]))
            return None
        if w[0] == "&":
            self.channels.append(w[1:] or "*")
            return None
        if _COMMAND.fullmatch(low):
            self.commands.append((low[0] == "+", low[1:]))
            return None
        return f"unknown ACL rule '{w}' ({_WORDS})"

    def build(self) -> AclRules:
        return AclRules(
            enabled=self.enabled,
            nopass=self.nopass,
            hashes=tuple(dict.fromkeys(self.hashes)),
            commands=tuple(self.commands),
            keys=tuple(self.keys),
            channels=tuple(dict.fromkeys(self.channels)),
        )


def _on(b: _Builder) -> None:
    b.enabled = True


def _off(b: _Builder) -> None:
    b.enabled = False


def _nopass(b: _Builder) -> None:
    b.nopass, b.hashes = True, []


def _resetpass(b: _Builder) -> None:
    b.nopass, b.hashes = False, []


def _allkeys(b: _Builder) -> None:
    b.keys = [(KEY_READ | KEY_WRITE, "*")]


def _resetkeys(b: _Builder) -> None:
    b.keys = []


def _allchannels(b: _Builder) -> None:
    b.channels = ["*"]


def _resetchannels(b: _Builder) -> None:
    b.channels = []


def _allcommands(b: _Builder) -> None:
    b.commands = [(True, "@all")]


def _nocommands(b: _Builder) -> None:
    b.commands = [(False, "@all")]


def _reset(b: _Builder) -> None:
    fresh = _Builder()
    b.__dict__.update(fresh.__dict__)


_SIMPLE = {
    "on": _on,
    "off": _off,
    "nopass": _nopass,
    "resetpass": _resetpass,
    "allkeys": _allkeys,
    "resetkeys": _resetkeys,
    "allchannels": _allchannels,
    "resetchannels": _resetchannels,
    "allcommands": _allcommands,
    "nocommands": _nocommands,
    "reset": _reset,
}


def parse_rules(text: str) -> tuple[AclRules, list[str]]:
    """The rules of `text` (words as ACL SETUSER takes them), and every problem found."""
    b = _Builder()
    problems = [p for w in text.split() if (p := b.word(w)) is not None]
    return b.build(), problems
