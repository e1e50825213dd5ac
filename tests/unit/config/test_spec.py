"""The loader's key tables come from the model; TOML positions from the exception.

`config.spec` derives each key's converter from the model field's annotation, so a
field whose annotation names no rule must fail loudly rather than go unchecked.
"""

from __future__ import annotations

import dataclasses
import tomllib
from typing import Annotated

import pytest

from config.context import Context
from config.kinds import AtLeast, Millis
from config.loader import _toml_problem
from config.spec import SECTIONS, spec_of


def test_an_unannotated_int_has_no_converter() -> None:
    @dataclasses.dataclass(frozen=True)
    class Section:
        size: int = 1

    with pytest.raises(TypeError, match=r"Section\.size: .* names no rule"):
        spec_of(Section)


def test_annotations_pick_the_converters() -> None:
    @dataclasses.dataclass(frozen=True)
    class Section:
        timeout_ms: Millis = 10
        retries: Annotated[int, AtLeast(0)] = 3
        enabled: bool = True

    spec = spec_of(Section)
    assert list(spec) == ["timeout_ms", "retries", "enabled"]
    ctx = Context("x.toml")
    assert spec["retries"](ctx, "s.retries", 0) == 0
    assert spec["timeout_ms"](ctx, "s.timeout_ms", 0) is None
    assert spec["enabled"](ctx, "s.enabled", 1) is None
    assert ctx.errors == [
        "x.toml: s.timeout_ms: must be > 0, got 0",
        "x.toml: s.enabled: expected true or false, got integer 1",
    ]


def test_sections_are_the_config_fields() -> None:
    assert list(SECTIONS) == [
        "proxy",
        "regions",
        "users",
        "backend",
        "tls",
        "health",
        "routing",
        "failover",
        "sentinel",
        "cluster",
        "backup",
        "geoip",
        "metrics",
        "alerts",
        "policy",
    ]


class _PositionedError(tomllib.TOMLDecodeError):
    """A TOMLDecodeError as Python 3.14 raises it: the position in attributes."""

    def __init__(self, msg: str, doc: str, pos: int, lineno: int, colno: int) -> None:
        super().__init__(f"{msg} (somewhere)")
        self.msg, self.doc, self.pos, self.lineno, self.colno = msg, doc, pos, lineno, colno


def test_toml_position_from_attributes() -> None:
    e = _PositionedError("Invalid value", "a = \n", 4, 1, 5)
    assert _toml_problem(e) == "line 1, column 5: invalid TOML: Invalid value"


def test_toml_end_of_document_from_attributes() -> None:
    e = _PositionedError("Unterminated string", 'a = "', 5, 1, 6)
    assert _toml_problem(e) == "invalid TOML: Unterminated string (somewhere)"


def test_toml_position_from_the_message() -> None:
    e = tomllib.TOMLDecodeError("Invalid value (at line 8, column 10)")
    assert _toml_problem(e) == "line 8, column 10: invalid TOML: Invalid value"


def test_toml_error_at_end_of_document() -> None:
    with pytest.raises(tomllib.TOMLDecodeError) as info:
        tomllib.loads('a = "')
    assert _toml_problem(info.value).startswith("invalid TOML: ")
