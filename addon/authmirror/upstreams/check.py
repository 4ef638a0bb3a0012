"""A live credential check: can the mirror authenticate to this registry right now?

It runs the same auth dance a pull does (probe `/v2/`, mint or read the credentials, fetch a
registry token when the registry wants one) and then asks `/v2/` with the result, so refused
credentials show up even on registries that take Basic auth without a token step. Nothing is pulled.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RegistryError
from .base import Upstream

CHECK_REPOSITORY = "authmirror-credential-check"
SCHEMES = {"none": "no credentials needed", "basic": "Basic auth", "bearer": "Bearer token auth"}


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str
    error: RegistryError | None = None


async def check_credentials(upstream: Upstream) -> CheckResult:
    try:
        response = await upstream.get(CHECK_REPOSITORY, "/v2/", kind="manifest")
        if response.status >= 300:
            raise upstream.translate(response, "manifest")
        challenge = await upstream.challenge()
    except RegistryError as e:
        return CheckResult(False, e.message, e)
    return CheckResult(True, f"credentials accepted ({SCHEMES.get(challenge.scheme, challenge.scheme)})")
