"""Read a georedis TOML file and validate it into the frozen `config.model.Config`.

Strategy: every section is described by a table mapping each key to a *converter*
(`config.spec`, derived from the model's annotations; the converters are in
`config.convert`). A converter checks one raw TOML value and returns the typed value, or
reports a problem and returns None. Nothing raises while parsing: every problem is
appended to one list (`config.context`), cross-field rules (`config.validate`) add theirs,
so a user who runs `georedis check-config` sees all of them at once, and only then is
one `ConfigError` raised.

Fields left out of the file take the defaults declared in `config.model`, the single place
defaults live. Keys that are not fields are errors (a typo must never fall back to a
default silently), with the closest valid key suggested. This module reads the file,
walks its sections and resolves the password; like every module in config/, it imports
nothing from proxy/ or routing/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from config.context import Context, Conv, got, join, suggest
from config.convert import parse_address
from config.errors import ConfigError
from config.model import Config, ProxyConfig, RegionConfig, UserConfig
from config.spec import SECTIONS
from config.validate import check_cross, check_unique

# Importable from here as before the loader was split.
__all__ = [
    "SECTIONS",
    "ConfigError",
    "load_config",
    "parse_address",
    "parse_config",
    "resolve_password",
    "user_password_hashes",
]

_PASSWORD_HINT = (
    "a literal password is not allowed in the file; put it in an environment variable "
    'and name that variable with password_env = "REDIS_PASSWORD"'
)
# Sections of one table each, built alike; `proxy`, `regions` and `users` have rules of
# their own.
_PLAIN_SECTIONS = tuple(name for name in SECTIONS if name not in ("proxy", "regions", "users"))


def _table(ctx: Context, path: str, v: object) -> dict[str, object] | None:
    if not isinstance(v, dict):
        ctx.error(path, f"expected a table, got {got(v)}")
        return None
    return v


def _fields(
    ctx: Context, path: str, raw: Mapping[str, object], spec: Mapping[str, Conv]
) -> dict[str, Any]:
    """Convert the keys of one table that `spec` knows; report every other key."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        conv = spec.get(key)
        if conv is None:
            ctx.error(join(path, key), "unknown key" + suggest(key, spec))
            continue
        typed = conv(ctx, join(path, key), value)
        if typed is not None:
            out[key] = typed
    return out


def _section(ctx: Context, data: Mapping[str, object], name: str) -> Any:
    """Build one single-table section; its defaults stand in for absent or bad keys."""
    cls, spec = SECTIONS[name]
    raw = _table(ctx, name, data.get(name, {})) or {}
    if name == "backend" and "password" in raw:
        ctx.error("backend.password", _PASSWORD_HINT)
        raw = {k: v for k, v in raw.items() if k != "password"}
    return cls(**_fields(ctx, name, raw, spec))


def _required(cls: type[Any]) -> list[str]:
    """The fields of dataclass `cls` without a default: the file must give them."""
    missing = dataclasses.MISSING
    fields = dataclasses.fields(cls)
    return [f.name for f in fields if f.default is missing and f.default_factory is missing]


def _regions(ctx: Context, data: Mapping[str, object]) -> list[RegionConfig]:
    raw = data.get("regions")
    if raw is None or raw == []:
        ctx.error("regions", "at least one [[regions]] table is required")
        return []
    if not isinstance(raw, list):
        ctx.error("regions", f"expected an array of tables ([[regions]]), got {got(raw)}")
        return []
    spec = SECTIONS["regions"][1]
    required = _required(RegionConfig)
    regions: list[RegionConfig] = []
    checked: list[tuple[int, dict[str, Any]]] = []
    for i, item in enumerate(raw):
        path = f"regions[{i}]"
        table = _table(ctx, path, item)
        if table is None:
            continue
        fields = _fields(ctx, path, table, spec)
        for key in required:
            if key not in table:
                ctx.error(f"{path}.{key}", "missing required key")
        if "name" in fields:
            # Kept even when the region has other errors, so geoip references to it
            # do not produce a second, misleading "unknown region" error.
            ctx.region_names.append(fields["name"])
        checked.append((i, fields))
        given = [key for key in table if key in spec]
        if all(key in fields for key in [*required, *given]):
            regions.append(RegionConfig(**fields))
    check_unique(ctx, checked)
    return regions


