"""A real S3-compatible server for tests: moto's standalone server in its own process.

`S3Server.start()` runs `python -m moto.server` on a free loopback port, waits until it
answers HTTP, and creates `bucket`; leaving the `with` block kills it. Requests travel
over real HTTP through botocore, so retries, timeouts and error parsing are the code
under test too (no `mock_aws` patched into boto3).

Credentials: the proxy's S3 target reads boto3's default chain, as in production, so
tests give it the dummy ones moto accepts through the environment. `S3Server.env` is
that environment: the keys, a region, and no shared config files, profile, session
token or instance metadata, so a developer's ~/.aws never leaks in (or gets used). A
test in this process applies it with `monkeypatch` (`apply_env`); a proxy subprocess
gets it in `env=`. The helper's own client (`client()`) is given the keys explicitly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import boto3
import pytest

from tests.helpers.lifecycle import StopOnExit
from tests.helpers.topology import HOST, free_port

ACCESS_KEY = "georedis-test-key"
SECRET_KEY = "georedis-test-secret"
REGION = "us-east-1"

# None: the variable must be unset.
ENV: Mapping[str, str | None] = {
    "AWS_ACCESS_KEY_ID": ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
    "AWS_DEFAULT_REGION": REGION,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}


class S3ServerError(RuntimeError):
    """moto's server did not start in time; the message carries its output."""


def apply_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str | None] = ENV) -> None:
    for k, v in env.items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)


class S3Server(StopOnExit):
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path, bucket: str) -> None:
        self.proc = proc
        self.port = port
        self.log = log
        self.bucket = bucket
        self.endpoint_url = f"http://{HOST}:{port}"
        self.env = ENV

    @classmethod
    def start(cls, tmp: Path, bucket: str = "georedis-backups", timeout: float = 20.0) -> Self:
        # free_port can race another process for the port: try a few.
        for _ in range(3):
            port = free_port()
            log = tmp / f"moto-{port}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **{k: v for k, v in ENV.items() if v is not None}},
                )
            server = cls(proc, port, log, bucket)
            if server._wait(timeout):
                server.create_bucket(bucket)
                return server
            server.stop()
        raise S3ServerError(f"moto server did not start: {log.read_text(errors='replace')}")

    def _wait(self, timeout: float) -> bool:
        """True once it answers HTTP (any status); False if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                urllib.request.urlopen(self.endpoint_url + "/", timeout=0.5).close()
                return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def client(self) -> Any:
        """A plain boto3 client on this server, for checks behind the target's back."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
