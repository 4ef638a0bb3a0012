"""The upstream interface: how the mirror authenticates to a vendor registry.

Every registry type is an `Upstream`. The generic part lives here and covers the Distribution
auth dance every registry speaks: probe `/v2/`, then send Basic credentials directly or, on a
Bearer challenge, fetch a token from the realm with those credentials (cached per realm, service
and scope). A type only says where its credentials come from (`credentials()`), plus its quirks.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, ClassVar
from urllib.parse import urlencode, urlsplit

from ..config import RegistryConfig
from ..errors import ConfigError, UpstreamDiagnostics, UpstreamError, translate_upstream_error
from .. import httpclient
from .challenge import NO_AUTH, Challenge, pick_challenge
from .tokencache import CachedToken, TokenCache

log = logging.getLogger("authmirror.upstream")

HttpRequest = Callable[..., Awaitable[httpclient.HttpResponse]]
DISCOVERY_TTL = 3600.0


@dataclass(frozen=True)
class UpstreamAuth:
    """The Authorization to send upstream for one request, and what to invalidate if it is refused."""

    header: str | None = field(repr=False)  # the vendor's credential: never in a repr or log
    token: CachedToken | None = None
    cache_key: Any = None

    def fresh(self, now: float) -> bool:
        return self.token is None or self.token.fresh(now)


class Upstream:
    """Base for all registry types. Subclasses override `credentials` and the class attributes."""

    TYPE: ClassVar[str] = ""
    LABEL: ClassVar[str] = "registry"  # how messages name this kind of registry
    DEFAULT_URL: ClassVar[str | None] = None
    NEEDS_USERNAME: ClassVar[bool] = False
    NEEDS_PASSWORD: ClassVar[bool] = False
    # type-specific config keys: name -> (kind: "str" | "secret" | "bool", required)
    SETTINGS: ClassVar[dict[str, tuple[str, bool]]] = {}
    # token realm hosts this type is known to use besides the registry host
    KNOWN_AUTH_HOSTS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        registry: RegistryConfig,
        *,
        clock: Callable[[], float] = time.time,
        http: HttpRequest = httpclient.request,
        timeout: float = httpclient.DEFAULT_TIMEOUT,
    ):
        self.registry = registry
        self.clock = clock
        self.http = http
        self.timeout = timeout
        self.tokens = TokenCache(clock)
        self._challenge: Challenge | None = None
        self._challenge_at = 0.0
        self._discovery_lock = asyncio.Lock()

    @classmethod
    def validate(cls, registry: RegistryConfig) -> None:
        """Check type-specific config at load time; raise ConfigError naming the key."""

    @property
    def name(self) -> str:
        return self.registry.name

    def upstream_repository(self, repository: str) -> str:
        """The repository name upstream: the url's path prefix, then the client's repository."""
        prefix = self.registry.path_prefix
        return f"{prefix}/{repository}" if prefix else repository

    def secret_values(self) -> tuple[str, ...]:
        """Secrets to scrub from anything shown (config secrets plus minted tokens)."""
        return self.registry.secret_values()

    # -- credentials --------------------------------------------------------------------------

    async def credentials(self) -> tuple[str, str] | None:
        """Username and password for Basic auth or for the token realm; None for anonymous."""
        if self.registry.password is None:
            return None
        username = self.registry.username.value if self.registry.username else ""
        return username, self.registry.password.value

    def invalidate_credentials(self) -> None:
        """Forget minted credentials (ECR/Google tokens); static ones have nothing to forget."""

    # -- the auth dance -----------------------------------------------------------------------

    async def authorization(self, repository: str) -> UpstreamAuth:
        """The Authorization header for a pull of `repository` (as the client named it)."""
        challenge = await self.challenge()
        if challenge.scheme == "none":
            return UpstreamAuth(None)
        if challenge.scheme == "basic":
            creds = await self.credentials()
            return UpstreamAuth(basic_header(*creds) if creds else None)
        scope = f"repository:{self.upstream_repository(repository)}:pull"
        key = (challenge.realm, challenge.service, scope)
        token = await self.tokens.get(key, lambda: self.fetch_token(challenge, scope))
        return UpstreamAuth(f"Bearer {token.value}", token, key)

    def refused(self, auth: UpstreamAuth) -> bool:
        """The upstream answered 401 to `auth`. Returns True when retrying with new credentials may help."""
        now = self.clock()
        if auth.cache_key is not None and auth.token is not None:
            self.tokens.invalidate(auth.cache_key, auth.token.value)
        if auth.fresh(now):
            # Even fresh credentials were refused: maybe the upstream changed its auth scheme.
            self._challenge = None
            self.invalidate_credentials()
            return False
        return True

    async def challenge(self) -> Challenge:
        """How the upstream wants to be authenticated, learnt from `GET /v2/` (cached)."""
        if self._challenge is not None and self.clock() - self._challenge_at < DISCOVERY_TTL:
            return self._challenge
        async with self._discovery_lock:
            if self._challenge is None or self.clock() - self._challenge_at >= DISCOVERY_TTL:
                self._challenge = await self.discover()
                self._challenge_at = self.clock()
            return self._challenge

    async def discover(self) -> Challenge:
        response = await self.call("GET", f"{self.registry.origin}/v2/", what="reach")
        if response.status == 401:
            challenge = pick_challenge(response.header_all("WWW-Authenticate"))
            if challenge is None:
                raise self.error(
                    "UNAVAILABLE", "answered 401 without a usable WWW-Authenticate challenge",
                    diagnostics=UpstreamDiagnostics.from_answer(401, response.body, secrets=self.secret_values()),
                )
            if challenge.scheme == "bearer":
                self.check_realm(challenge.realm)
            return challenge
        if response.status < 300:
            return NO_AUTH
        if response.status == 404 and self.registry.password is not None:
            # Some registries (old Quay, proxies) have no /v2/ answer: use Basic as configured.
            return Challenge("basic")
        raise self.translate(response, "manifest")

    def check_realm(self, realm: str) -> None:
        """Vendor credentials go only to the registry host and its allowed token hosts."""
        parts = urlsplit(realm)
        host = (parts.hostname or "").lower()
        allowed = {self.registry.host, *self.registry.auth_hosts, *self.KNOWN_AUTH_HOSTS}
        if host not in allowed:
            raise self.error(
                "UNAVAILABLE",
                f"token realm is on host {host!r}, which is not allowed to receive the vendor's credentials; "
                f"add it to auth_hosts of registry '{self.name}' if it is the registry's own token service",
            )
        if parts.scheme != "https" and not (parts.scheme == "http" and self.registry.scheme == "http"):
            raise self.error("UNAVAILABLE", "token realm is not https; refusing to send credentials in clear text")

    async def fetch_token(self, challenge: Challenge, scope: str) -> tuple[str, float | None]:
        params = {"scope": scope} if scope else {}  # no scope: a login, as `docker login` does
        if challenge.service:
            params["service"] = challenge.service
        separator = "&" if "?" in challenge.realm else "?"
        url = f"{challenge.realm}{separator}{urlencode(params)}"
        headers = {"Accept": "application/json"}
        creds = await self.credentials()
        if creds:
            headers["Authorization"] = basic_header(*creds)
        response = await self.call("GET", url, headers=headers, what="get a token from")
        if response.status != 200:
            raise self.translate(response, "token")
        token, data = token_from_answer(response)
        if token is None:
            raise self.error("UNAVAILABLE", "token service answered without a token")
        expires_in = data.get("expires_in")
        return token, float(expires_in) if isinstance(expires_in, (int, float)) and expires_in > 0 else None

    async def get(self, repository: str, path: str, headers: dict[str, str] | None = None, *, kind: str, method: str = "GET") -> httpclient.HttpResponse:
        """GET (or HEAD) `path` on the upstream for small answers (tag lists, referrers, the cache's
        revalidations), with the vendor's credentials; retried once with new credentials when a
        cached one is refused. Error statuses are returned as they are: the caller decides what a
        404 means."""
        for _attempt in range(2):
            auth = await self.authorization(repository)
            request_headers = dict(headers or {})
            if auth.header:
                request_headers["Authorization"] = auth.header
            response = await self.call(method, f"{self.registry.origin}{path}", headers=request_headers, what="reach")
            if response.status != 401 or not self.refused(auth):
                return response
        return response

    # -- helpers ------------------------------------------------------------------------------

    async def call(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpclient.HttpResponse:
        """An HTTP call to this upstream; network failures become 502/504 naming the registry."""
        try:
            return await self.http(method, url, timeout=self.timeout, **kwargs)
        except httpclient.HttpFailure as e:
            status = 504 if e.kind == "timeout" else 502
            said = UpstreamDiagnostics(network=e.kind, message=str(e))
            raise self.error("UNAVAILABLE", f"could not {what} it: {e}", status=status, diagnostics=said) from None

    def error(self, code: str, message: str, status: int = 502, diagnostics: UpstreamDiagnostics | None = None) -> UpstreamError:
        return UpstreamError(
            code,
            f"upstream registry '{self.name}' ({self.LABEL}): {message}",
            status=status,
            detail={"registry": self.name},
            diagnostics=diagnostics,
        )

    def translate(self, response: httpclient.HttpResponse, kind: str) -> UpstreamError:
        error = translate_upstream_error(
            response.status,
            response.body,
            registry=self.name,
            kind=kind,
            retry_after=response.header("Retry-After"),
            hosts=(self.registry.host, *self.registry.auth_hosts),
            secrets=self.secret_values(),
        )
        return error  # type: ignore[return-value]


def token_from_answer(response: httpclient.HttpResponse) -> tuple[str | None, dict]:
    """The token in a token service's JSON answer (`token`, or OAuth2's `access_token`), and the answer."""
    try:
        data = response.json()
        token = data.get("token") or data.get("access_token")
    except (ValueError, AttributeError):
        return None, {}
    return (token if isinstance(token, str) and token else None), data


def basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def require_setting(registry: RegistryConfig, key: str, message: str) -> None:
    if key not in registry.settings:
        raise ConfigError(f"{registry.key}.{key}", message)
