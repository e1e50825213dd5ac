"""[cluster] present_as: its two values, the default, and that a reload leaves it be."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from config.loader import ConfigError, parse_config
from config.model import Config
from proxy.server.reload import changed, in_force

REGIONS = """
[[regions]]
name = "a"
latitude = 1.0
longitude = 2.0
nodes = ["127.0.0.1:7000"]
"""


def load(text: str) -> Config:
    return parse_config(tomllib.loads(text + REGIONS), "g.toml")


def test_standalone_by_default_and_cluster_when_asked() -> None:
    assert load("").cluster.present_as == "standalone"
    assert load('[cluster]\npresent_as = "cluster"\n').cluster.present_as == "cluster"
    seeded = load('[cluster]\nseeds = ["127.0.0.1:7000"]\npresent_as = "cluster"\n')
    assert seeded.cluster.present_as == "cluster"


@pytest.mark.parametrize("value", ['"Cluster"', '"sentinel"', '""', "true", "1"])
def test_only_the_two_values_are_taken(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(f"[cluster]\npresent_as = {value}\n")
    (error,) = info.value.errors
    assert error.startswith("g.toml: cluster.present_as: ")
    if value.startswith('"') and value != '""':
        assert "must be one of 'standalone', 'cluster'" in error


def test_a_reload_needs_a_restart_to_change_it() -> None:
    old = load("")
    new = dataclasses.replace(old, cluster=dataclasses.replace(old.cluster, present_as="cluster"))
    diff, restart = changed(old, new)
    assert diff == ["cluster.present_as"] and restart == ["cluster.present_as"]
    assert in_force(old, new).cluster.present_as == "standalone"
