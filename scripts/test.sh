#!/usr/bin/env bash
# Install what the tests need and run them: the suite under uvloop, the data path's
# integration tests again under the plain asyncio loop (all of them with GEOREDIS_FULL=1),
# then the type checker and the linter.
# Works on a fresh Debian/Ubuntu machine (as root, or with sudo available). Python packages
# go into the project's virtual environment, .venv (scripts/venv.sh), never into the
# system Python, which Debian 12 and Ubuntu 23.04+ refuse (PEP 668).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-benchmark >/dev/null || need_apt+=(redis-tools)
command -v redis-sentinel >/dev/null || need_apt+=(redis-sentinel)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need_apt+=(prometheus-alertmanager)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v nutcracker >/dev/null || need_apt+=(nutcracker)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt_install "${need_apt[@]}"
fi
# A Debian redis-server package starts a daemon on 6379 (redis-sentinel one on 26379); the
# tests use their own ports.

venv_install -e '.[test]'
py=.venv/bin/python

$py -m pytest -q -p no:cacheprovider tests/
# The reply scanner's pure-Python fallback (used where the C accelerator is not built).
GEOREDIS_PURE_PYTHON=1 $py -m pytest -q -p no:cacheprovider tests/unit/proxy
# The data path's integration tests again under the plain asyncio loop, whose transports,
# flow control and call_soon order differ from uvloop's. The operator-side tests (backup,
# alerting, capacity, deploy tooling, ...) drive the same data path and run once, under
# uvloop, which keeps CI under 30 minutes; GEOREDIS_FULL=1 runs every one of them here too.
asyncio_tests=(tests/integration)
if [ "${GEOREDIS_FULL:-0}" != 1 ]; then
  asyncio_tests=()
  for t in core robustness pipelines pubsub transactions failover tls bounds \
           backend_connections parser_transparency transparency tracking client_pause \
           scan_cursors scripts_ro lag_ryw geo_routing users workers cluster_proxy; do
    [ -f "tests/integration/test_$t.py" ] && asyncio_tests+=("tests/integration/test_$t.py")
  done
fi
GEOREDIS_LOOP=asyncio $py -m pytest -q -p no:cacheprovider "${asyncio_tests[@]}"
$py -m mypy
.venv/bin/lint-imports  # the layers of docs/architecture.md (contracts in pyproject.toml)
$py -m ruff check .
$py -m ruff format --check .
