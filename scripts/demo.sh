#!/usr/bin/env bash
# The README's first command: install georedis into a project virtual environment (.venv,
# see scripts/venv.sh) and run `georedis demo` from it. Options are passed to the demo:
#   bash scripts/demo.sh --port 6390
# By hand: python3 -m venv .venv && .venv/bin/pip install -e '.[demo]' && .venv/bin/georedis demo
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/venv.sh
source scripts/venv.sh
venv_install -e '.[demo]'
# exec: Ctrl-C and SIGTERM reach the demo itself, which stops every process it started.
exec .venv/bin/georedis demo "$@"
