"""Backup targets against real storage: a directory, and S3 on moto's server process.

The round-trip tests run on both targets (the `target` fixture), so the two agree on the
`Target` protocol; the S3-only tests check what only S3 has: multipart parts, prefixes,
leftover uploads, an unreachable endpoint, missing credentials. One moto server serves
the module, with a fresh bucket per test.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from proxy.backup.s3 import S3Target
from proxy.backup.targets import CHUNK, DirectoryTarget, Target, TargetError
from tests.helpers.s3server import ACCESS_KEY, SECRET_KEY, S3Server, apply_env
from tests.helpers.topology import HOST, free_port

MiB = 1 << 20
PREFIX = "backups/"

_buckets = itertools.count()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server.start(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(autouse=True)
def _s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dummy credentials, as boto3's default chain finds them (env), for every test."""
    apply_env(monkeypatch)


@pytest.fixture
def bucket(s3: S3Server) -> str:
    name = f"bucket-{next(_buckets)}"
    s3.create_bucket(name)
    return name


@pytest.fixture
def s3_target(s3: S3Server, bucket: str) -> S3Target:
    return S3Target(bucket, prefix=PREFIX, endpoint_url=s3.endpoint_url, region="us-east-1")


@pytest.fixture(params=["directory", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "directory":
        return DirectoryTarget(str(tmp_path / "backups"))
    t: S3Target = request.getfixturevalue("s3_target")
    return t


async def read_all(target: Target, name: str) -> bytes:
    out = bytearray()
    async for chunk in target.reader(name):
        assert 0 < len(chunk) <= CHUNK
        out += chunk
    return bytes(out)


def test_targets_satisfy_protocol() -> None:
    # Checked by mypy: both classes must match `Target` structurally.
    targets: list[Target] = [S3Target("b"), DirectoryTarget("/nonexistent")]
    assert targets[0].description == "s3://b/"
    assert S3Target("b", prefix="x/").description == "s3://b/x/"


# -- both targets ------------------------------------------------------------------


async def test_large_object_streams_in_uneven_chunks(target: Target, s3: S3Server) -> None:
    data = os.urandom(20 * MiB)
    sizes = itertools.cycle([1, 4095, MiB, 3 * MiB + 7, 65536, 5 * MiB - 3, 333_333])
    w = await target.writer("big.grbk")
    pos = 0
    while pos < len(data):
        n = next(sizes)
        await w.write(data[pos : pos + n])
        pos += n
    assert "big.grbk" not in await target.names()  # invisible until commit
    await w.commit()
    assert await read_all(target, "big.grbk") == data
    if isinstance(target, S3Target):
        # 20 MiB in 8 MiB parts: a multipart object of three parts (its ETag says so).
        head = s3.client().head_object(Bucket=target.bucket, Key=PREFIX + "big.grbk")
        assert head["ContentLength"] == len(data)
        assert head["ETag"].strip('"').endswith("-3")


async def test_small_and_empty_objects(target: Target) -> None:
    w = await target.writer("small.grbk")
    await w.write(b"hello ")
    await w.write(b"world")
    await w.commit()
    assert await read_all(target, "small.grbk") == b"hello world"
    assert await target.get("small.grbk") == b"hello world"

    w = await target.writer("empty.grbk")
    await w.commit()
    assert await target.get("empty.grbk") == b""
    assert await read_all(target, "empty.grbk") == b""


async def test_put_get_replace(target: Target) -> None:
    await target.put("a.json", b'{"v": 1}')
    await target.put("a.json", b'{"v": 2}')
    assert await target.get("a.json") == b'{"v": 2}'


async def test_names_and_delete(target: Target) -> None:
    assert await target.names() == []
    await target.put("a.json", b"a")
    await target.put("b.json", b"b")
    assert sorted(await target.names()) == ["a.json", "b.json"]
    await target.delete("a.json")
    await target.delete("a.json")  # already gone: fine
    await target.delete("never.json")
    assert await target.names() == ["b.json"]


async def test_missing_object_raises_target_error(target: Target) -> None:
    with pytest.raises(TargetError, match=r"nope\.grbk"):
        await read_all(target, "nope.grbk")
    with pytest.raises(TargetError, match=r"nope\.json"):
        await target.get("nope.json")


async def test_abort_leaves_no_object(target: Target) -> None:
    w = await target.writer("gone.grbk")
    await w.write(os.urandom(9 * MiB))  # past one S3 part: an upload is in progress
    await w.abort()
    await w.abort()  # twice is harmless
    assert await target.names() == []
    with pytest.raises(TargetError):
        await target.get("gone.grbk")


# -- S3 only -----------------------------------------------------------------------


async def test_abort_leaves_no_multipart_upload(s3: S3Server, s3_target: S3Target) -> None:
    w = await s3_target.writer("gone.grbk")
    await w.write(os.urandom(9 * MiB))
    client = s3.client()
    assert len(client.list_multipart_uploads(Bucket=s3_target.bucket).get("Uploads", [])) == 1
    await w.abort()
    assert client.list_multipart_uploads(Bucket=s3_target.bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=s3_target.bucket).get("KeyCount") == 0


async def test_names_only_under_prefix(s3: S3Server, s3_target: S3Target) -> None:
    client = s3.client()
    for key in ["other/x.json", "backupsX.json", "backups/", "backups/sub/y.json", "top.json"]:
        client.put_object(Bucket=s3_target.bucket, Key=key, Body=b"-")
    await s3_target.put("mine.json", b"m")
    assert await s3_target.names() == ["mine.json"]
    body = client.get_object(Bucket=s3_target.bucket, Key=PREFIX + "mine.json")["Body"]
    assert body.read() == b"m"


async def test_names_paginates(s3: S3Server, bucket: str) -> None:
    client = s3.client()  # thread-safe; moto takes ~7 ms a put, so put in parallel
    with ThreadPoolExecutor(16) as pool:  # list_objects_v2 returns at most 1000 keys a page
        list(pool.map(lambda i: client.put_object(Bucket=bucket, Key=f"p{i:04}"), range(1001)))
    t = S3Target(bucket, endpoint_url=s3.endpoint_url)
    assert sorted(await t.names()) == [f"p{i:04}" for i in range(1001)]


async def test_missing_bucket(s3: S3Server) -> None:
    t = S3Target("no-such-bucket", endpoint_url=s3.endpoint_url)
    with pytest.raises(TargetError, match="NoSuchBucket"):
        await t.put("a.json", b"a")


async def test_server_down_fails_fast() -> None:
    t = S3Target("b", endpoint_url=f"http://{HOST}:{free_port()}", connect_timeout=0.5, attempts=1)
    for op in (
        lambda: t.put("a.json", b"a"),
        lambda: t.get("a.json"),
        lambda: t.names(),
        lambda: read_all(t, "a.grbk"),
    ):
        start = time.monotonic()
        with pytest.raises(TargetError, match="s3://b/: cannot") as e:
            await op()
        assert time.monotonic() - start < 2  # refused at once; one attempt, no backoff
        assert SECRET_KEY not in str(e.value) and ACCESS_KEY not in str(e.value)
    w = await t.writer("a.grbk")
    await w.write(b"x")
    with pytest.raises(TargetError):
        await w.commit()
    await w.abort()


async def test_no_credentials(s3: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    t = S3Target(bucket, endpoint_url=s3.endpoint_url)
    with pytest.raises(TargetError, match="credentials"):
        await t.names()


def test_part_size_floor() -> None:
    with pytest.raises(ValueError, match="part size"):
        S3Target("b", part_size=1 << 20)


async def test_bad_names_refused(s3_target: S3Target) -> None:
    for name in ["", "a/b", ".hidden"]:
        with pytest.raises(TargetError, match="bad object name"):
            await s3_target.writer(name)
