"""The typed, immutable configuration model: one source for fields, defaults and rules.

Every section of the TOML file maps to one frozen dataclass here; the loader
(`config.loader`) is the only place that builds them, after validating every field.
Each field is written once, here: its name is the key in the file, its default is the
value a file that leaves it out gets, and its annotation (a `config.kinds` marker where
the type alone does not say it) is the rule the loader checks it against; `config.spec`
derives the loader's key tables from these dataclasses. So adding a setting is one edit
in this file (and a line in the example file, which a test holds to these defaults).

Like every module in config/, this one imports nothing from proxy/ or routing/.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, TypeAlias

from config.aclrules import AclRules
from config.kinds import Between, Count, Millis, OneOf, Positive, Special, TablesOf
from config.receivers import EmailReceiver, PagerDutyReceiver, SlackReceiver, WebhookReceiver
from config.schedule import Schedule

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
class OutputLimit:
    """Redis' client-output-buffer-limit: a client whose unsent replies exceed `hard`
    bytes, or `soft` bytes for `soft_seconds`, is disconnected (0: that limit is off)."""

    hard: int
    soft: int
    soft_seconds: int

    def __str__(self) -> str:
        return f"{self.hard} {self.soft} {self.soft_seconds}"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    listen: Address = Address("127.0.0.1", 6380)
    # Where this proxy runs; the region of clients whose location is unknown.
    region: str = ""
    # Worker processes sharing the listen port (SO_REUSEPORT); 0 means one per core.
    workers: Annotated[int, Special.WORKERS] = 1
    proxy_protocol: bool = False
    # Peers allowed to send the header; the loader turns an empty list into loopback.
    proxy_protocol_from: Annotated[tuple[IPNetwork, ...], Special.PEERS] = LOOPBACK_NETWORKS
    proxy_protocol_timeout_ms: Millis = 3000
    max_clients: Positive = 10000
    # Close a client idle this many seconds, as Redis' `timeout` (0: never). Subscribed
    # and blocked clients are not idle, as in Redis.
    timeout_s: Count = 0
    # Failed AUTH from one client address: past this many within the window, AUTH from
    # it is refused unchecked until the window passes (0: no limit).
    auth_max_failures: Count = 10
    auth_failure_window_s: Positive = 60
    # How long shutdown waits for in-flight replies before closing everything.
    drain_timeout_ms: Millis = 5000
    # Request limits, as Redis' proto-max-bulk-len and its multibulk/inline limits.
    max_bulk_len: Positive = 512 * 1024 * 1024
    max_multibulk_len: Positive = 1024 * 1024
    max_inline_len: Positive = 64 * 1024
    # Redis' client-query-buffer-limit: what one pending command may hold before it is
    # complete; past it the client gets an error and is disconnected.
    client_query_buffer_limit: Annotated[int, Special.MEMORY] = 1024**3
    # Redis' own default for normal clients is no limit; a proxy that multiplexes many
    # clients onto its memory cannot afford that. Pub/sub: Redis' default.
    client_output_buffer_limit_normal: Annotated[OutputLimit, Special.OUTPUT_LIMIT] = OutputLimit(
        256 << 20, 64 << 20, 60
    )
    client_output_buffer_limit_pubsub: Annotated[OutputLimit, Special.OUTPUT_LIMIT] = OutputLimit(
        32 << 20, 8 << 20, 60
    )
    log_format: LogFormat = LogFormat.TEXT
    log_level: Annotated[str, OneOf(("debug", "info", "warning", "error"))] = "info"


@dataclass(frozen=True, slots=True)
class RegionConfig:
    name: Annotated[str, Special.REGION_NAME]
    latitude: Annotated[float, Between(-90.0, 90.0)]
    longitude: Annotated[float, Between(-180.0, 180.0)]
    nodes: Annotated[tuple[Address, ...], Special.NODES]


@dataclass(frozen=True, slots=True)
class BackendConfig:
    username: str | None = None
    # Name of the environment variable holding the password; never the password itself.
    password_env: Annotated[str | None, Special.ENV_NAME] = None
    timeout_ms: Millis = 1000
    # Deadline of scripts and functions (EVAL*, EVALSHA*, FCALL*): above Redis' busy
    # threshold (busy-reply-threshold, 5 s), so a long script is answered, not failed.
    script_timeout_ms: Millis = 10000
    connect_timeout_ms: Millis = 1000
    # Multiplexed connections per node (and per protocol/db combination in use).
    pool_size: Positive = 2
    # Idle dedicated connections kept per node for MULTI/blocking/pub-sub clients.
    dedicated_idle: Count = 8
    reconnect_backoff_ms: Millis = 100
    reconnect_backoff_max_ms: Millis = 5000
    # TLS to the nodes: pools, dedicated connections and probes. The CA that signed the
    # nodes' certificates (unset: the system's), the name to verify and send as SNI
    # (unset: each node's host), and a client certificate if the nodes ask for one.
    tls: bool = False
    tls_ca_file: Annotated[str | None, Special.FILE] = None
    tls_cert_file: Annotated[str | None, Special.FILE] = None
    tls_key_file: Annotated[str | None, Special.FILE] = None
    tls_server_name: str | None = None
    tls_verify: bool = True


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS for clients. With a certificate and no `listen`, [proxy] listen speaks TLS;
    with `listen`, TLS is served there and plaintext stays on [proxy] listen."""

    cert_file: Annotated[str | None, Special.FILE] = None
    key_file: Annotated[str | None, Special.FILE] = None
    # The CA client certificates must be signed by (client_auth optional or required).
    ca_file: Annotated[str | None, Special.FILE] = None
    client_auth: Annotated[str, OneOf(("no", "optional", "required"))] = "no"
    # The oldest version accepted; 1.3 is preferred whenever the client has it.
    min_version: Annotated[str, OneOf(("1.2", "1.3"))] = "1.2"
    listen: Address | None = None
    # Log a client in as the [[users]] user named by its certificate's CN (as Valkey's
    # tls-auth-clients-user), without AUTH.
    user_from_cn: bool = False


