"""The loader's key tables, derived from the model: which converter checks which key.

`SECTIONS` maps each section of the file to its dataclass and a table of key ->
converter. Nothing here lists a field: the sections are the fields of `Config`, the keys
are each dataclass' fields, and each converter is picked from the field's annotation (a
`config.kinds` marker, or the plain type: bool, str, Address, an enum). A field whose
annotation names no rule is a `TypeError` at import, so a new setting cannot slip in
unchecked. Like every module in config/, this one imports nothing from proxy/ or routing/.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any

from config import alertsconv, backupconv, convert
from config.context import Conv
from config.kinds import AtLeast, Between, OneOf, Special, TablesOf
from config.model import Address, Config

_SPECIAL: dict[Special, Conv] = {
    Special.WORKERS: convert.workers,
    Special.REGION_NAME: convert.region_name,
    Special.ENV_NAME: convert.env_name,
    Special.PEERS: convert.peers,
    Special.NODES: convert.nodes,
    Special.MMDB: convert.database,
    Special.NETWORK_TABLE: convert.network_table,
    Special.COUNTRY_TABLE: convert.country_table,
    Special.CONTINENT_TABLE: convert.continent_table,
    Special.COMMAND_NAMES: convert.command_names,
    Special.OUTPUT_LIMIT: convert.output_limit,
    Special.ACL_RULES: convert.acl_rules,
    Special.SHA256_LIST: convert.sha256_list,
    Special.FILE: convert.readable_file,
    Special.MEMORY: convert.memory,
    Special.SCHEDULE: backupconv.schedule,
    Special.RETENTION: backupconv.retention,
    Special.SECRET_FILE: alertsconv.secret_file,
    Special.SEVERITIES: alertsconv.severities,
    Special.EMAIL: alertsconv.email,
    Special.EMAILS: alertsconv.emails,
    Special.HOST_PORT: alertsconv.host_port,
    Special.URL: alertsconv.url,
}
_PLAIN: dict[object, Conv] = {bool: convert.boolean, str: convert.string, Address: convert.address}


def _unwrap(hint: Any) -> tuple[Any, list[object]]:
    """`Annotated[T | None, m...]` (in either nesting) -> (T, [m...])."""
    marks: list[object] = []
    while True:
        if typing.get_origin(hint) is typing.Annotated:
            marks.extend(hint.__metadata__)
            hint = hint.__origin__
        elif typing.get_origin(hint) in (typing.Union, types.UnionType):
            # `X | None`: None is the model's "not set"; the file can only leave it out.
            rest = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(rest) != 1:
                return hint, marks
            hint = rest[0]
        else:
            return hint, marks


def _converter(hint: Any) -> Conv | None:
    typ, marks = _unwrap(hint)
    for mark in marks:
        if isinstance(mark, AtLeast):
            return convert.integer(mark.minimum)
        if isinstance(mark, Between):
            return convert.number(mark.lo, mark.hi)
        if isinstance(mark, OneOf):
            return convert.choice(mark.options)
        if isinstance(mark, Special):
            return _SPECIAL[mark]
        if isinstance(mark, TablesOf):  # each table's keys checked as a section's are
            return alertsconv.tables(mark.cls, spec_of(mark.cls))
    if isinstance(typ, type) and issubclass(typ, Enum):
        return convert.enum(typ)
    return _PLAIN.get(typ)


def spec_of(cls: type[Any]) -> dict[str, Conv]:
    """Key -> converter for every field of the dataclass `cls`, in field order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    spec: dict[str, Conv] = {}
    for f in dataclasses.fields(cls):
        conv = _converter(hints[f.name])
        if conv is None:
            raise TypeError(
                f"{cls.__name__}.{f.name}: {hints[f.name]!r} names no rule for the loader;"
                " annotate it with a config.kinds marker"
            )
        spec[f.name] = conv
    return spec


def _sections() -> dict[str, tuple[type[Any], dict[str, Conv]]]:
    out: dict[str, tuple[type[Any], dict[str, Conv]]] = {}
    for name, hint in typing.get_type_hints(Config).items():
        if name == "source":  # where the file came from, not a section of it
            continue
        if typing.get_origin(hint) is tuple:  # `regions`, `users`: arrays of tables
            hint = typing.get_args(hint)[0]
        out[name] = (hint, spec_of(hint))
    return out


# Every section's dataclass with its key table; a test checks the example file documents
# every key, with the model's defaults.
SECTIONS = _sections()
