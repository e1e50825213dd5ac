"""Backup as an operator runs it: restore into the live primary under load, VERIFY, S3,
the schedule across two proxies, and a diskless (EOF-marked) source."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from tests.helpers.backup import (
    backup,
    backup_key,
    backup_toml,
    fill_mixed,
    pairs,
    proxy_cmd,
    user_keys,
)
from tests.helpers.failover import WriteLoad, missing_on
from tests.helpers.proxyrun import FAST_HEALTH, ProxyThread, config_from_toml, wait_for
from tests.helpers.s3server import S3Server, apply_env
from tests.helpers.topology import RedisNode, RedisTopology, free_port

__all__ = ["backup_key"]


def _proxy(topology: RedisTopology, backup_section: str) -> ProxyThread:
    toml = topology.config_toml(free_port(), extra=FAST_HEALTH + backup_section)
    return ProxyThread(config_from_toml(toml))


def _ready(p: ProxyThread, replicas: int = 3) -> None:
    def ok() -> bool:
        app = p.app
        return bool(
            app and app.topo.primary and sum(n.eligible for n in app.topo.nodes) >= replicas
        )

    wait_for(lambda: p.call(ok), 10, "a primary and eligible replicas")


def test_restore_into_the_primary_holds_writes_and_the_replicas_follow(
    topology: RedisTopology, tmp_path: Path, backup_key: str
) -> None:
    primary = topology.primary.client()
    fill_mixed(primary, 5000, prefix="old")
    topology.wait_synced()
    with _proxy(topology, backup_toml(str(tmp_path))) as p:
        _ready(p)
        ident = backup(p.port)["id"]
        epoch_before = p.call(lambda: p.app.topo.epoch)  # type: ignore[union-attr]
        primary.set("after-backup", "gone after the restore")
        load = WriteLoad(p, "during")
        load.start()
        time.sleep(0.5)
        started = len(load.acked)
        result = pairs(proxy_cmd(p.port, "RESTORE", ident))
        after_reply = len(load.acked)
        time.sleep(0.5)
        load.finish()
        assert result["restored"] == ident and result["keys"] == 5000
        assert load.write_errors == [], load.write_errors[:3]  # held, not refused
        assert started > 10 and len(load.acked) > after_reply
        assert primary.get("after-backup") is None
        assert primary.exists("old:0") and primary.exists("old:4999")
        # Every write acknowledged after the restore began waited for it, then ran on
        # the restored primary; so did every later one.
        assert missing_on(topology.primary, [_tail(load, after_reply)]) == []
        wait_for(lambda: p.call(lambda: p.app.topo.epoch) > epoch_before, 5, "a new epoch")  # type: ignore[union-attr]
        topology.wait_synced()
        for node in topology.replicas():
            c = node.client()
            wait_for(lambda c=c: c.exists("old:4999") == 1 and c.get("after-backup") is None,
                     10, f"{node} to follow the restored primary")  # fmt: skip
        assert not [k for k in primary.scan_iter(match="georedis:lock:*")]


def _tail(load: WriteLoad, start: int) -> WriteLoad:
    view = WriteLoad(0, load.prefix)
    view.acked = load.acked[start:]
    return view


def test_verify_records_its_result_in_the_manifest(
    topology: RedisTopology, tmp_path: Path, backup_key: str
) -> None:
    fill_mixed(topology.primary.client(), 3000)
    topology.wait_synced()
    with _proxy(topology, backup_toml(str(tmp_path))) as p:
        _ready(p)
        ident = backup(p.port)["id"]
        result = pairs(proxy_cmd(p.port, "BACKUP", "VERIFY", ident, timeout=120))
        assert result["result"] == "ok" and int(result["sampled"]) > 0, result
        status = pairs(proxy_cmd(p.port, "BACKUP", "STATUS", ident))
        assert status["verified"] == "ok"
        stats = p.call(lambda: p.app.stats)  # type: ignore[union-attr]
        assert stats.verifies_ok == 1 and stats.backups_ok == 1


def test_s3_target_backup_and_restore(topology: RedisTopology, tmp_path: Path, backup_key: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    fill_mixed(topology.primary.client(), 3000)
    topology.wait_synced()
    with S3Server.start(tmp_path) as s3:
        apply_env(monkeypatch)
        section = backup_toml(
            str(tmp_path / "unused"),
            f's3_bucket = "{s3.bucket}"\ns3_prefix = "redis/"\n'
            f's3_endpoint_url = "{s3.endpoint_url}"\n',
        )
        with _proxy(topology, section) as p:
            _ready(p)
            ident = backup(p.port)["id"]
            keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket)["Contents"]}
            assert keys == {f"redis/{ident}.grbk", f"redis/{ident}.json"}
            assert not (tmp_path / "unused").exists()
            topology.primary.client().flushall()
            pairs(proxy_cmd(p.port, "RESTORE", ident))
            c = topology.primary.client()
            assert len(user_keys(c)) == 3000


def test_schedule_one_backup_per_slot_across_two_proxies(
    topology: RedisTopology, tmp_path: Path, backup_key: str
) -> None:
    section = backup_toml(str(tmp_path), 'schedule = "every 10s"\n')
    with _proxy(topology, section) as a, _proxy(topology, section) as b:
        _ready(a)
        _ready(b)
        # Both proxies wake at the same slot; one lock per slot decides.
        wait_for(lambda: len(list(tmp_path.glob("*.json"))) >= 1, 25, "a scheduled backup")
        time.sleep(1.5)  # the other proxy, had it run too, would have written by now
        slots = {int(k.rsplit(b":", 1)[1]) for k in topology.primary.client().scan_iter(
            match="georedis:lock:backup:*")}  # fmt: skip
        assert len(list(tmp_path.glob("*.json"))) == len(slots)
        taken = [p.call(lambda p=p: p.app.stats.backups_ok) for p in (a, b)]  # type: ignore[union-attr]
        assert sum(taken) == len(slots)
        # Each proxy's "last backup" figure knows of it, whichever took it.
        for p in (a, b):
            wait_for(lambda p=p: p.call(lambda: p.app.stats.backup_last[0]) > 0, 5,  # type: ignore[union-attr]
                     "the last backup's time")  # fmt: skip


def test_backup_from_a_diskless_source(topology: RedisTopology, tmp_path: Path,
                                       backup_key: str) -> None:  # fmt: skip
    fill_mixed(topology.primary.client(), 2000)
    topology.wait_synced()
    eu = topology.node("eu-west-1")
    eu.client().config_set("repl-diskless-sync", "yes")
    eu.client().config_set("repl-diskless-sync-delay", "1")  # keepalives before the payload
    with _proxy(topology, backup_toml(str(tmp_path))) as p:
        _ready(p)
        status = backup(p.port, "FROM", "eu-west-1")
        assert status["keys"] == 2000
        assert str(eu.port) in status["source"]
        detail = pairs(proxy_cmd(p.port, "BACKUP", "STATUS", status["id"]))
        assert detail["rdb_version"] == 10 and detail["crc64"]
        # The EOF mark is framing, not RDB: the backup restores (and its size is right).
        scratch = RedisNode("scratch", free_port(), tmp_path)
        scratch.wait_ready()
        try:
            result = pairs(proxy_cmd(p.port, "RESTORE", status["id"], "TO", scratch.address))
            assert result["keys"] == 2000
            assert len(user_keys(scratch.client())) == 2000
        finally:
            scratch.stop()


def test_bad_requests_get_clear_errors(topology: RedisTopology, tmp_path: Path,
                                       backup_key: str) -> None:  # fmt: skip
    with _proxy(topology, backup_toml(str(tmp_path))) as p:
        _ready(p)
        for args, match in [
            (("BACKUP", "FROM", "mars-1"), "unknown region or node"),
            (("BACKUP", "FROM", "127.0.0.1:1"), "not one of the configured nodes"),
            (("BACKUP", "STATUS", "nope"), "no backup"),
            (("RESTORE", "20200101T000000Z-abcdef"), "no backup"),
            (("RESTORE", "x", "TO"), "PROXY RESTORE"),
            (("BACKUP", "SIDEWAYS"), "PROXY BACKUP"),
        ]:
            with pytest.raises(redis.ResponseError, match=match):
                proxy_cmd(p.port, *args)