@dataclass(frozen=True, slots=True)
class HealthConfig:
    interval_ms: Millis = 200
    probe_timeout_ms: Millis = 500
    # Probes failed in a row before a node is taken out (1 = at the first).
    failures_to_down: Positive = 1
    heartbeat: bool = True
    heartbeat_ms: Millis = 100
    heartbeat_prefix: str = "georedis:hb:"
    heartbeat_ttl_ms: Millis = 60000
    # How often the full INFO (memory, CPU, keyspace...) is polled for the metrics.
    info_interval_ms: Millis = 2000


@dataclass(frozen=True, slots=True)
class FailoverConfig:
    """`PROXY FAILOVER` and the write hold (docs/architecture.md, "Failover")."""

    # How long a write may be held while the primary changes (a failover this proxy runs,
    # or a -READONLY from a primary demoted by another): past it, an error that says the
    # write was not executed.
    hold_ms: Millis = 5000
    # What all held writes of this process may hold at once; past it, new writes get
    # that error at once instead of waiting.
    hold_max_bytes: Annotated[int, Special.MEMORY] = 64 * 1024**2
    # How long a write waits for a primary when the snapshot has none (0: refused at
    # once). Rides out the moment a primary changes between two probe rounds.
    hold_without_primary_ms: Count = 2000
    # Redis' FAILOVER TIMEOUT: how long the old primary pauses writes for the target to
    # catch up (other proxies' writes wait that long, so keep it below their timeout_ms).
    pause_ms: Millis = 500


