"""The S3 target: objects under a prefix in one bucket, over boto3.

boto3 is synchronous, so every call runs in a thread (`asyncio.to_thread`); the loop that
serves clients never waits on S3. One client per target, made on first use inside a
worker thread (building it reads JSON models and credential files: blocking work), and
shared by all later calls: clients are thread-safe, sessions are not, so the session
lives only long enough to make it.

Credentials come from boto3's default chain (environment, shared files, instance or
container roles), never from our config file, and no message we raise carries them:
`_error` keeps only the error code and S3's own message.

botocore is untyped here; `Any` stays inside `_run`/`_call` and the writer's part list.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from proxy.backup.targets import CHUNK, TargetError, Writer

log = logging.getLogger("georedis.backup")

# S3 refuses a multipart upload whose parts (all but the last) are under 5 MiB.
MIN_PART = 5 << 20

T = TypeVar("T")


def _error(what: str, e: Exception) -> TargetError:
    """One place that turns a botocore failure into our words."""
    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = err.get("Code", "error")
        text = err.get("Message") or ""
        return TargetError(f"{what}: {code}" + (f" ({text})" if text else ""))
    # BotoCoreError messages name the endpoint or the missing setting, never a key.
    return TargetError(f"{what}: {e}")


class S3Target:
    """Objects as `prefix + name` in `bucket`; a writer's object appears only on commit."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        part_size: int = 8 << 20,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        attempts: int = 5,
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"S3 part size must be at least {MIN_PART} bytes")
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self._endpoint_url = endpoint_url
        self._region = region
        self._config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            # Standard mode retries throttling and transient 5xx/network errors with
            # backoff. botocore's "max_attempts" counts retries only; "total_max_attempts"
            # counts the first try too, as `attempts` does.
            retries={"mode": "standard", "total_max_attempts": attempts},
            # S3-compatible stores (MinIO, Ceph, moto) want path-style URLs, and many
            # reject the CRC trailers botocore adds by default since 1.36. On AWS itself
            # keep both defaults.
            s3={"addressing_style": "path"} if endpoint_url else None,
            request_checksum_calculation="when_required" if endpoint_url else "when_supported",
            response_checksum_validation="when_required" if endpoint_url else "when_supported",
        )
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def description(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        # The directory target's rule, so a name valid on one target is valid on both.
        if not name or "/" in name or name.startswith("."):
            raise TargetError(f"bad object name {name!r}")
        return self.prefix + name

    def _make_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                session = boto3.session.Session()
                self._client = session.client(
                    "s3",
                    endpoint_url=self._endpoint_url,
                    region_name=self._region,
                    config=self._config,
                )
            return self._client

    async def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        """`fn(client)` in a thread; a botocore failure becomes a TargetError naming `what`."""
        try:
            return await asyncio.to_thread(lambda: fn(self._make_client()))
        except (BotoCoreError, ClientError) as e:
            raise _error(f"{self.description}: cannot {what}", e) from e

    async def _call(self, what: str, method: str, **kwargs: Any) -> Any:
        return await self._run(what, lambda c: getattr(c, method)(Bucket=self.bucket, **kwargs))

    async def writer(self, name: str) -> Writer:
        return _MultipartWriter(self, name, self._key(name))

    async def reader(self, name: str) -> AsyncIterator[bytes]:
        what = f"read {name}"
        body = (await self._call(what, "get_object", Key=self._key(name)))["Body"]
        try:
            while chunk := await self._run(what, lambda _: bytes(body.read(CHUNK))):
                yield chunk
        finally:
            # Closing an unfinished body drops its connection rather than reading it out.
            body.close()

    async def put(self, name: str, data: bytes) -> None:
        await self._call(f"write {name}", "put_object", Key=self._key(name), Body=data)

    async def get(self, name: str) -> bytes:
        return b"".join([chunk async for chunk in self.reader(name)])

    async def names(self) -> list[str]:
        def scan(client: Any) -> list[str]:
            pages = client.get_paginator("list_objects_v2")
            # With Delimiter, keys in sub-"directories" come back as CommonPrefixes,
            # which we skip: they are not objects of this target.
            found: list[str] = []
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"):
                for obj in page.get("Contents", ()):
                    name = str(obj["Key"])[len(self.prefix) :]
                    if name and not name.startswith("."):
                        found.append(name)
            return found

        return await self._run("list", scan)

    async def delete(self, name: str) -> None:
        # S3 answers a delete of a missing key with success, as the protocol asks.
        await self._call(f"delete {name}", "delete_object", Key=self._key(name))


class _MultipartWriter:
    """Buffers one part at a time: memory stays at about `part_size` whatever the size.

    The multipart upload is created with the first full part, so an object smaller than
    a part costs one `put_object` at commit and leaves nothing behind if never committed.
    """

    def __init__(self, target: S3Target, name: str, key: str) -> None:
        self._t = target
        self._name = name
        self._key = key
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._done = False

    def _check_open(self) -> None:
        if self._done:
            raise TargetError(f"{self._t.description}: {self._name} already finished")

    async def write(self, data: bytes) -> None:
        self._check_open()
        view = memoryview(data)
        while view:
            take = min(len(view), self._t.part_size - len(self._buf))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == self._t.part_size:
                await self._upload_part()

    async def _upload_part(self) -> None:
        what = f"write {self._name}"
        if self._upload_id is None:
            resp = await self._t._call(what, "create_multipart_upload", Key=self._key)
            self._upload_id = str(resp["UploadId"])
        # Hand the buffer over and start a new one, so only one part is held at a time.
        part, self._buf = self._buf, bytearray()
        number = len(self._parts) + 1
        resp = await self._t._call(
            what,
            "upload_part",
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=part,
        )
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    async def commit(self) -> None:
        self._check_open()
        what = f"write {self._name}"
        if self._upload_id is None:
            await self._t._call(what, "put_object", Key=self._key, Body=self._buf)
        else:
            # The last part may be short (or absent when the size was a multiple of it).
            if self._buf:
                await self._upload_part()
            await self._t._call(
                what,
                "complete_multipart_upload",
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._done = True
        self._buf = bytearray()

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buf = bytearray()
        if self._upload_id is None:
            return
        try:
            await self._t._call(
                f"abort {self._name}",
                "abort_multipart_upload",
                Key=self._key,
                UploadId=self._upload_id,
            )
        except Exception as e:
            # Its parts stay billed until a bucket lifecycle rule
            # (AbortIncompleteMultipartUpload) removes them; say so, never raise.
            log.warning("%s; its parts remain until the bucket's lifecycle removes them", e)
