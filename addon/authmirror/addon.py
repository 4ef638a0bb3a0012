"""The mitmproxy addon: options, configuration, and hooks that delegate to `handling`."""

from __future__ import annotations

import logging
from typing import Optional

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import server_hooks

from . import answers, handling, metrics, mitm_errors, tls
from .config import DEFAULT_CONFIG, load_config
from .context import get_context
from .errors import ConfigError, RegistryError
from .licenses import LicenseRefused, UnknownLicense
from .mirror import Mirror
from .ratelimit import client_address
from .timeouts import UpstreamTimeouts

log = logging.getLogger("authmirror")

# Reverse mode needs a target; every flow is re-pointed (or answered) before it could be used,
# and `server_connect` refuses anything that is not a configured upstream anyway.
PLACEHOLDER_TARGET = "http://127.0.0.1:9"
PLACEHOLDER_ADDRESS = ("127.0.0.1", 9)


class CredentialInjector:
    """Sets the vendor's Authorization as the very last `request` hook of the addon chain.

    The main addon runs early in the chain; mitmweb's view, intercepts and dumpers run after it.
    Injecting here means none of them ever holds the vendor credential; it is redacted again as
    soon as the request has gone upstream.
    """

    def __init__(self) -> None:
        self.pending: dict[str, str] = {}

    def queue(self, flow: http.HTTPFlow, authorization: str) -> None:
        self.pending[flow.id] = authorization

    def discard(self, flow: http.HTTPFlow) -> None:
        self.pending.pop(flow.id, None)

    def request(self, flow: http.HTTPFlow) -> None:
        authorization = self.pending.pop(flow.id, None)
        if authorization is not None and flow.response is None:
            flow.request.headers["Authorization"] = authorization


