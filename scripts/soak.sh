#!/usr/bin/env bash
# The soak test of issue 9 (minutes, real processes, not part of scripts/test.sh): mixed load
# through georedis while primary and replicas are SIGSTOPped and SIGKILLed; exits non-zero on
# an unanswered request, a lost write, a healthy node marked down or RSS growth.
# Usage: bash scripts/soak.sh [--duration 180] [--json soak.json] [other flags: --help]
# Uses .venv/bin/python when scripts/test.sh has made it, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
exec "$py" -m tests.soak.soak "$@"
