# georedis: the proxy alone (Redis runs elsewhere). Build: docker build -t georedis .
# Run:  docker run -p 6380:6380 -p 9121:9121 -v $PWD/georedis.toml:/etc/georedis/georedis.toml georedis
# (/etc/georedis/georedis.toml is where the CLI looks without --config, so
#  `docker run ... georedis check-config` finds the same file; to bake a config into an
#  image instead: FROM georedis, then COPY georedis.toml /etc/georedis/georedis.toml)
# (in the config, listen on 0.0.0.0:6380 and put [metrics] listen on 0.0.0.0:9121)
FROM python:3.11-slim AS build
# A compiler for the optional C reply scanner (the wheel carries the built module).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY proxy ./proxy
COPY routing ./routing
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 georedis
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER georedis
EXPOSE 6380 9121
# SIGTERM drains: stop accepting, let in-flight replies finish, close.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import socket; s=socket.create_connection(('127.0.0.1', 6380), 2); s.sendall(b'PING\r\n'); assert s.recv(7) == b'+PONG\r\n'"
ENTRYPOINT ["georedis"]
CMD ["run", "--config", "/etc/georedis/georedis.toml"]
