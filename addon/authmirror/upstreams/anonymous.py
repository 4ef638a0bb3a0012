"""`anonymous`: a registry pulled without credentials (public images behind a license).

Quirks:
- Bearer-challenge registries still want a token: it is fetched anonymously from the realm.
"""

from __future__ import annotations

from .base import Upstream


class AnonymousUpstream(Upstream):
    TYPE = "anonymous"
    LABEL = "anonymous registry"

    async def credentials(self) -> tuple[str, str] | None:
        return None
