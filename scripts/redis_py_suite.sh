#!/usr/bin/env bash
# redis-py's own test suite, directly against redis-server and then through georedis with
# `read_your_writes = true` and `[policy] refuse = []` (issue 17): prints the redis-py
# version, how many tests pass directly, how many of those pass through georedis, the
# ratio and every test that differs. Not part of CI (it takes minutes).
#
#   bash scripts/redis_py_suite.sh [options of scripts/redis_py_suite.py]
#   bash scripts/redis_py_suite.sh --no-asyncio            # the synchronous tests only
#   bash scripts/redis_py_suite.sh --files tests/test_commands.py -k "client"
#   bash scripts/redis_py_suite.sh --phase compare         # compare the last run again
#
# The suite is the sdist of the redis-py version the project's Python has installed
# (`pip download redis==<v> --no-binary :all:`, which holds tests/), unpacked under
# $GEOREDIS_SUITE_DIR (default /tmp/georedis-redis-py-suite) and reused. The pytest
# plugins it needs are installed into the project's Python when missing. Needs
# redis-server (7.0) on PATH. Reports in $GEOREDIS_SUITE_DIR/run: {direct,proxy}.*.xml and
# their .log, differences.txt (full messages), proxy/main/georedis.log.
#
# georedis runs from a snapshot of a commit (GEOREDIS_REV, default HEAD: `git archive`
# into $GEOREDIS_SUITE_DIR/georedis-<sha>, with the built C speedups copied when
# _speedups.c is unchanged), so edits in progress in the working tree do not break the
# run; GEOREDIS_REV=worktree runs the working tree as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then
  py="$PYTHON"
elif [ -x .venv/bin/python ]; then
  py=.venv/bin/python
else
  py=python3
fi
base="${GEOREDIS_SUITE_DIR:-/tmp/georedis-redis-py-suite}"
command -v redis-server >/dev/null || { echo "redis-server is not on PATH" >&2; exit 2; }

version="$("$py" -m pip show redis 2>/dev/null | sed -n 's/^Version: //p')"
if [ -z "$version" ]; then
  echo "redis-py is not installed in $py" >&2
  exit 2
fi
suite="$base/redis-$version"
if [ ! -f "$suite/tests/conftest.py" ]; then
  mkdir -p "$base"
  "$py" -m pip download --quiet --no-deps --no-binary :all: -d "$base" "redis==$version"
  tar -xzf "$base/redis-$version.tar.gz" -C "$base"
  if [ ! -f "$suite/tests/conftest.py" ]; then
    echo "the redis $version sdist has no tests/ (see $base)" >&2
    exit 2
  fi
fi

# What the suite's conftest and the selected files import, beyond redis-py itself.
need=()
"$py" -c 'import pytest_asyncio' 2>/dev/null || need+=(pytest-asyncio)
"$py" -c 'import pytest_timeout' 2>/dev/null || need+=(pytest-timeout)
"$py" -c 'import packaging' 2>/dev/null || need+=(packaging)
"$py" -c 'import pytest' 2>/dev/null || need+=(pytest)

if [ "${#need[@]}" -gt 0 ]; then
  echo "installing into $py: ${need[*]}"
  "$py" -m pip install --quiet "${need[@]}"
fi

rev="${GEOREDIS_REV:-HEAD}"
if [ "$rev" = worktree ]; then
  tree="$PWD"
else
  sha="$(git rev-parse --short=12 "$rev^{commit}")"
  tree="$base/georedis-$sha"
  if [ ! -f "$tree/proxy/cli.py" ]; then
    mkdir -p "$tree.tmp"
    git archive "$sha" | tar -x -C "$tree.tmp"
    if git diff --quiet "$sha" -- proxy/resp/_speedups.c; then
      cp proxy/resp/_speedups*.so "$tree.tmp/proxy/resp/" 2>/dev/null || true
    fi
    mv "$tree.tmp" "$tree"
  fi
  echo "georedis: commit $sha ($rev), from $tree"
fi

exec "$py" scripts/redis_py_suite.py --georedis-tree "$tree" --suite "$suite" --work "$base/run" --python "$py" "$@"
