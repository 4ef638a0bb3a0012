"""What the pull steps need from "the registry we test": authenticated requests and diagnoses.

`Session` is the common part; `direct.DirectSession` talks to the vendor's upstream with the
configured credentials, `viaproxy.ProxySession` to a running mirror with a customer's license.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable
from urllib.parse import urljoin

from .. import __version__, httpclient
from ..errors import UpstreamDiagnostics, redact_secrets
from ..hints import answer_kind, hint_for, tls_advice
from .model import Failure, StepFailed
from .probe import probe

MAX_REDIRECTS = 3
# Pull logs (the mirror's, the registry's) can tell these checks from real pulls.
USER_AGENT = f"authmirror-registry-test/{__version__}"


class Session:
    """A registry under test. Subclasses set `registry_type`, `origin` and `hint_context`, and add auth."""

    registry_type = "default"
    via_proxy = False

    def __init__(self, origin: str, timeout: float, secrets: tuple[str, ...] = ()):
        self.origin = origin
        self.timeout = timeout
        self.secrets = secrets
        self.hint_context: dict[str, Any] = {}

    # -- HTTP ---------------------------------------------------------------------------------

    def extra_headers(self, url: str) -> dict[str, str]:
        """Headers every request to `url` carries besides auth (the mirror's Host for custom domains)."""
        return {}

    async def authorization(self) -> str | None:
        return None

    def refused(self) -> bool:
        """A 401 came back; True when asking again with new credentials may help."""
        return False

    async def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        sink: Callable[[bytes], None] | None = None,
    ) -> httpclient.HttpResponse:
        """A request to the registry's API with this session's credentials (retried once after a 401
        when the credentials were cached)."""
        for _attempt in range(2):
            request_headers = {**self.extra_headers(self.origin), **(headers or {})}
            auth = await self.authorization()
            if auth:
                request_headers["Authorization"] = auth
            response = await self.http(method, f"{self.origin}{path}", request_headers, sink)
            if response.status != 401 or not self.refused():
                return response
        return response

    async def http(self, method: str, url: str, headers: dict[str, str], sink: Callable[[bytes], None] | None = None) -> httpclient.HttpResponse:
        headers = {"User-Agent": USER_AGENT, **headers}
        try:
            if sink is not None:
                return await httpclient.stream(method, url, headers, sink, timeout=self.timeout)
            return await httpclient.request(method, url, headers, timeout=self.timeout)
        except httpclient.HttpFailure as e:
            raise StepFailed(self.network_failure(e.kind, str(e))) from None

    async def send_following(self, method: str, path: str, headers: dict[str, str], sink: Callable[[bytes], None] | None = None) -> tuple[httpclient.HttpResponse, int]:
        """Like `send`, following storage redirects as a runtime does. Returns the answer and the hops."""
        response = await self.send(method, path, headers, sink)
        url = f"{self.origin}{path}"
        hops = 0
        while response.status in (301, 302, 303, 307, 308) and response.header("Location"):
            if hops == MAX_REDIRECTS:
                raise StepFailed(self.failure("protocol", f"more than {MAX_REDIRECTS} redirects for {path}"))
            url = urljoin(url, response.header("Location") or "")
            hops += 1
            redirect_headers = await self.redirect_headers(url, headers)
            response = await self.http(method, url, redirect_headers, sink)
        return response, hops

    async def redirect_headers(self, url: str, headers: dict[str, str]) -> dict[str, str]:
        """Headers for a redirected request: no credentials off the registry's origin (raise to refuse)."""
        return dict(headers)

    async def connect(self, step) -> None:
        """The connect step: DNS, TCP and TLS to the registry, each timed."""
        try:
            timing = await probe(self.origin, self.timeout)
        except httpclient.HttpFailure as e:
            raise StepFailed(self.network_failure(e.kind, str(e))) from None
        step.detail = timing.describe()

    # -- diagnoses ----------------------------------------------------------------------------

    def failure(self, kind: str, message: str, **extra: Any) -> Failure:
        context = {**self.hint_context, **extra, "message": message}
        failure = Failure(kind, message, status=extra.get("status"), code=extra.get("code"), retry_after=extra.get("retry_after"))
        failure.hint = hint_for(self.registry_type, kind, **context)
        return failure

    def network_failure(self, kind: str, message: str) -> Failure:
        """No answer: DNS, connect, TLS, timeout or a broken connection (httpclient.HttpFailure's kinds)."""
        extra: dict[str, Any] = {"timeout": f"{self.timeout:g}"}
        if kind == "tls":
            extra["tls_advice"] = tls_advice(message)
        return self.failure(kind, message, **extra)

    def diagnose(self, response: httpclient.HttpResponse, what: str, **extra: Any) -> Failure:
        """An error answer to `what` (v2, token, manifest, tags, blob) -> a failure kind and hint."""
        said = UpstreamDiagnostics.from_answer(response.status, response.body, response.header("Retry-After"), self.secrets)
        return self.from_answer(said, what, **extra)

    def from_answer(self, said: UpstreamDiagnostics, what: str, **extra: Any) -> Failure:
        """What the registry said to `what` -> a failure kind and hint."""
        assert said.status is not None
        info = {"status": said.status, "code": said.code or None, **extra}
        kind = self.kind_for(said.status, said.code, what)
        if kind == "rate_limited":
            info["retry_after"] = said.retry_after or "?"
        return self.failure(kind, said.describe(), **info)

    def kind_for(self, status: int, code: str, what: str) -> str:
        return answer_kind(status, code, what, by_digest=bool(self.hint_context.get("by_digest")))

    def clean(self, text: str) -> str:
        return redact_secrets(text, self.secrets)

    # -- listings for hints -------------------------------------------------------------------

    async def tags(self) -> list[str] | None:
        """The repository's tags; None when they cannot be listed. Raises RepositoryMissing."""
        return None

    async def repositories(self) -> list[str] | None:
        return None


class RepositoryMissing(Exception):
    """The tag list says the repository itself does not exist."""


def close_matches(wanted: str, candidates: list[str], limit: int = 6) -> list[str]:
    """Candidates that look like `wanted` (typos, neighbouring versions), closest first."""
    close = difflib.get_close_matches(wanted, candidates, n=limit, cutoff=0.3)
    return close or sorted(candidates)[-limit:]
