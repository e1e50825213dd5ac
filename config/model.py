"""The typed, immutable configuration model.

Every section of the TOML file maps to one frozen dataclass here; the loader
(`config.loader`) is the only place that builds them, after validating every field.
Defaults live here, next to the field, so the example file, the loader and the code
that reads a setting all agree on one value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from typing import TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# Who may send a PROXY protocol header when `proxy_protocol_from` is empty: a load
# balancer on the same host. Never "anyone": any client could then claim any address
# (and so any region) by writing the header itself.
LOOPBACK_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


@dataclass(frozen=True, slots=True)
class Address:
    """A host:port pair. IPv6 hosts are written `[::1]:6380` in the file."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class Fallback(Enum):
    """What a read does when no replica in any region is eligible."""

    PRIMARY = "primary"
    ERROR = "error"


class LogFormat(Enum):
    TEXT = "text"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    listen: Address = Address("127.0.0.1", 6380)
    # Where this proxy runs; the region of clients whose location is unknown.
    region: str = ""
    # Worker processes sharing the listen port (SO_REUSEPORT); 0 means one per core.
    workers: int = 1
    proxy_protocol: bool = False
    # Peers allowed to send the header; the loader turns an empty list into loopback.
    proxy_protocol_from: tuple[IPNetwork, ...] = LOOPBACK_NETWORKS
    proxy_protocol_timeout_ms: int = 3000
    max_clients: int = 10000
    # How long shutdown waits for in-flight replies before closing everything.
    drain_timeout_ms: int = 5000
    # Request limits, as Redis' proto-max-bulk-len and its multibulk/inline limits.
    max_bulk_len: int = 512 * 1024 * 1024
    max_multibulk_len: int = 1024 * 1024
    max_inline_len: int = 64 * 1024
    log_format: LogFormat = LogFormat.TEXT
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class RegionConfig:
    name: str
    latitude: float
    longitude: float
    nodes: tuple[Address, ...]


@dataclass(frozen=True, slots=True)
class BackendConfig:
    username: str | None = None
    # Name of the environment variable holding the password; never the password itself.
    password_env: str | None = None
    timeout_ms: int = 1000
    # Deadline of scripts and functions (EVAL*, EVALSHA*, FCALL*): above Redis' busy
    # threshold (busy-reply-threshold, 5 s), so a long script is answered, not failed.
    script_timeout_ms: int = 10000
    connect_timeout_ms: int = 1000
    # Multiplexed connections per node (and per protocol/db combination in use).
    pool_size: int = 2
    # Idle dedicated connections kept per node for MULTI/blocking/pub-sub clients.
    dedicated_idle: int = 8
    reconnect_backoff_ms: int = 100
    reconnect_backoff_max_ms: int = 5000


@dataclass(frozen=True, slots=True)
class HealthConfig:
    interval_ms: int = 200
    probe_timeout_ms: int = 500
    # Probes failed in a row before a node is taken out (1 = at the first).
    failures_to_down: int = 1
    heartbeat: bool = True
    heartbeat_ms: int = 100
    heartbeat_prefix: str = "georedis:hb:"
    heartbeat_ttl_ms: int = 60000
    # How often the full INFO (memory, CPU, keyspace...) is polled for the metrics.
    info_interval_ms: int = 2000


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    max_lag_ms: int = 1000
    # A lagging replica gets reads back after staying under max_lag_ms this long.
    lag_recovery_ms: int = 1000
    fallback: Fallback = Fallback.PRIMARY
    read_your_writes: bool = False


@dataclass(frozen=True, slots=True)
class GeoIPConfig:
    database: str | None = None
    networks: tuple[tuple[IPNetwork, str], ...] = ()
    countries: tuple[tuple[str, str], ...] = ()  # ISO 3166 alpha-2 -> region
    continents: tuple[tuple[str, str], ...] = ()  # continent code (AS, EU, NA...) -> region


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    listen: Address = Address("127.0.0.1", 9121)
    slowlog_threshold_us: int = 10000
    slowlog_max_len: int = 128


@dataclass(frozen=True, slots=True)
class Config:
    proxy: ProxyConfig
    regions: tuple[RegionConfig, ...]
    backend: BackendConfig = field(default_factory=BackendConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    geoip: GeoIPConfig = field(default_factory=GeoIPConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # The file it came from, for status output and error messages ("" when built in code).
    source: str = ""

    def region(self, name: str) -> RegionConfig | None:
        for r in self.regions:
            if r.name == name:
                return r
        return None

    def all_nodes(self) -> tuple[tuple[str, Address], ...]:
        """Every configured node with its region, in file order."""
        return tuple((r.name, a) for r in self.regions for a in r.nodes)
