"""The assembled mirror: everything built from one config, swapped in as a whole on reconfigure."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from .clientauth import ClientAuthenticator
from .config import Config, RegistryConfig
from .hardening_config import LimitsConfig
from .errors import RegistryError
from .licenses import LicenseStore
from .pulllog import PullLog
from .ratelimit import FailedLicenseLimiter
from .redirects import RedirectSealer, derive_key
from .routing import Route
from .tls import upstream_http
from .tokens import TokenIssuer, load_public_key, load_signing_key
from .upstreams import Upstream, make_upstream

if TYPE_CHECKING:
    from .cache.pipeline import Cache

log = logging.getLogger("authmirror")

STORAGE_DESTINATION_TTL = 600.0


@dataclass
class Mirror:
    config: Config
    licenses: LicenseStore
    issuer: TokenIssuer
    authenticator: ClientAuthenticator
    upstreams: dict[tuple[str, str], Upstream]
    pull_log: PullLog
    sealer: RedirectSealer
    clock: Callable[[], float] = time.time
    # (host, port) -> until when mitmproxy may connect there (blob storage we were redirected to)
    storage_destinations: dict[tuple[str, int], float] = field(default_factory=dict)
    limiter: FailedLicenseLimiter = field(default_factory=lambda: FailedLicenseLimiter(LimitsConfig()))
    cache: Cache | None = None  # the verified blob cache (config `cache:`); started by start()

    @classmethod
    def build(cls, config: Config, clock: Callable[[], float] = time.time) -> "Mirror":
        """Build every service; raises ConfigError (naming the key) when something is unusable."""
        licenses = LicenseStore(config.licenses, clock)
        licenses.load()
        private_key = load_signing_key(config.token.signing_key)
        previous = tuple(load_public_key(spec) for spec in config.token.previous_keys)
        issuer = TokenIssuer(private_key, config.token.ttl_seconds, previous, clock)
        # The mirror's own upstream calls get the same deadline and trust settings as forwarded flows.
        connection: dict = {"timeout": config.timeouts.headers}
        if (http := upstream_http(config.tls)) is not None:
            connection["http"] = http
        upstreams = {(r.app, r.name): make_upstream(r, clock=clock, **connection) for r in config.registries()}
        pull_log = PullLog(config.pull_log, config.pull_log_rotation)
        pull_log.open()
        sealer = RedirectSealer(derive_key(private_key, b"blob redirect"), clock=clock)
        limiter = FailedLicenseLimiter(config.limits)
        mirror = cls(config, licenses, issuer, ClientAuthenticator(licenses, issuer), upstreams, pull_log, sealer, clock, limiter=limiter)
        if config.cache is not None:
            from .cache.pipeline import Cache

            mirror.cache = Cache.build(config.cache, private_key, clock)
        return mirror

    def start(self) -> None:
        """Start what runs beside the proxy (the cache and its file server); raises ConfigError."""
        if self.cache is not None:
            self.cache.start()

    def close(self) -> None:
        self.pull_log.close()
        if self.cache is not None:
            self.cache.close()

    def registry_for(self, route: Route) -> tuple[RegistryConfig, Upstream]:
        app = self.config.apps.get(route.app)
        if app is None:
            raise RegistryError("NAME_UNKNOWN", f"unknown app '{route.app}'", detail={"app": route.app})
        registry = app.registry(route.registry)
        if registry is None:
            raise RegistryError(
                "NAME_UNKNOWN",
                f"app '{route.app}' has no registry '{route.registry}'",
                detail={"app": route.app, "registry": route.registry},
            )
        return registry, self.upstreams[(registry.app, registry.name)]

    def realm(self, domain: str) -> str:
        """The token realm a client should use: on a custom domain, that domain."""
        if domain:
            scheme = self.config.public_url.split("://", 1)[0]
            port = self.config.public_url.split("://", 1)[1].split("/", 1)[0].rpartition(":")[2]
            suffix = f":{port}" if port.isdigit() and port not in ("80", "443") else ""
            return f"{scheme}://{domain}{suffix}/v2/token"
        return f"{self.config.public_url}/v2/token"

    def allow_storage(self, host: str, port: int) -> None:
        self.storage_destinations[(host.lower(), port)] = self.clock() + STORAGE_DESTINATION_TTL

    def may_connect(self, host: str, port: int) -> bool:
        """Only configured upstreams (and storage they redirected us to) are ever contacted."""
        host = host.lower()
        for registry in self.config.registries():
            if registry.host == host and registry.port == port:
                return True
        if self.cache is not None and self.cache.may_connect(host, port):
            return True  # the cache's own file server (serve: proxy)
        until = self.storage_destinations.get((host, port))
        return until is not None and until > self.clock()
