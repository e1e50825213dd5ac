"""EVAL_RO, EVALSHA_RO, FCALL_RO through georedis: Redis' own answers (issue 17, item 5).

They take the read path (a replica). A replica refuses a script that may write with
`READONLY You can't write against a read only replica.` before the check a primary makes,
where Redis answers `ERR Can not execute a script with write flag using *_ro command.`:
georedis sends such a refusal to the primary once, so the client reads what Redis would
say (`proxy/server/dispatch.py`, `read_script`). Each test compares with the text of a
direct call to the primary, and shows a direct replica's, which differs.
"""

from __future__ import annotations

import pytest
import redis

from tests.helpers.proxyrun import ProxyThread
from tests.helpers.topology import RedisTopology

LIBRARY = """#!lua name=ro
redis.register_function('w', function(keys, args) return redis.call('SET', keys[1], 'x') end)
redis.register_function{function_name='r', flags={'no-writes'},
                        callback=function(keys, args) return redis.call('GET', keys[1]) end}
"""
MAY_WRITE = "#!lua\nreturn redis.call('GET', KEYS[1])"  # a shebang without no-writes
WRITES = "return redis.call('SET', KEYS[1], 'x')"  # no shebang: refused as it writes


def _error(c: redis.Redis, *args: object) -> str:
    with pytest.raises(redis.ResponseError) as e:
        c.execute_command(*args)
    return str(e.value)


def _calls(c: redis.Redis, command: str) -> int:
    entry = c.info("commandstats").get(f"cmdstat_{command}")
    return int(entry["calls"]) if entry else 0


@pytest.fixture
def loaded(topology: RedisTopology, proxy: ProxyThread) -> redis.Redis:
    """A client of the proxy that has not written (its reads go to the region's replica),
    with the library loaded through another one and replicated."""
    proxy.client().function_load(LIBRARY)
    topology.wait_synced()
    return proxy.client()


@pytest.mark.parametrize("protocol", [2, 3])
def test_fcall_ro_of_a_function_that_may_write(
    topology: RedisTopology, proxy: ProxyThread, loaded: redis.Redis, protocol: int
) -> None:
    args = ("FCALL_RO", "w", 1, "k")
    direct = _error(topology.primary.client(), *args)
    assert direct == "Can not execute a script with write flag using *_ro command."
    replica = topology.node("ap-southeast-1", 1).client()
    assert _error(replica, *args).startswith("You can't write against a read only replica")
    assert _error(proxy.client(protocol=protocol), *args) == direct
    assert topology.primary.client().get("k") is None  # nothing ran


def test_eval_ro_and_evalsha_ro_of_a_script_that_may_write(
    topology: RedisTopology, proxy: ProxyThread, loaded: redis.Redis
) -> None:
    primary = topology.primary.client()
    sha = loaded.script_load(MAY_WRITE)  # georedis copies SCRIPT LOAD to the replicas
    for args in (("EVAL_RO", MAY_WRITE, 1, "k"), ("EVALSHA_RO", sha, 1, "k")):
        assert _error(loaded, *args) == _error(primary, *args)


def test_eval_ro_of_a_script_calling_set(
    topology: RedisTopology, proxy: ProxyThread, loaded: redis.Redis
) -> None:
    # Redis' words here are the same on a replica: passed on as the replica said them.
    args = ("EVAL_RO", WRITES, 1, "k")
    assert _error(loaded, *args) == _error(topology.primary.client(), *args)
    assert _error(loaded, *args).startswith("Write commands are not allowed from read-only")


def test_read_scripts_still_read_the_replica(
    topology: RedisTopology, proxy: ProxyThread, loaded: redis.Redis
) -> None:
    replica = topology.node("ap-southeast-1", 1).client()
    replica.config_resetstat()
    for _ in range(5):
        assert loaded.execute_command("FCALL_RO", "r", 1, "nothing") is None
        assert loaded.execute_command("EVAL_RO", "return 7", 0) == 7
    assert _calls(replica, "fcall_ro") == 5 and _calls(replica, "eval_ro") == 5