def _users(ctx: Context, data: Mapping[str, object]) -> list[UserConfig]:
    """`[[users]]`: optional; with none, every client is Redis' passwordless `default`."""
    raw = data.get("users", [])
    if not isinstance(raw, list):
        ctx.error("users", f"expected an array of tables ([[users]]), got {got(raw)}")
        return []
    spec = SECTIONS["users"][1]
    users: list[UserConfig] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        path = f"users[{i}]"
        table = _table(ctx, path, item)
        if table is None:
            continue
        if "password" in table:
            ctx.error(f"{path}.password", _PASSWORD_HINT)
            table = {k: v for k, v in table.items() if k != "password"}
        fields = _fields(ctx, path, table, spec)
        name = fields.get("name")
        if "name" not in table:
            ctx.error(f"{path}.name", "missing required key")
        elif name in names:
            ctx.error(f"{path}.name", f"duplicate user name {name!r}")
        if name is not None:
            names.add(name)
        if all(key in fields for key in table):
            users.append(UserConfig(**fields))
    return users


def _proxy(ctx: Context, data: Mapping[str, object]) -> ProxyConfig:
    proxy: ProxyConfig = _section(ctx, data, "proxy")
    raw = data.get("proxy")
    if isinstance(raw, dict) and "region" in raw:
        # Checked only when well-formed: `string` has already reported a bad value.
        if proxy.region and ctx.region_names and proxy.region not in ctx.region_names:
            problem = f"unknown region {proxy.region!r}"
            ctx.error("proxy.region", problem + suggest(proxy.region, ctx.region_names))
        return proxy
    # Omitted: the proxy runs in the first region listed.
    first = ctx.region_names[0] if ctx.region_names else ""
    return dataclasses.replace(proxy, region=first)


def parse_config(data: Mapping[str, object], source: str) -> Config:
    """Validate parsed TOML `data` (from file `source`) into a Config, or raise ConfigError."""
    ctx = Context(source)
    for key in data:
        if key not in SECTIONS:
            ctx.error(join("", key), "unknown section" + suggest(key, SECTIONS))
    regions = _regions(ctx, data)
    users = _users(ctx, data)
    proxy = _proxy(ctx, data)
    sections = {name: _section(ctx, data, name) for name in _PLAIN_SECTIONS}
    cfg = Config(proxy=proxy, regions=tuple(regions), users=tuple(users), source=source,
                 **sections)  # fmt: skip
    check_cross(ctx, cfg)
    if ctx.errors:
        raise ConfigError(ctx.errors)
    return cfg


_TOML_POS = re.compile(r"(.*) \(at line (\d+), column (\d+)\)$")


def _toml_problem(e: tomllib.TOMLDecodeError) -> str:
    """A TOML syntax error as `line L, column C: invalid TOML: <what>`."""
    # Python 3.14+ gives the position as attributes; before, only inside the message.
    line, col = getattr(e, "lineno", None), getattr(e, "colno", None)
    msg, doc, pos = getattr(e, "msg", None), getattr(e, "doc", None), getattr(e, "pos", None)
    # At the end of the document the message says so instead, as on every version.
    at_end = isinstance(doc, str) and isinstance(pos, int) and pos >= len(doc)
    if isinstance(line, int) and isinstance(col, int) and isinstance(msg, str) and not at_end:
        return f"line {line}, column {col}: invalid TOML: {msg}"
    m = _TOML_POS.match(str(e))
    return f"line {m[2]}, column {m[3]}: invalid TOML: {m[1]}" if m else f"invalid TOML: {e}"


def load_config(path: str) -> Config:
    """Read and validate the TOML file at `path`; raise ConfigError listing every problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror or e}"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text: {e.reason} at byte {e.start}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: {_toml_problem(e)}"]) from None
    return parse_config(data, path)


def user_password_hashes(cfg: Config, user: UserConfig) -> tuple[str, ...]:
    """sha256 hex digests a user logs in with: the file's, and its password_env's."""
    hashes = list(user.password_sha256) + list(user.rules.hashes)
    if user.password_env is not None:
        value = os.environ.get(user.password_env)
        if value is None:
            raise ConfigError([f"{cfg.source}: users.{user.name}.password_env: environment "
                               f"variable {user.password_env!r} is not set"])  # fmt: skip
        hashes.append(hashlib.sha256(value.encode()).hexdigest())
    return tuple(dict.fromkeys(hashes))


def resolve_password(cfg: Config) -> str | None:
    """The backend password from the environment variable the config names, if any."""
    return secret_from_env(cfg, "backend.password_env", cfg.backend.password_env)


def secret_from_env(cfg: Config, key: str, name: str | None) -> str | None:
    """The value of environment variable `name` (None when not configured); a
    ConfigError naming `key` when it is configured but not set."""
    if name is None:
        return None
    value = os.environ.get(name)
    if value is None:
        raise ConfigError([f"{cfg.source}: {key}: environment variable {name!r} is not set"])
    return value
