#!/usr/bin/env bash
# CI smoke test of the README's first command, run as a new user would run it: in a fresh
# clone, with Debian's /usr/bin/python3 first on PATH (externally managed: pip into it is
# refused, PEP 668), the command brings the demo up; the proxy answers PING and serves a
# write; Ctrl-C (SIGINT to its process group) stops it with exit status 0 and nothing left
# running. The whole run, installation included, is bounded by SMOKE_TIMEOUT_S.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
limit_s=${SMOKE_TIMEOUT_S:-600}

# The README's demo command, read from the README so that the two cannot differ: the
# first line of its first ```sh block that is not a comment.
cmd=$(awk '/^```sh$/ {inside = 1; next} /^```$/ {if (inside) exit}
           inside && !/^[[:space:]]*#/ && NF {print; exit}' README.md)
if [ -z "$cmd" ]; then
  echo "smoke: no command in README.md's first sh block" >&2
  exit 1
fi

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "smoke: FAILED: $*" >&2
  echo "--- stdout" >&2; cat "$work/out" >&2 || true
  echo "--- stderr (last 40 lines)" >&2; tail -n 40 "$work/err" >&2 || true
  exit 1
}

if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
  git clone -q "$repo" "$work/georedis"  # what is committed, nothing built or installed
else  # a checkout without git metadata: its files, minus what builds and installs make
  mkdir "$work/georedis"
  tar -C "$repo" --exclude=./.venv --exclude=./build --exclude='*.egg-info' \
    --exclude='*.so' --exclude=__pycache__ -cf - . | tar -C "$work/georedis" -xf -
fi
cd "$work/georedis"
export PATH="/usr/bin:$PATH"
echo "smoke: in a fresh clone ($work/georedis), python3 is $(command -v python3), $(python3 -V 2>&1)"
if python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
then
  echo "smoke: that python3 is externally managed (PEP 668): pip install into it is refused"
fi
echo "smoke: running the README's command: $cmd"

# Job control: the command gets a process group of its own (its pid), to signal as a
# terminal's Ctrl-C does, and a SIGINT that background jobs would otherwise ignore.
# The files exist before the job starts: the loop below may read them before the job's
# own redirections have run (a race CI lost once).
: >"$work/out"
: >"$work/err"
set -m
bash -c "$cmd" >"$work/out" 2>"$work/err" &
pid=$!
set +m
deadline=$((SECONDS + limit_s))

# The demo prints `Connect:    redis-cli -p PORT` once it serves: the port it chose.
port=""
while [ -z "$port" ]; do
  kill -0 "$pid" 2>/dev/null || fail "the command exited before the demo came up"
  [ "$SECONDS" -lt "$deadline" ] || fail "the demo did not come up within ${limit_s}s"
  port=$(sed -n 's/^Connect: *redis-cli -p \([0-9][0-9]*\)$/\1/p' "$work/out")
  [ -n "$port" ] || sleep 1
done
echo "smoke: the demo serves on 127.0.0.1:$port after ${SECONDS}s"
# What it said about ports it could not have (taken by something else on this machine).
sed -n 's/^georedis demo: \(.* is taken.*\)/smoke: the demo said: \1/p' "$work/out"

# One inline command per connection; its first reply line, without the CR.
ask() {
  local reply=""
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf '%s\r\n' "$1" >&3
  IFS= read -r -t 5 reply <&3 || true
  exec 3<&- 3>&-
  printf '%s' "${reply%$'\r'}"
}
pong=""
while [ "$pong" != "+PONG" ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "no PONG from 127.0.0.1:$port"
  pong=$(ask PING || true)
  [ "$pong" = "+PONG" ] || sleep 0.5
done
[ "$(ask 'SET georedis:smoke ok')" = "+OK" ] || fail "SET through the proxy did not answer +OK"
echo "smoke: PING answered PONG, SET answered OK"
base=$(.venv/bin/python -c 'import sys; print(sys.base_prefix)')
echo "smoke: .venv is built on $base's Python; .venv/bin/georedis --version:"
.venv/bin/georedis --version | sed 's/^/  /'

kill -INT -- "-$pid"
stop_by=$((SECONDS + 30))
while kill -0 "$pid" 2>/dev/null; do
  [ "$SECONDS" -lt "$stop_by" ] || fail "the demo did not stop within 30s of SIGINT"
  sleep 0.2
done
rc=0
wait "$pid" || rc=$?
pid_done=$pid
pid=""
[ "$rc" -eq 0 ] || fail "the demo exited with status $rc after SIGINT"
grep -q "stopped the proxy and all redis-server processes" "$work/err" ||
  fail "the demo did not say it stopped its servers"
if pgrep -g "$pid_done" >/dev/null; then
  fail "processes left running in the demo's group: $(pgrep -g "$pid_done" -a)"
fi
if grep -q Traceback "$work/err"; then
  fail "a traceback on stderr"
fi
echo "smoke: OK: stopped cleanly (exit status 0, no process left)"
