"""Registry types whose credentials are minted by a cloud API (ECR, Google) rather than configured.

A `MintedUpstream` asks its provider for a short-lived username and password (`mint`), caches it
with the same rules as registry tokens (single flight, 60 s floor, refresh ahead of expiry, a past
or missing expiry means "refresh next time"), and forgets it when the upstream refuses it. The
minting call is blocking SDK code, so subclasses run it in a worker thread, never on the event loop.
The provider being down does not stop the mirror from starting: nothing is minted before the first
request, and a failure then becomes a 502/503/504 that names the provider.
"""

from __future__ import annotations

from ..errors import UpstreamError
from .base import Upstream, UpstreamAuth, basic_header
from .challenge import Challenge
from .tokencache import CachedToken, TokenCache

MINTED_KEY = "minted-credentials"


class MintedUpstream(Upstream):
    """Base for types that mint credentials. Subclasses implement `mint`."""


    def __init__(self, registry, **kwargs):
        super().__init__(registry, **kwargs)
        self.minted = TokenCache(self.clock)
        self._minted_token: CachedToken | None = None

    @property
    def mints(self) -> bool:
        """False when this registry is configured with static credentials after all (`json_key`)."""
        return True

    async def mint(self) -> tuple[str, str, float | None]:
        """A new (username, password, lifetime in seconds or None when unknown)."""
        raise NotImplementedError

    async def _mint_cached(self) -> tuple[str, float | None]:
        username, password, lifetime = await self.mint()
        # Kept as one string so the cache holds one value; split at the first colon (usernames have none).
        return f"{username}:{password}", lifetime

    async def minted_token(self) -> CachedToken:
        token = await self.minted.get(MINTED_KEY, self._mint_cached)
        self._minted_token = token
        return token

    async def credentials(self) -> tuple[str, str] | None:
        if not self.mints:
            return await super().credentials()
        username, _, password = (await self.minted_token()).value.partition(":")
        return username, password

    def invalidate_credentials(self) -> None:
        self.minted.invalidate(MINTED_KEY)

    def secret_values(self) -> tuple[str, ...]:
        minted = self._minted_token
        extra = (minted.value.partition(":")[2],) if minted is not None else ()
        return super().secret_values() + extra

    async def authorization(self, repository: str) -> UpstreamAuth:
        challenge = await self.challenge()
        if challenge.scheme != "basic" or not self.mints:
            return await super().authorization(repository)
        # Basic with the minted password (ECR): the minted token is what may go stale.
        token = await self.minted_token()
        username, _, password = token.value.partition(":")
        return UpstreamAuth(basic_header(username, password), token, None)

    def refused(self, auth: UpstreamAuth) -> bool:
        """Like the base rule (retry once unless everything used was fresh), with the minted
        credentials counted in: a refusal of anything obtained with stale minted credentials
        forgets them too, so the retry mints anew."""
        minted = self._minted_token
        stale_minted = minted is not None and not minted.fresh(self.clock())
        retry = super().refused(auth)
        if stale_minted:
            self.minted.invalidate(MINTED_KEY, minted.value)
            return True
        return retry

    async def fetch_token(self, challenge: Challenge, scope: str) -> tuple[str, float | None]:
        """A registry token fetched with minted credentials; when the token service refuses
        credentials minted a while ago, mint once more and try again."""
        try:
            return await super().fetch_token(challenge, scope)
        except UpstreamError as e:
            minted = self._minted_token
            refused = e.diagnostics is not None and e.diagnostics.status == 401
            if not self.mints or not refused or minted is None or minted.fresh(self.clock()):
                raise
            self.minted.invalidate(MINTED_KEY, minted.value)
            return await super().fetch_token(challenge, scope)
