"""Check an image through a running mirror exactly as a customer's runtime pulls it:
resolve -> connect -> /v2/ challenge -> token (license as password) -> manifest -> platforms -> blobs."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode, urlsplit

from ..imagerefs import ImageReferenceError, split_mirror_reference
from ..upstreams.base import basic_header, token_from_answer
from ..upstreams.challenge import pick_challenge
from ..hints import hint_for
from .model import Failure, ImageResult, Step, StepFailed
from .pull import pull_steps, run_step
from .session import RepositoryMissing, Session

STEPS = ("resolve", "connect", "v2", "token", "manifest", "platforms", "blobs")
CLIENT_USERNAME = "authmirror-registry-test"


class ProxySession(Session):
    registry_type = "mirror"
    via_proxy = True

    def __init__(self, url: str, host: str, name: str, license: str, timeout: float, tag: str, reference: str):
        parts = urlsplit(url)
        super().__init__(f"{parts.scheme}://{parts.netloc}", timeout, (license,))
        self.netloc = parts.netloc
        # A custom domain in REF reaches the mirror at URL with that Host, as DNS would route it.
        self.host_header = host if host and host != parts.netloc else ""
        self.name = name
        self.license = license
        self.token: str | None = None
        self.hint_context = {
            "host": parts.netloc,
            "repository": name,
            "tag": tag,
            "reference": reference,
            "by_digest": reference.startswith("sha"),
            "timeout": f"{timeout:g}",
        }

    def extra_headers(self, url: str) -> dict[str, str]:
        return {"Host": self.host_header} if self.host_header else {}

    async def authorization(self) -> str | None:
        return f"Bearer {self.token}" if self.token else None

    async def redirect_headers(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """Credentials only go back to the mirror itself, never to a storage host it redirects to."""
        if urlsplit(url).netloc == self.netloc and self.token:
            return {**headers, **self.extra_headers(url), "Authorization": f"Bearer {self.token}"}
        return dict(headers)

    def kind_for(self, status: int, code: str, what: str) -> str:
        """The mirror's answers: 401/403 are about the license; 502s carry the upstream's trouble."""
        if status == 401:
            return "license_refused"
        if status == 403:
            return "license_denied"
        if status in (502, 503, 504):
            return {"UNAUTHORIZED": "credentials_refused", "DENIED": "permission_denied"}.get(code, "upstream_error")
        return super().kind_for(status, code, what)

    async def tags(self) -> list[str] | None:
        try:
            response = await self.send("GET", f"/v2/{self.name}/tags/list", {"Accept": "application/json"})
            if response.status == 404 and b"NAME_UNKNOWN" in response.body:
                raise RepositoryMissing()
            tags = response.json().get("tags") if response.status == 200 else None
        except (StepFailed, ValueError, AttributeError):
            return None
        return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else None

    async def repositories(self) -> list[str] | None:
        return None  # the mirror's catalog lists only what a license names literally: no help here


async def check_via_proxy(url: str, image: str, license: str, *, deep: bool = False, timeout: float = 15.0) -> ImageResult:
    """Every step a runtime takes for one image through the mirror at `url`."""
    result = ImageResult(image, "via-proxy")
    try:
        session = await run_step(result, "resolve", lambda step: _resolve(step, url, image, license, timeout, result))
        await run_step(result, "connect", session.connect)
        challenge = await run_step(result, "v2", lambda step: _v2(step, session))
        await run_step(result, "token", lambda step: _token(step, session, challenge))
        await pull_steps(session, result, session.name, result.reference, deep)
    except StepFailed:
        pass
    return result.finish(STEPS)


async def _resolve(step: Step, url: str, image: str, license: str, timeout: float, result: ImageResult) -> ProxySession:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        failure = Failure("bad_reference", f"--via-proxy {url!r} is not an http(s) URL")
        failure.hint = "give the mirror's address, e.g. --via-proxy https://mirror.example.com"
        raise StepFailed(failure)
    try:
        host, name, ref = split_mirror_reference(image)
    except ImageReferenceError as e:
        failure = Failure("bad_reference", e.message)
        failure.hint = hint_for("default", "bad_reference")
        raise StepFailed(failure) from None
    result.repository, result.reference = name, ref.reference
    session = ProxySession(url, host, name, license, timeout, ref.tag_or_default, ref.reference)
    via = f"Host {session.host_header}" if session.host_header else "path routing"
    step.detail = f"mirror {session.origin} ({via}): repository {name}, {'digest' if ref.digest else 'tag'} {ref.reference}"
    return session


async def _v2(step: Step, session: ProxySession):
    """Unauthenticated GET /v2/: the mirror must answer 401 with a Bearer challenge naming its token realm."""
    response = await session.http("GET", f"{session.origin}/v2/", session.extra_headers(session.origin))
    if response.status == 200:
        step.detail = "no authentication required (is this an authmirror?)"
        return None
    if response.status != 401:
        raise StepFailed(session.diagnose(response, "v2"))
    challenge = pick_challenge(response.header_all("WWW-Authenticate"))
    if challenge is None or challenge.scheme != "bearer" or not challenge.realm:
        raise StepFailed(session.failure("protocol", "answered 401 without a Bearer challenge: not a token-auth registry"))
    step.detail = f"401 with Bearer challenge, realm {challenge.realm}, service {challenge.service or '-'}"
    return challenge


async def _token(step: Step, session: ProxySession, challenge) -> None:
    if challenge is None:
        step.detail = "not needed"
        return
    scope = f"repository:{session.name}:pull"
    params = {"scope": scope, **({"service": challenge.service} if challenge.service else {})}
    url = f"{challenge.realm}{'&' if '?' in challenge.realm else '?'}{urlencode(params)}"
    headers = {"Authorization": basic_header(CLIENT_USERNAME, session.license), "Accept": "application/json"}
    if urlsplit(url).netloc == session.netloc:
        headers.update(session.extra_headers(url))
    try:
        response = await session.http("GET", url, headers)
    except StepFailed as e:
        if urlsplit(url).netloc != session.netloc:
            e.failure.kind = "realm_unreachable"
            e.failure.message = f"token realm {challenge.realm}: {e.failure.message}"
            e.failure.hint = hint_for("mirror", "realm_unreachable", message=challenge.realm)
        raise
    if response.status != 200:
        raise StepFailed(session.diagnose(response, "token"))
    token, data = token_from_answer(response)
    if token is None:
        raise StepFailed(session.failure("protocol", "the token endpoint answered without a token"))
    session.token = token
    granted = granted_names(token)
    grant = f"grants pull on {session.name}" if session.name in granted else "grants no access to this repository"
    step.detail = f"token from {challenge.realm} ({grant}, expires in {data.get('expires_in', '?')} s)"


def granted_names(token: str) -> list[str]:
    """The repositories a JWT's `access` claim names (read for display only; the mirror verifies)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return [a.get("name") for a in claims.get("access") or [] if isinstance(a, dict)]
    except (IndexError, ValueError, AttributeError):
        return []
