"""TLS contexts: the clients' side (`[tls]`) and the backends' (`[backend] tls*`).

Python's `ssl` (OpenSSL) does the work; this module only turns the config into
contexts. TLS 1.3 is preferred (OpenSSL negotiates the highest both sides have);
`min_version` sets the floor. A context is loaded again in place by `reload` (SIGHUP):
connections already up keep the certificate they were made with, new handshakes get the
new one, nothing is dropped.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from config.model import BackendConfig, TlsConfig


@dataclass(frozen=True, slots=True)
class BackendTls:
    context: ssl.SSLContext
    server_name: str | None  # verified and sent as SNI; None: each node's host


_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"no": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def server_context(cfg: TlsConfig) -> ssl.SSLContext | None:
    """The listener's context; None when `[tls]` gives no certificate."""
    if cfg.cert_file is None:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[cfg.min_version]
    ctx.verify_mode = _CLIENT_AUTH[cfg.client_auth]
    load_server(ctx, cfg)
    return ctx


def load_server(ctx: ssl.SSLContext, cfg: TlsConfig) -> None:
    """(Re)load the certificate, its key and the CA for client certificates."""
    assert cfg.cert_file is not None and cfg.key_file is not None
    ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
    if cfg.ca_file is not None:
        ctx.load_verify_locations(cfg.ca_file)


def backend_tls(cfg: BackendConfig) -> BackendTls | None:
    """What every connection to the nodes uses (pools, dedicated, probes)."""
    ctx = backend_context(cfg)
    return None if ctx is None else BackendTls(ctx, cfg.tls_server_name)


def backend_context(cfg: BackendConfig) -> ssl.SSLContext | None:
    if not cfg.tls:
        return None
    ctx = ssl.create_default_context(cafile=cfg.tls_ca_file)
    if not cfg.tls_verify:
        # An operator's explicit choice (e.g. self-signed nodes on a private network).
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    load_backend(ctx, cfg)
    return ctx


def load_backend(ctx: ssl.SSLContext, cfg: BackendConfig) -> None:
    """(Re)load the client certificate the nodes may ask for, and the CA."""
    if cfg.tls_cert_file is not None and cfg.tls_key_file is not None:
        ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
    if cfg.tls_ca_file is not None:
        ctx.load_verify_locations(cfg.tls_ca_file)


def peer_common_name(peercert: object) -> str | None:
    """The CN of a verified client certificate (`getpeercert()`), if any."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str):
                return value
    return None
