"""Real Prometheus and Alertmanager processes for the alerting tests, and a webhook
receiver to catch what Alertmanager sends.

`start_prometheus` and `start_alertmanager` run Debian's binaries on free loopback ports
with storage of their own (a test's tmp dir) and wait for `/-/ready`; Alertmanager runs
without clustering (`--cluster.listen-address=`), as a single node. Each is a
`StopOnExit`: SIGTERM on the way out, SIGKILL if it lingers. `WebhookReceiver` is
http.server on its own thread: it keeps every JSON body POSTed to it, and `wait_for`
polls them against a deadline. `missing_binaries()` names what is not installed, for a
`pytest.skip` with the reason.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.helpers.lifecycle import StopOnExit
from tests.helpers.topology import free_port

HOST = "127.0.0.1"
# Debian names the Alertmanager binary prometheus-alertmanager; upstream, alertmanager.
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROMETHEUS = shutil.which("prometheus")


def missing_binaries() -> list[str]:
    missing = [] if PROMETHEUS else ["prometheus"]
    return missing + ([] if ALERTMANAGER else ["prometheus-alertmanager"])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body: bytes = r.read()
        return body


class Service(StopOnExit):
    """One monitoring process; its stdout and stderr go to `log`."""

    def __init__(self, name: str, args: list[str], port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 30.0) -> Service:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited ({self.proc.returncode}):\n{self.log_tail()}"
                )
            try:
                http_get(self.url + "/-/ready", timeout=2)
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout:g} s:\n{self.log_tail()}")

    def get_json(self, path: str) -> Any:
        return json.loads(http_get(self.url + path))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_prometheus(config_file: Path, data_dir: Path) -> Service:
    assert PROMETHEUS is not None, missing_binaries()
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [PROMETHEUS, f"--config.file={config_file}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address={HOST}:{port}"]  # fmt: skip
    return Service("prometheus", args, port, data_dir / "prometheus.log").wait_ready()


def start_alertmanager(config_file: Path, data_dir: Path, port: int) -> Service:
    """On `port`: the address the generated prometheus.yml sends alerts to."""
    assert ALERTMANAGER is not None, missing_binaries()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [ALERTMANAGER, f"--config.file={config_file}", f"--storage.path={data_dir}",
            f"--web.listen-address={HOST}:{port}", "--cluster.listen-address="]  # fmt: skip
    return Service("alertmanager", args, port, data_dir / "alertmanager.log").wait_ready()


class WebhookReceiver(StopOnExit):
    """Alertmanager's webhook target: every notification (its JSON body), in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.record(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test prints what it got when it fails

        self._server = ThreadingHTTPServer((HOST, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}/alerts"

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._bodies.append(body)

    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._bodies)

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """The first notification `pred` accepts, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [n for n in self.notifications() if pred(n)]
            if found:
                return found[0]
            time.sleep(0.1)
        got = json.dumps(self.notifications(), indent=1)[-4000:]
        raise AssertionError(f"no notification {what} within {timeout:g} s; got:\n{got}")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
