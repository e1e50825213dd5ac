"""A `Config` written back as georedis TOML, for the configs the deploy files carry.

`generate-configs --compose` and `--kubernetes` ship a georedis.toml of their own (the
compose services' host names; listening on every interface, the PROXY header from the
NLB): the operator's config with a few fields replaced (`dataclasses.replace`), written
out here. Every field is written, defaults included, so what the file says is what runs;
a unit test holds that `load(config_toml(c)) == c`. Keys are the model's field names
(config/model.py says so); values go back to the spelling the loader reads: addresses
and networks as strings, enums by value, the ACL rules and schedule as their text.
Paths (TLS files, the GeoIP database) are written as the loader resolved them: absolute,
on the machine that generated the file.
"""

from __future__ import annotations

import dataclasses
import json
from enum import Enum
from typing import Any

from config.aclrules import AclRules
from config.model import Address, Config, OutputLimit
from config.schedule import Schedule

_ARRAYS_OF_TABLES = ("regions", "users")
# Dataclasses the file writes as one string, not as a table of their fields.
_SCALARS = (Address, OutputLimit, AclRules, Schedule)


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, tuple):
        return "[" + ", ".join(_value(item) for item in v) + "]"
    return json.dumps(_text(v))  # a JSON string is a TOML basic string


def _text(v: object) -> str:
    if isinstance(v, Enum):
        return str(v.value)
    if isinstance(v, AclRules):
        return v.text()
    if isinstance(v, Schedule):
        return v.text
    return str(v)  # Address, OutputLimit and networks print as the file spells them


def _is_lookup_table(v: object) -> bool:
    """[geoip] networks/countries/continents: pairs of (key, region)."""
    return isinstance(v, tuple) and bool(v) and all(isinstance(p, tuple) for p in v)


def _table(header: str, obj: Any) -> list[str]:
    lines = [header]
    subtables: list[str] = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None or (v == () and f.default == ()):
            # Left out: "not set", or an empty list whose default is empty (the file
            # could not spell some of them as [], e.g. an empty [geoip.countries]).
            continue
        name = header.strip("[]")
        if dataclasses.is_dataclass(v) and not isinstance(v, _SCALARS):
            subtables += ["", *_table(f"[{name}.{f.name}]", v)]
        elif _is_lookup_table(v):
            subtables += ["", f"[{name}.{f.name}]"]
            subtables += [f"{json.dumps(_text(k))} = {_value(r)}" for k, r in v]
        else:
            lines.append(f"{f.name} = {_value(v)}")
    return lines + subtables


def config_toml(config: Config, header: str = "") -> str:
    """The whole config as TOML text; `header` (comment lines) goes first."""
    out = [f"# {line}".rstrip() for line in header.splitlines()]
    for f in dataclasses.fields(config):
        if f.name == "source":
            continue
        v = getattr(config, f.name)
        if f.name in _ARRAYS_OF_TABLES:
            for item in v:
                out += ["", *_table(f"[[{f.name}]]", item)]
        else:
            out += ["", *_table(f"[{f.name}]", v)]
    return "\n".join(out).lstrip("\n") + "\n"
