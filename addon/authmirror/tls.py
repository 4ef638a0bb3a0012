"""TLS: serving https on the listener, and verifying upstream registries' certificates.

Upstream verification is on by default, for both paths that reach a registry: flows mitmproxy
forwards (its options `ssl_verify_upstream_trusted_ca` and `ssl_insecure`) and the mirror's own
calls (`httpclient`: auth discovery, tokens, tag lists). `tls.upstream_ca_bundle` replaces the
default trust store for both, as curl's --cacert does.

The listener serves https with `tls.certificate` and `tls.key` (mitmproxy's `certs` option, which
wants key and chain in one PEM: written to a private file in mitmproxy's confdir). Plain-http
requests are then refused, except the health checks a load balancer makes.
"""

from __future__ import annotations

import functools
import logging
import os
import ssl
from pathlib import Path
from typing import Any, Callable

from mitmproxy import http

from . import httpclient
from .errors import RegistryError
from .hardening_config import TlsConfig, read_file

log = logging.getLogger("authmirror.tls")

LISTENER_PEM = "authmirror-listener.pem"
PLAIN_HTTP_ALLOWED = ("/healthz", "/readyz")


# -- upstream verification --------------------------------------------------------------------


def upstream_ssl_context(config: TlsConfig) -> ssl.SSLContext | None:
    """The SSL context for the mirror's own upstream calls; None means the default (system store)."""
    if config.upstream_ca_bundle is None and config.upstream_verify:
        return None
    context = ssl.create_default_context(cafile=str(config.upstream_ca_bundle) if config.upstream_ca_bundle else None)
    if not config.upstream_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def upstream_http(config: TlsConfig) -> Callable[..., Any] | None:
    """`httpclient.request` with this config's trust settings, for `Upstream(http=...)`."""
    context = upstream_ssl_context(config)
    return functools.partial(httpclient.request, ssl_context=context) if context is not None else None


def mitmproxy_options(config: TlsConfig, confdir: str) -> dict[str, Any]:
    """The mitmproxy options this config implies (upstream trust, the listener's certificate)."""
    options: dict[str, Any] = {"ssl_insecure": not config.upstream_verify}
    if config.upstream_ca_bundle is not None:
        options["ssl_verify_upstream_trusted_ca"] = str(config.upstream_ca_bundle)
    if config.serves_https:
        options["certs"] = [f"*={write_listener_pem(config, Path(os.path.expanduser(confdir)))}"]
    return options


def write_listener_pem(config: TlsConfig, directory: Path) -> Path:
    """Key and chain in one file, as mitmproxy's `certs` option wants; readable by us only."""
    assert config.certificate is not None and config.key is not None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LISTENER_PEM
    tmp = directory / f".{LISTENER_PEM}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(read_file(config.key, "tls.key").rstrip() + b"\n" + read_file(config.certificate, "tls.certificate"))
    os.replace(tmp, path)
    return path


# -- listener -----------------------------------------------------------------------------------


def refuse_unconfigured_tls(data: Any, config: TlsConfig) -> None:
    """Without a listener certificate the mirror speaks plain http only.

    mitmproxy would otherwise answer a TLS ClientHello with a certificate from its own generated
    CA: clients that skip verification (`--tls-verify=false` tries https first) would get
    encryption nobody configured, at a CPU cost, and the rest a confusing certificate error. Not
    intercepting the connection makes the handshake fail at once (the pass-through it asks for
    is refused by the `server_connect` guard), and such clients fall back to http.
    """
    if not config.serves_https:
        data.ignore_connection = True


def require_https(flow: http.HTTPFlow, config: TlsConfig) -> None:
    """With a listener certificate configured, only health checks may come over plain http."""
    if not config.serves_https or flow.client_conn.tls_established:
        return
    if flow.request.path.split("?", 1)[0] in PLAIN_HTTP_ALLOWED:
        return
    raise RegistryError("UNSUPPORTED", "this mirror only accepts https; pull with an https:// registry address", status=400)
