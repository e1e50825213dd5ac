"""The [cluster] section: seeds as addresses, its default, and the rules it is held to;
present_as: its two values, the default, and that a reload leaves it be."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from config.loader import ConfigError, parse_config
from config.model import Address, ClusterConfig, Config
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


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return info.value.errors


def test_seeds_parse_to_addresses() -> None:
    cfg = load('[cluster]\nseeds = ["127.0.0.1:7000", "[0::1]:7001", "Redis-1.example:7002"]\n')
    assert cfg.cluster.seeds == (
        Address("127.0.0.1", 7000),
        Address("::1", 7001),  # normalised, as [[regions]] nodes are
        Address("redis-1.example", 7002),
    )


def test_cluster_mode_is_off_and_refresh_is_5000_ms_by_default() -> None:
    assert load("").cluster == ClusterConfig(seeds=(), refresh_ms=5000)
    cfg = load('[cluster]\nseeds = ["127.0.0.1:7000"]\n')
    assert cfg.cluster.refresh_ms == 5000
    faster = load('[cluster]\nseeds = ["127.0.0.1:7000"]\nrefresh_ms = 250\n')
    assert faster.cluster.refresh_ms == 250


def test_bad_seeds_are_named_by_their_index() -> None:
    found = errors('[cluster]\nseeds = ["127.0.0.1:7000", "nohost", "127.0.0.1:0"]\n')
    assert found == [
        "g.toml: cluster.seeds[1]: bad address 'nohost': expected 'host:port'",
        "g.toml: cluster.seeds[2]: bad address '127.0.0.1:0': port must be 1-65535",
    ]


def test_an_empty_seed_list_is_refused_not_read_as_off() -> None:
    # Leaving the key out turns cluster mode off; an empty array is likely a mistake.
    assert errors("[cluster]\nseeds = []\n") == ["g.toml: cluster.seeds: must not be empty"]


def test_refresh_ms_must_be_positive() -> None:
    found = errors('[cluster]\nseeds = ["127.0.0.1:7000"]\nrefresh_ms = 0\n')
    assert len(found) == 1
    assert found[0].startswith("g.toml: cluster.refresh_ms: ")


def test_cluster_and_sentinel_are_refused_together() -> None:
    text = """
[cluster]
seeds = ["127.0.0.1:7000"]
[sentinel]
master_name = "mymaster"
addresses = ["127.0.0.1:26379"]
"""
    assert errors(text) == ["g.toml: cluster.seeds: cluster mode and [sentinel] do not go together"]


# --- present_as


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


def test_announce_is_an_address_used_only_with_present_as_cluster() -> None:
    cfg = load('[cluster]\npresent_as = "cluster"\nannounce = "lb.example:7000"\n')
    assert cfg.cluster.announce == Address("lb.example", 7000)
    assert load("").cluster.announce is None
    assert errors('[cluster]\nannounce = "lb.example:7000"\n') == [
        'g.toml: cluster.announce: only used with present_as = "cluster"'
    ]
    assert errors('[cluster]\npresent_as = "cluster"\nannounce = "nope"\n') == [
        "g.toml: cluster.announce: bad address 'nope': expected 'host:port'"
    ]
