"""A live login: can the mirror authenticate to this registry right now?

`login` probes `/v2/`, gets the credentials (minted ones included), fetches a token when the
registry wants Bearer auth, then asks `/v2/` with the result. Without a repository it logs in the
way `docker login` does (a token without a scope), which every registry supports; with one, as a
pull of it would (and the token is cached for that pull). Refused credentials show up even on
registries that take Basic auth without a token step. Nothing is pulled.

`config check` and `registry add` use `check_credentials`; `registry test` logs in with `login` in
its /v2/ step.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RegistryError
from .base import Upstream, basic_header
from .challenge import Challenge

SCHEMES = {"none": "no credentials needed", "basic": "Basic auth", "bearer": "Bearer token auth"}


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str
    error: RegistryError | None = None


async def login(upstream: Upstream, repository: str | None = None) -> Challenge:
    """Log in (for a pull of `repository`, when given) and return how the registry authenticates.
    Raises RegistryError; what the registry itself said is in its `diagnostics`."""
    challenge = await upstream.challenge()
    if repository is not None:
        header = (await upstream.authorization(repository)).header
    elif challenge.scheme == "bearer":
        token, _lifetime = await upstream.fetch_token(challenge, "")
        header = f"Bearer {token}"
    elif challenge.scheme == "basic":
        credentials = await upstream.credentials()
        header = basic_header(*credentials) if credentials else None
    else:
        header = None
    headers = {"Authorization": header} if header else {}
    response = await upstream.call("GET", f"{upstream.registry.origin}/v2/", headers=headers, what="reach")
    if response.status >= 300:
        raise upstream.translate(response, "manifest")
    return challenge


async def check_credentials(upstream: Upstream) -> CheckResult:
    try:
        challenge = await login(upstream)
    except RegistryError as e:
        return CheckResult(False, e.message, e)
    return CheckResult(True, f"credentials accepted ({SCHEMES.get(challenge.scheme, challenge.scheme)})")
