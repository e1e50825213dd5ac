#!/usr/bin/env bash
# Install what the tests need and run them: the suite under uvloop, the integration tests
# again under the plain asyncio loop, then the type checker and the linter.
# Works on a fresh Debian/Ubuntu machine (as root, or with sudo available).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-benchmark >/dev/null || need_apt+=(redis-tools)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v nutcracker >/dev/null || need_apt+=(nutcracker)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
# A Debian redis-server package starts a daemon on 6379; the tests use their own ports.

python3 -m pip install -q -e '.[test]'

python3 -m pytest -q -p no:cacheprovider tests/
# The reply scanner's pure-Python fallback (used where the C accelerator is not built).
GEOREDIS_PURE_PYTHON=1 python3 -m pytest -q -p no:cacheprovider tests/unit/proxy
GEOREDIS_LOOP=asyncio python3 -m pytest -q -p no:cacheprovider tests/integration
python3 -m mypy
python3 -m ruff check .
python3 -m ruff format --check .
