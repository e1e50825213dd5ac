"""redis-server 7.0's own COMMAND reply, stored in tests/unit/routing/data, as the
proxy's probe reads it (RESP2 through hiredis: lists of bytes and ints)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from routing.commands import CommandTable

COMMAND_REPLY = Path(__file__).parents[1] / "unit" / "routing" / "data" / "command_reply.json"


def as_hiredis(v: object) -> object:
    """The JSON file stores bytes as strings; hiredis gives bytes."""
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, list):
        return [as_hiredis(x) for x in v]
    return v


def command_reply() -> list[object]:
    reply = as_hiredis(json.loads(COMMAND_REPLY.read_text()))
    assert isinstance(reply, list)
    return reply


@functools.cache
def command_table() -> CommandTable:
    """The table the proxy builds from that reply (no policy)."""
    return CommandTable.from_command_reply(command_reply())
