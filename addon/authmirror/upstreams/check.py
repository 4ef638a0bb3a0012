"""A live credential check: can the mirror authenticate to this registry right now?

It logs in the way `docker login` does, which every registry supports: probe `/v2/`, get the
credentials (minted ones included), fetch a token without a scope when the registry wants Bearer
auth, then ask `/v2/` with the result. Refused credentials show up even on registries that take
Basic auth without a token step. Nothing is pulled.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RegistryError
from .base import Upstream, basic_header

SCHEMES = {"none": "no credentials needed", "basic": "Basic auth", "bearer": "Bearer token auth"}


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str
    error: RegistryError | None = None


async def check_credentials(upstream: Upstream) -> CheckResult:
    try:
        challenge = await upstream.challenge()
        headers = {}
        if challenge.scheme == "bearer":
            token, _lifetime = await upstream.fetch_token(challenge, "")
            headers["Authorization"] = f"Bearer {token}"
        elif challenge.scheme == "basic":
            credentials = await upstream.credentials()
            if credentials:
                headers["Authorization"] = basic_header(*credentials)
        response = await upstream.call("GET", f"{upstream.registry.origin}/v2/", headers=headers, what="reach")
        if response.status >= 300:
            raise upstream.translate(response, "manifest")
    except RegistryError as e:
        return CheckResult(False, e.message, e)
    return CheckResult(True, f"credentials accepted ({SCHEMES.get(challenge.scheme, challenge.scheme)})")
