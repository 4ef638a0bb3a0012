"""Check an image on the vendor's upstream registry directly, with the configured credentials:
resolve -> connect -> credentials -> /v2/ -> manifest -> platforms -> blobs."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from ..config import Config, RegistryConfig
from .. import httpclient
from ..errors import RegistryError
from ..httpclient import HttpFailure
from ..imagerefs import ImageReferenceError, ResolvedImage, mirror_reference, resolve_image
from ..redirects import check_storage_url
from ..tags import upstream_tags
from ..upstreams import Upstream, make_upstream
from .hints import hint_for
from .model import Failure, ImageResult, Step, StepFailed
from .pull import pull_steps, run_step
from .session import USER_AGENT, RepositoryMissing, Session

STEPS = ("resolve", "connect", "credentials", "v2", "manifest", "platforms", "blobs")


# The last error answer the shared Upstream code got in this task (auth discovery, token fetch):
# its errors are worded for customers, the diagnosis wants the registry's own status, code and words.
LAST_ERROR: ContextVar[httpclient.HttpResponse | None] = ContextVar("authmirror_registrytest_last_error", default=None)


async def recording_http(method: str, url: str, headers=None, body=None, **kwargs: Any) -> httpclient.HttpResponse:
    """`Upstream`'s HTTP function, remembering error answers for the diagnosis."""
    response = await httpclient.request(method, url, {"User-Agent": USER_AGENT, **(headers or {})}, body, **kwargs)
    if response.status >= 400:
        LAST_ERROR.set(response)
    return response


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
            "registry": f"{registry.app}/{registry.name}",
            "key": registry.key,
            "config": str(config.path),
            "host": f"{registry.host}:{registry.port}",
            "password_source": registry.password.source if registry.password else "nowhere (none configured)",
            "repository": resolved.repository,
            "upstream_repository": upstream_repository,
            "tag": resolved.ref.tag_or_default,
            "reference": resolved.reference,
            "by_digest": bool(resolved.ref.digest),
            "prefix_note": f" (the url's path '{registry.path_prefix}/' is put in front of the repository)" if registry.path_prefix else "",
            "timeout": f"{timeout:g}",
        }

    async def authorization(self) -> str | None:
        LAST_ERROR.set(None)
        try:
            self._auth = await self.upstream.authorization(self.repository)
        except RegistryError as e:
            raise StepFailed(self.from_upstream_error(e, "token")) from None
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

    def from_upstream_error(self, error: RegistryError, what: str, default_kind: str = "credentials_unavailable") -> Failure:
        """An error the shared Upstream code raised (auth dance, token minting) -> a diagnosis."""
        cause = error.__context__
        if isinstance(cause, HttpFailure):
            return self.network_failure(cause)
        answer = LAST_ERROR.get()
        LAST_ERROR.set(None)
        if answer is not None:
            return self.diagnose(answer, what)
        detail = error.detail if isinstance(error.detail, dict) else {}
        status, code = detail.get("upstream_status"), detail.get("upstream_code")
        retry_after = (error.headers or {}).get("Retry-After")
        if status:
            kind = self.kind_for(status, code or "", what)
        elif "token realm" in error.message:
            kind = "realm_not_allowed"
        elif error.status == 504:
            kind = "timeout"
        else:
            kind = default_kind
        extra: dict[str, Any] = {"status": status, "code": code}
        if kind == "rate_limited":
            extra["retry_after"] = retry_after or "?"
        return self.failure(kind, self.clean(error.message), **extra)

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
        resolved = await run_step(result, "resolve", lambda step: _resolve(step, config, image, registry_name, result))
        registry = resolved.registry
        key = (registry.app, registry.name)
        if key not in upstreams:
            upstreams[key] = make_upstream(registry, timeout=timeout, http=recording_http)
        session = DirectSession(upstreams[key], resolved, timeout, config)
        await run_step(result, "connect", session.connect)
        await run_step(result, "credentials", lambda step: _credentials(step, session))
        await run_step(result, "v2", lambda step: _v2(step, session))
        await pull_steps(session, result, session.name, resolved.reference, deep)
    except StepFailed:
        pass
    return result.finish(STEPS)


async def _resolve(step: Step, config: Config, image: str, registry_name: str | None, result: ImageResult) -> ResolvedImage:
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
    return resolved


async def _credentials(step: Step, session: DirectSession) -> None:
    upstream = session.upstream
    registry = upstream.registry
    static = type(upstream).credentials is Upstream.credentials
    LAST_ERROR.set(None)
    try:
        creds = await upstream.credentials()
    except RegistryError as e:
        raise StepFailed(session.from_upstream_error(e, "credentials")) from None
    if creds is None:
        step.detail = "none: pulls anonymously"
    elif static:
        username = f"username from {registry.username.source}" if registry.username else "no username"
        step.detail = f"{username}, password from {registry.password.source if registry.password else 'nowhere'}"
    else:
        step.detail = f"obtained from {upstream.LABEL} (minted, cached as the mirror caches them)"


async def _v2(step: Step, session: DirectSession) -> None:
    upstream = session.upstream
    LAST_ERROR.set(None)
    try:
        challenge = await upstream.challenge()
    except RegistryError as e:
        raise StepFailed(session.from_upstream_error(e, "v2", default_kind="upstream_error")) from None
    auth = await session.authorization()
    headers = {"Authorization": auth} if auth else {}
    response = await session.http("GET", f"{session.origin}/v2/", headers)
    if response.status != 200:
        raise StepFailed(session.diagnose(response, "v2"))
    if challenge.scheme == "bearer":
        step.detail = f"Bearer token from {challenge.realm} (service {challenge.service or '-'}), accepted"
    elif challenge.scheme == "basic":
        step.detail = "Basic auth accepted"
    else:
        step.detail = "no authentication required"
