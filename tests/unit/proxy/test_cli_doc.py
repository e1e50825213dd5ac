"""docs/cli.md against the argparse definitions in `proxy.cli`, so neither can drift.

The reference has one `## georedis COMMAND` section per subcommand and an `## OPTIONS`
section for the top-level options. Each section's option list (`- `--opt ARG`, ...: ...`)
must name exactly the options argparse defines for that command, positionals by their
metavar; and every option must carry a help text for `--help` to show.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from proxy.cli import build_parser

DOC = Path(__file__).parents[3] / "docs" / "cli.md"

# The first backticked word of a list item, and any further ones after ", ":
# "- `--config FILE`, `-c FILE`: ..." documents --config and -c; "- `FILE`: ..." a positional.
_ITEM = re.compile(r"^- ((?:`[^`]+`(?:, )?)+):", re.M)
_NAME = re.compile(r"`([^` ]+)[^`]*`")


def sections() -> dict[str, str]:
    """Heading text -> the text up to the next `## ` heading."""
    parts = re.split(r"^## (.+)$", DOC.read_text(), flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def documented(section: str) -> set[str]:
    return {name for item in _ITEM.findall(section) for name in _NAME.findall(item)}


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("georedis has no subcommands")


def defined(parser: argparse.ArgumentParser) -> set[str]:
    names: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            names.update(action.option_strings)
        else:
            names.add(str(action.metavar or action.dest))
    return names


PARSER = build_parser()
COMMANDS = subparsers(PARSER)


def test_every_command_has_a_section_and_no_other() -> None:
    headed = {h.removeprefix("georedis ") for h in sections() if h.startswith("georedis ")}
    assert headed == set(COMMANDS)


def test_top_level_options_documented() -> None:
    assert documented(sections()["OPTIONS"]) == defined(PARSER)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_options_documented(name: str) -> None:
    section = sections()[f"georedis {name}"]
    assert documented(section) == defined(COMMANDS[name]), name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_synopsis_names_every_option(name: str) -> None:
    synopsis = sections()["SYNOPSIS"]
    line = next(x for x in synopsis.splitlines() if x.startswith(f"georedis {name}"))
    for action in COMMANDS[name]._actions:
        if action.help == argparse.SUPPRESS or "-h" in action.option_strings:
            continue
        long = max(action.option_strings, key=len) if action.option_strings else None
        assert (long or str(action.metavar)) in line, (name, action.dest)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_choices_documented(name: str) -> None:
    section = sections()[f"georedis {name}"]
    for action in COMMANDS[name]._actions:
        for choice in action.choices or ():
            assert f"`{choice}`" in section, (name, action.dest, choice)


def test_every_option_and_command_has_help() -> None:
    for parser in (PARSER, *COMMANDS.values()):
        assert parser.description, parser.prog
        for action in parser._actions:
            assert action.help and action.help.strip(), (parser.prog, action.dest)
    for action in PARSER._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            assert set(helps) == set(COMMANDS)
            assert all(helps.values()), helps
