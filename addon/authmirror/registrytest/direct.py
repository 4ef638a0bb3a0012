"""Check an image on the vendor's upstream registry directly, with the configured credentials:
resolve -> connect -> credentials -> /v2/ -> manifest -> platforms -> blobs."""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import httpclient
from ..config import Config, RegistryConfig, with_secrets
from ..errors import ConfigError, RegistryError
from ..hints import config_hint, failure_kind, hint_for, registry_context
from ..imagerefs import ImageReferenceError, ResolvedImage, mirror_reference, resolve_image
from ..redirects import check_storage_url
from ..tags import upstream_tags
from ..upstreams import Upstream, make_upstream
from ..upstreams.check import login
from .model import Failure, ImageResult, Step, StepFailed
from .pull import pull_steps, run_step
from .session import USER_AGENT, RepositoryMissing, Session

STEPS = ("resolve", "connect", "credentials", "v2", "manifest", "platforms", "blobs")


async def registry_test_http(method: str, url: str, headers=None, body=None, **kwargs: Any) -> httpclient.HttpResponse:
    """`Upstream`'s HTTP function with this tool's User-Agent, so pull logs tell checks from pulls."""
    return await httpclient.request(method, url, {"User-Agent": USER_AGENT, **(headers or {})}, body, **kwargs)


