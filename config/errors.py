"""The root of georedis' own errors, and the config layer's error.

`GeoredisError` lives here, in the bottom layer (config), so that config errors, the RESP
codec's `ProtocolError` and the proxy's errors (`proxy/errors.py`) can all derive from it
and a caller can tell "georedis refused this" from a bug. Like every module in config/,
this one imports nothing from proxy/ or routing/.
"""

from __future__ import annotations


class GeoredisError(Exception):
    """The root of every error georedis itself raises."""


class ConfigError(GeoredisError):
    """One or more problems in a config file, each `"<file>: <field>: <problem>"`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(self.errors)