class AuthMirror:
    def __init__(self) -> None:
        self.mirror: Mirror | None = None
        self.injector = CredentialInjector()
        self.timeouts = UpstreamTimeouts(lambda: self.mirror.config.timeouts if self.mirror else None)
        self._injector_added = False

    def load(self, loader) -> None:
        loader.add_option(
            "authmirror_config",
            Optional[str],
            None,
            f"Path to authmirror's YAML config (default: {DEFAULT_CONFIG}).",
        )
        mitm_errors.install()

    def running(self) -> None:
        self._add_injector()

    def _add_injector(self) -> None:
        if not self._injector_added:
            ctx.master.addons.add(self.timeouts, self.injector)
            self._injector_added = True

    def done(self) -> None:
        if self._injector_added:
            ctx.master.addons.remove(self.injector)
            ctx.master.addons.remove(self.timeouts)
            self._injector_added = False
        if self.mirror:
            self.mirror.close()

    def configure(self, updated: set[str]) -> None:
        if "proxy_debug" in ctx.options and ctx.options.proxy_debug:
            # It logs every byte on the wire: licenses and the vendor's credentials included.
            raise exceptions.OptionsError("authmirror: proxy_debug logs raw traffic, secrets included; use -v (termlog_verbosity=debug) instead")
        if "authmirror_config" in updated:
            path = ctx.options.authmirror_config or str(DEFAULT_CONFIG)
            try:
                mirror = Mirror.build(load_config(path))
            except ConfigError as e:
                raise exceptions.OptionsError(f"authmirror: invalid config {path}: {e}") from None
            previous, self.mirror = self.mirror, mirror
            metrics.watch(mirror)
            if previous:
                previous.close()
            try:
                mirror.start()
            except ConfigError as e:
                raise exceptions.OptionsError(f"authmirror: invalid config {path}: {e}") from None
            log.info(
                "authmirror: %d app(s), %d registr%s, %d license(s) from %s",
                len(mirror.config.apps),
                len(mirror.upstreams),
                "y" if len(mirror.upstreams) == 1 else "ies",
                len(mirror.licenses.licenses),
                mirror.config.path,
            )
            self._set_proxy_mode(mirror)
            self._set_tls_options(mirror)
            self._add_injector()

    def _set_proxy_mode(self, mirror: Mirror) -> None:
        """Run as a reverse proxy on the config's `listen`, unless the user chose a mode."""
        if "connection_strategy" not in ctx.options:
            return  # not running inside a proxy (no proxyserver addon)
        if list(ctx.options.mode) != ["regular"]:
            if ctx.options.connection_strategy != "lazy":
                log.warning("authmirror: with your own --mode, also set connection_strategy=lazy")
            return
        host = ctx.options.listen_host or mirror.config.listen.host
        port = ctx.options.listen_port or mirror.config.listen.port
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        ctx.options.update(
            mode=[f"reverse:{PLACEHOLDER_TARGET}@{listen}"],
            connection_strategy="lazy",
            keep_host_header=True,
        )

    def _set_tls_options(self, mirror: Mirror) -> None:
        """Upstream certificate checks and the listener's certificate, from the config's `tls`."""
        if "ssl_insecure" not in ctx.options:
            return
        if ctx.options.ssl_insecure and mirror.config.tls.upstream_verify:
            log.warning("authmirror: ignoring ssl_insecure; set tls.upstream_verify: false in the config instead")
        if not mirror.config.tls.upstream_verify:
            log.warning("authmirror: tls.upstream_verify is false: upstream certificates are NOT checked")
        ctx.options.update(**tls.mitmproxy_options(mirror.config.tls, ctx.options.confdir))

    # -- hooks --------------------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if self.mirror is not None:
            handling.capture_credentials(flow)

    async def request(self, flow: http.HTTPFlow) -> None:
        mirror = self.mirror
        if mirror is None or flow.response is not None:
            return
        context = get_context(flow) or handling.capture_credentials(flow)
        try:
            tls.require_https(flow, mirror.config.tls)
            await handling.handle_request(mirror, flow, context, self.injector.queue)
        except RegistryError as e:
            self._answer_error(flow, context, e)
        except Exception:
            log.exception("authmirror: internal error handling %s (request %s)", flow.request.method, context.request_id)
            self._answer_error(flow, context, RegistryError("UNKNOWN", "internal error in the mirror; the vendor can look it up by request_id", status=500))
        if flow.response is not None:
            self.injector.discard(flow)
        elif context.forwarded:
            metrics.request_forwarded(context)

    def _answer_error(self, flow: http.HTTPFlow, context, error: RegistryError) -> None:
        context.error_code, context.error_message = error.code, error.message
        if isinstance(error, LicenseRefused) and error.license is not None:
            context.license = error.license  # refusals count against the customer in reports
        if isinstance(error, UnknownLicense) and self.mirror is not None:
            self.mirror.limiter.failed(client_address(flow))
        context.forwarded = False
        self.injector.discard(flow)
        flow.response = answers.error_answer(flow.request, error, context.request_id)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        context = get_context(flow)
        if self.mirror is None or context is None:
            return
        try:
            handling.handle_responseheaders(self.mirror, flow, context)
        except Exception:
            log.exception("authmirror: internal error on the answer to request %s", context.request_id)
            handling.replace_error(flow, context, RegistryError("UNKNOWN", "internal error in the mirror", status=500))

    def response(self, flow: http.HTTPFlow) -> None:
        context = get_context(flow)
        if self.mirror is None or context is None:
            return
        try:
            handling.handle_response(self.mirror, flow, context)
        except Exception:
            log.exception("authmirror: internal error finishing request %s", context.request_id)

    def error(self, flow: http.HTTPFlow) -> None:
        context = get_context(flow)
        self.injector.discard(flow)
        if self.mirror is None or context is None:
            return
        try:
            handling.handle_error(self.mirror, flow, context)
        except Exception:
            log.exception("authmirror: internal error on failed request %s", context.request_id)

    def tls_clienthello(self, data) -> None:
        if self.mirror is not None:
            tls.refuse_unconfigured_tls(data, self.mirror.config.tls)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Last line of defence: mitmproxy never connects anywhere but a configured upstream."""
        address = data.server.address
        if self.mirror is None or address is None or not self.mirror.may_connect(address[0], address[1]):
            if address == PLACEHOLDER_ADDRESS:  # a TLS connection passed through by tls_clienthello
                data.server.error = "authmirror: TLS handshake refused: this listener speaks plain http (no tls.certificate)"
            else:
                data.server.error = "authmirror: destination is not a configured upstream"