class DirectSession(Session):
    """The upstream registry, authenticated as the mirror would be (same Upstream code, same token cache)."""

    def __init__(self, upstream: Upstream, resolved: ResolvedImage, timeout: float, config: Config):
        registry = upstream.registry
        super().__init__(registry.origin, timeout, upstream.secret_values())
        self.upstream = upstream
        self.repository = resolved.repository
        self.registry_type = registry.type
        self._auth = None
        upstream_repository = upstream.upstream_repository(resolved.repository)
        self.name = upstream_repository
        self.hint_context = {
            **registry_context(registry, config.path, timeout),
            "repository": resolved.repository,
            "upstream_repository": upstream_repository,
            "tag": resolved.ref.tag_or_default,
            "reference": resolved.reference,
            "by_digest": bool(resolved.ref.digest),
        }

    async def authorization(self) -> str | None:
        try:
            self._auth = await self.upstream.authorization(self.repository)
        except RegistryError as e:
            raise StepFailed(self.from_error(e, "token")) from None
        return self._auth.header

    def refused(self) -> bool:
        return self._auth is not None and self.upstream.refused(self._auth)

    async def redirect_headers(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """Storage redirects are followed only where the mirror itself would follow, without credentials."""
        try:
            await check_storage_url(url, self.upstream.registry)
        except RegistryError as e:
            raise StepFailed(self.failure("storage_refused", e.message)) from None
        return {k: v for k, v in headers.items() if k.lower() != "authorization"}

    def from_error(self, error: RegistryError, what: str) -> Failure:
        """An error the shared Upstream code raised (auth dance, token minting) -> a diagnosis. Its
        message is worded for customers; the diagnosis uses what the registry itself said."""
        said = error.diagnostics
        if said is not None and said.network:
            return self.network_failure(said.network, said.message)
        if said is not None and said.status:
            return self.from_answer(said, what)
        # No answer from the registry: the mirror's own refusals, or the credential provider (AWS, Google).
        kind = failure_kind(error, what)
        retry_after = ((error.headers or {}).get("Retry-After") or "?") if kind == "rate_limited" else None
        return self.failure(kind, self.clean(error.message), retry_after=retry_after)

    async def tags(self) -> list[str] | None:
        try:
            return await upstream_tags(self.upstream, self.repository)
        except RegistryError as e:
            if e.code == "NAME_UNKNOWN":
                raise RepositoryMissing() from None
            return None
        except StepFailed:
            return None

    async def repositories(self) -> list[str] | None:
        """The registry's catalog, when these credentials may read it (Distribution with Basic auth can)."""
        try:
            response = await self.send("GET", "/v2/_catalog?n=1000", {"Accept": "application/json"})
            names = response.json().get("repositories") if response.status == 200 else None
        except (StepFailed, ValueError, AttributeError):
            return None
        if not isinstance(names, list):
            return None
        prefix = self.upstream.registry.path_prefix
        if prefix:
            return [n[len(prefix) + 1:] for n in names if isinstance(n, str) and n.startswith(prefix + "/")]
        return [n for n in names if isinstance(n, str)]


def registry_summary(registry: RegistryConfig) -> dict[str, str]:
    return {"app": registry.app, "name": registry.name, "type": registry.type, "url": registry.url}


async def check_direct(
    config: Config,
    image: str,
    *,
    registry_name: str | None = None,
    upstreams: dict[tuple[str, str], Upstream] | None = None,
    deep: bool = False,
    timeout: float = 15.0,
) -> ImageResult:
    """Every step for one image; the result says which step failed and why. Never raises for a failure."""
    result = ImageResult(image, "direct")
    upstreams = upstreams if upstreams is not None else {}
    try:
        resolved = await run_step(result, "resolve", lambda step: _resolve(step, config, image, registry_name, result, upstreams))
        registry = resolved.registry
        key = (registry.app, registry.name)
        if key not in upstreams:
            upstreams[key] = make_upstream(registry, timeout=timeout, http=registry_test_http)
        session = DirectSession(upstreams[key], resolved, timeout, config)
        await run_step(result, "connect", session.connect)
        await run_step(result, "credentials", lambda step: _credentials(step, session))
        await run_step(result, "v2", lambda step: _v2(step, session))
        await pull_steps(session, result, session.name, resolved.reference, deep)
    except StepFailed:
        pass
    return result.finish(STEPS)


async def _resolve(
    step: Step, config: Config, image: str, registry_name: str | None, result: ImageResult, upstreams: dict[tuple[str, str], Upstream]
) -> ResolvedImage:
    try:
        resolved = resolve_image(config, image, registry_name)
    except ImageReferenceError as e:
        kind = "bad_reference" if "invalid image reference" in e.message else "no_registry"
        failure = Failure(kind, e.message)
        failure.hint = hint_for("default", kind, config=str(config.path))
        raise StepFailed(failure) from None
    registry = resolved.registry
    result.registry = registry_summary(registry)
    result.repository = resolved.repository
    result.reference = resolved.reference
    result.mirror_ref = mirror_reference(config, registry, resolved.repository, resolved.ref.suffix())
    step.detail = (
        f"{registry.app}/{registry.name} ({registry.type}, {registry.url}) by {resolved.how}: "
        f"repository {resolved.repository}, {'digest' if resolved.ref.digest else 'tag'} {resolved.reference}"
    )
    known = upstreams.get((registry.app, registry.name))
    if known is not None:
        return dataclasses.replace(resolved, registry=known.registry)
    try:
        # Only the secrets of the registry this image needs: another's missing secret is no concern here.
        return dataclasses.replace(resolved, registry=with_secrets(config, registry))
    except ConfigError as e:
        raise StepFailed(Failure("config", str(e), hint=config_hint(e))) from None


async def _credentials(step: Step, session: DirectSession) -> None:
    upstream = session.upstream
    registry = upstream.registry
    static = type(upstream).credentials is Upstream.credentials
    try:
        creds = await upstream.credentials()
    except RegistryError as e:
        raise StepFailed(session.from_error(e, "credentials")) from None
    if creds is None:
        step.detail = "none: pulls anonymously"
    elif static:
        username = f"username from {registry.username.source}" if registry.username else "no username"
        step.detail = f"{username}, password from {registry.password.source if registry.password else 'nowhere'}"
    else:
        step.detail = f"obtained from {upstream.LABEL} (minted, cached as the mirror caches them)"


async def _v2(step: Step, session: DirectSession) -> None:
    """Log in as the mirror does for a pull of this repository (the same code `config check` uses)."""
    try:
        challenge = await login(session.upstream, session.repository)
    except RegistryError as e:
        raise StepFailed(session.from_error(e, "v2")) from None
    if challenge.scheme == "bearer":
        step.detail = f"Bearer token from {challenge.realm} (service {challenge.service or '-'}), accepted"
    elif challenge.scheme == "basic":
        step.detail = "Basic auth accepted"
    else:
        step.detail = "no authentication required"
