# Sourced by scripts/demo.sh and scripts/test.sh (from the repository root): the project's
# virtual environment in .venv. pip never installs into the system Python: Debian 12,
# Ubuntu 23.04+ and their containers refuse that ("externally-managed-environment",
# PEP 668), and a venv works the same where pip would have been allowed.

# Run a command as root: directly, or through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt-get install PACKAGES, quietly and without questions (env survives sudo's env_reset).
apt_install() {
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "$@"
}

venv_ok() {
  [ -x .venv/bin/python ] && [ -x .venv/bin/pip ] &&
    .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# Create .venv with python3 unless a usable one is there. Debian and Ubuntu ship venv's
# pip bootstrap (ensurepip) apart from python3, in python3-venv: installed when missing.
ensure_venv() {
  venv_ok && return 0
  if ! command -v python3 >/dev/null; then
    echo "georedis needs python3 (3.11 or later) on PATH" >&2
    return 1
  fi
  if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "georedis needs Python 3.11 or later; python3 is $(python3 -V 2>&1)" >&2
    return 1
  fi
  rm -rf .venv
  if python3 -m venv .venv >/dev/null 2>&1; then
    return 0
  fi
  rm -rf .venv
  if ! command -v apt-get >/dev/null; then
    echo "python3 -m venv failed: install your system's package for Python venvs" >&2
    return 1
  fi
  local minor
  minor=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  echo "python3 -m venv needs python3-venv: installing it with apt" >&2
  # python3-venv pulls the venv of Debian's default python3; python3.X-venv is the one
  # of the python3 on PATH, where that is another of the distribution's versions.
  apt_install python3-venv "python${minor}-venv" || apt_install python3-venv
  python3 -m venv .venv
}

# ensure_venv, then pip install ARGS into it (e.g. -e '.[demo]').
venv_install() {
  ensure_venv
  .venv/bin/python -m pip install -q "$@"
}
