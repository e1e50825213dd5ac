# georedis: the proxy alone (Redis runs elsewhere). Build: docker build -t georedis .
# Run:  docker run -p 6380:6380 -p 9121:9121 -v $PWD/georedis.toml:/etc/georedis/georedis.toml georedis
# (/etc/georedis/georedis.toml is where the CLI looks without --config, so
#  `docker run ... georedis check-config` finds the same file; to bake a config into an
#  image instead: FROM georedis, then COPY georedis.toml /etc/georedis/georedis.toml)
# (in the config, listen on 0.0.0.0:6380 and put [metrics] listen on 0.0.0.0:9121)
# `georedis generate-configs DIR --compose` builds this file into a whole stack, and
# `--kubernetes` runs it non-root with a read-only root filesystem.
FROM python:3.11-slim-bookworm AS build
# A compiler for the optional C reply scanner (the wheel carries the built module).
# Not pinned (DL3008): the build stage only, from the base image's own Debian release,
# and an exact version pin breaks this build at each Debian point release, when the
# mirror drops the old version.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY proxy ./proxy
COPY routing ./routing
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# A numeric user (DL3066): Kubernetes' runAsNonRoot can only verify a numeric one. The
# backup directory exists, owned by it, so a volume mounted there is writable.
RUN groupadd --system --gid 10001 georedis \
    && useradd --system --uid 10001 --gid 10001 --no-create-home georedis \
    && mkdir -p /var/lib/georedis/backups && chown 10001:10001 /var/lib/georedis/backups
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
EXPOSE 6380 9121
# SIGTERM drains: stop accepting, let in-flight replies finish, close.
STOPSIGNAL SIGTERM
# Alive when the client port answers a PING with any reply: -NOAUTH (users configured)
# counts too. Orchestrators use the metrics port's /healthz and /readyz instead.
HEALTHCHECK --interval=10s --timeout=2s CMD ["python", "-c", "import socket; s = socket.create_connection(('127.0.0.1', 6380), 2); s.sendall(b'PING\\r\\n'); assert s.recv(1) in (b'+', b'-')"]
ENTRYPOINT ["georedis"]
CMD ["run", "--config", "/etc/georedis/georedis.toml"]