@dataclass(frozen=True, slots=True)
class SentinelConfig:
    """Sentinel mode (docs/architecture.md, "Failover"): set `master_name` to turn it on."""

    # The name the sentinels monitor the primary under (`sentinel monitor <name> ...`).
    master_name: str | None = None
    addresses: Annotated[tuple[Address, ...], Special.NODES] = ()
    username: str | None = None
    # The sentinels' password (their requirepass), from this environment variable.
    password_env: Annotated[str | None, Special.ENV_NAME] = None


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Redis Cluster mode (docs/architecture.md, "Cluster"): set `seeds` to turn it on.

    The seeds are only where the slot map is first asked for; the nodes that serve come
    from the cluster itself, and `[[regions]] nodes` gives each listed one its region."""

    seeds: Annotated[tuple[Address, ...], Special.NODES] = ()
    # How often the slot map is read again when nothing asked for it (a MOVED, a node
    # that failed a probe and a failover each ask at once).
    refresh_ms: Millis = 5000
    # What georedis tells clients it is. "standalone": one Redis (CLUSTER, READONLY and
    # READWRITE refused). "cluster": a cluster whose masters (two, owning every slot) are
    # all this georedis, at the address each client reached, for cluster-aware clients
    # (routing/presentcluster.py).
    present_as: Annotated[str, OneOf(("standalone", "cluster"))] = "standalone"
    # With present_as = "cluster": the address the replies name instead of the one each
    # client reached, for a georedis behind a load balancer or NAT (the socket's own
    # address would send clients around the balancer), as Redis' cluster-announce-ip/port.
    announce: Address | None = None


@dataclass(frozen=True, slots=True)
class Retention:
    """How many backups `[backup.retention]` keeps: the newest good one of each of the
    last `daily` days, `weekly` ISO weeks and `monthly` months (UTC); never the newest."""

    daily: int = 30
    weekly: int = 8
    monthly: int = 12


@dataclass(frozen=True, slots=True)
class BackupConfig:
    """`PROXY BACKUP` / `RESTORE` and the schedule (docs/architecture.md, "Backup and restore")."""

    # The local target (the default). Unused for storage when s3_bucket is set.
    directory: str = "/var/lib/georedis/backups"
    # The 32-byte master key (64 hex digits or base64), from this environment variable.
    key_env: Annotated[str, Special.ENV_NAME] = "GEOREDIS_BACKUP_KEY"
    # S3 or an S3-compatible store (MinIO, GCS interoperability) instead of the
    # directory; credentials from the AWS environment/files/instance role, never here.
    s3_bucket: str | None = None
    s3_prefix: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    # When this proxy takes a backup on its own; with several proxies one runs each slot.
    schedule: Annotated[Schedule | None, Special.SCHEDULE] = None
    retention: Annotated[Retention, Special.RETENTION] = field(default_factory=Retention)
    # Scheduled backups keep archiving the replication stream after their snapshot, for
    # PROXY RESTORE <id> AT <unix-ms> (point in time); one archive segment per this long.
    archive: bool = False
    archive_segment_ms: Millis = 60000
    # The redis-server binary PROXY BACKUP VERIFY starts as a scratch server.
    redis_server: str = "redis-server"


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    max_lag_ms: Millis = 1000
    # A lagging replica gets reads back after staying under max_lag_ms this long.
    # A hold-down, not a deadline: 0 (take reads back at once) is meaningful.
    lag_recovery_ms: Count = 1000
    fallback: Fallback = Fallback.PRIMARY
    read_your_writes: bool = False


@dataclass(frozen=True, slots=True)
class GeoIPConfig:
    database: Annotated[str | None, Special.MMDB] = None
    networks: Annotated[tuple[tuple[IPNetwork, str], ...], Special.NETWORK_TABLE] = ()
    # ISO 3166 alpha-2 country code -> region, and continent code (AS, EU, NA...) -> region.
    countries: Annotated[tuple[tuple[str, str], ...], Special.COUNTRY_TABLE] = ()
    continents: Annotated[tuple[tuple[str, str], ...], Special.CONTINENT_TABLE] = ()


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    enabled: bool = True
    listen: Address = Address("127.0.0.1", 9121)
    # Same meaning as Redis' slowlog-log-slower-than: 0 logs every command.
    slowlog_threshold_us: Count = 10000
    slowlog_max_len: Positive = 128
    # Authentication for /metrics, / and /status.json: a bearer token, or basic auth with
    # this user; each secret from an environment variable. Unset: open (loopback only by
    # default). HTTPS with the [tls] certificate when `tls`.
    auth_token_env: Annotated[str | None, Special.ENV_NAME] = None
    auth_user: str | None = None
    auth_password_env: Annotated[str | None, Special.ENV_NAME] = None
    tls: bool = False
    # Connections open at once; a new one past it gets 503 and is closed at once.
    max_connections: Positive = 64


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """What `georedis generate-configs` writes for alerting: alertmanager.yml's receivers
    and timings, and where prometheus.yml sends alerts (docs/cli.md, generate-configs)."""

    alertmanager: Address = Address("127.0.0.1", 9093)
    # Alertmanager's own defaults: wait for a group's first alerts, then at most one
    # notification per group per interval, and a reminder while it still fires.
    group_wait_s: Positive = 30
    group_interval_s: Positive = 300
    repeat_interval_s: Positive = 14400
    # Every rule's `for:` times this (0: fire at the first evaluation), for a staging
    # stack or a test that cannot wait the production minutes.
    for_scale: Annotated[float, Between(0.0, 100.0)] = 1.0
    email: Annotated[tuple[EmailReceiver, ...], TablesOf(EmailReceiver)] = ()
    slack: Annotated[tuple[SlackReceiver, ...], TablesOf(SlackReceiver)] = ()
    pagerduty: Annotated[tuple[PagerDutyReceiver, ...], TablesOf(PagerDutyReceiver)] = ()
    webhook: Annotated[tuple[WebhookReceiver, ...], TablesOf(WebhookReceiver)] = ()


# Refused through georedis unless the operator allows them (README, "Security"): what
# empties or rewrites the data set, rewrites the backends' configuration or users, or
# stalls a node (KEYS, SAVE). Not Redis' whole @dangerous category: INFO, ROLE, CLIENT,
# SLOWLOG are in it and clients and health checks need them.
DEFAULT_REFUSE = (
    "flushall", "flushdb", "config|set", "config|rewrite", "config|resetstat", "debug",
    "shutdown", "keys", "swapdb", "migrate", "save", "bgsave", "bgrewriteaof", "module",
    "acl|setuser", "acl|deluser", "acl|save", "acl|load",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    # `refuse = []` allows them all (e.g. for a test suite that flushes between tests).
    refuse: Annotated[tuple[str, ...], Special.COMMAND_NAMES] = DEFAULT_REFUSE


@dataclass(frozen=True, slots=True)
class UserConfig:
    """One `[[users]]` table: a client login, with Redis' ACL rules (README, "Users")."""

    name: Annotated[str, Special.REGION_NAME]
    # Redis' ACL SETUSER words, without passwords; a user with none is "off -@all", as in
    # Redis, so a table that forgets its rules grants nothing.
    rules: Annotated[AclRules, Special.ACL_RULES] = field(default_factory=AclRules)
    # Several allowed: rotation (the old and the new password both log in meanwhile).
    password_sha256: Annotated[tuple[str, ...], Special.SHA256_LIST] = ()
    password_env: Annotated[str | None, Special.ENV_NAME] = None
    # What its connections start with once logged in (unset: the proxy's own), as if
    # the client had sent PROXY CONSISTENCY / MAXLAG / REGION itself.
    read_your_writes: bool | None = None
    max_lag_ms: Count | None = None
    region: Annotated[str | None, Special.REGION_NAME] = None
    # Connections logged in as this user at once, per worker (0: no limit of its own).
    max_clients: Count = 0


@dataclass(frozen=True, slots=True)
class Config:
    proxy: ProxyConfig
    regions: tuple[RegionConfig, ...]
    users: tuple[UserConfig, ...] = ()
    backend: BackendConfig = field(default_factory=BackendConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    sentinel: SentinelConfig = field(default_factory=SentinelConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)
    geoip: GeoIPConfig = field(default_factory=GeoIPConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
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
