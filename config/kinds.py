"""What a config value must be: the markers `config.model` annotates its fields with.

A field of the model says, in its annotation, what the file may hold for it:
`drain_timeout_ms: Millis = 5000` is an integer of at least 1, and
`latitude: Annotated[float, Between(-90, 90)]` a number in that range. `config.spec`
reads these annotations (`typing.Annotated`) and picks each field's converter from
`config.convert`, so the model is the one place a field, its default and its rule are
written. Fields of a plain type need no marker: `bool`, `str` (non-empty), `Address`
and enums each have one converter.

Markers are plain data, so the model need not import the converters. Like every module
in config/, this one imports nothing from proxy/ or routing/.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Annotated, TypeAlias


@dataclass(frozen=True, slots=True)
class AtLeast:
    """An integer (never a boolean) no smaller than `minimum`."""

    minimum: int


@dataclass(frozen=True, slots=True)
class Between:
    """A number (an integer is fine, a boolean is not) from `lo` to `hi`."""

    lo: float
    hi: float


@dataclass(frozen=True, slots=True)
class OneOf:
    """A string among `options`."""

    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TablesOf:
    """An array of tables (`[[alerts.email]]`), each one a `cls`: its keys are checked
    by that dataclass' own annotations, as a section's are."""

    cls: type


class Special(Enum):
    """Values with a rule of their own; `config.convert` has one converter for each."""

    WORKERS = 'an integer >= 0 or "auto", which the model keeps as 0 (one per core)'
    REGION_NAME = "a string without spaces or control characters"
    ENV_NAME = "the name of an environment variable"
    PEERS = "an array of CIDRs; empty means loopback only"
    NODES = "a non-empty array of addresses"
    MMDB = "a MaxMind City or Country database, relative to the config file"
    NETWORK_TABLE = "a table of CIDR -> region name"
    COUNTRY_TABLE = "a table of ISO 3166 alpha-2 country code -> region name"
    CONTINENT_TABLE = "a table of continent code -> region name"
    OUTPUT_LIMIT = 'Redis\' "<hard> <soft> <soft seconds>", e.g. "256mb 64mb 60"; 0 is no limit'
    COMMAND_NAMES = 'an array of command names ("flushall", "config|set" or "config set")'
    ACL_RULES = 'Redis\' ACL SETUSER rules without passwords, e.g. "on ~app:* +@read"'
    SHA256_LIST = "an array of sha256 hex digests (64 hex digits each)"
    FILE = "a readable file, relative to the config file"
    MEMORY = 'bytes, or with Redis\' units: "1gb", "512mb", "64k"'
    SCHEDULE = 'cron ("0 2 * * *", UTC) or an interval ("every 6h")'
    RETENTION = "a table of daily, weekly, monthly: backups kept, each an integer >= 0"
    SECRET_FILE = "the absolute path of a file holding a secret, read by Alertmanager itself"
    SEVERITIES = 'a non-empty array of alert severities: "critical", "warning", "info"'
    EMAIL = "an email address"
    EMAILS = "a non-empty array of email addresses"
    HOST_PORT = 'a "host:port" string'
    URL = "an http:// or https:// URL, without credentials in it"


# Integer kinds: a bound is always chosen, so a bare `int` field has no converter.
Positive: TypeAlias = Annotated[int, AtLeast(1)]
# Durations in milliseconds: zero would mean "no deadline" or a busy loop.
Millis: TypeAlias = Annotated[int, AtLeast(1)]
# Where zero means something (none kept, no hold-down, log everything).
Count: TypeAlias = Annotated[int, AtLeast(0)]
