"""A cache for upstream credentials that expire (registry bearer tokens, ECR/Google tokens).

One fetch at a time per key (concurrent callers share it), a 60 s lifetime floor (the token spec's
minimum, also what keeps a past expiry from causing a fetch loop), refresh ahead of expiry, and an
injectable clock for tests.
NOTE: https://distribution.github.io/distribution/spec/auth/token/ ("expires_in ... minimum 60 s")
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Hashable

MIN_LIFETIME = 60.0
MAX_REFRESH_MARGIN = 300.0
FRESH_SECONDS = 10.0


@dataclass(frozen=True)
class CachedToken:
    value: str = field(repr=False)  # an upstream credential: never in a repr or log
    obtained_at: float
    expires_at: float  # when we stop using it (ahead of the real expiry)

    def fresh(self, now: float) -> bool:
        """Obtained moments ago: if the upstream refuses it, the credentials themselves are bad."""
        return now - self.obtained_at < FRESH_SECONDS


Fetch = Callable[[], Awaitable[tuple[str, float | None]]]  # -> (token, lifetime in seconds or None)


class TokenCache:
    def __init__(self, clock: Callable[[], float] = time.time, default_lifetime: float = MIN_LIFETIME):
        self.clock = clock
        self.default_lifetime = default_lifetime
        self._tokens: dict[Hashable, CachedToken] = {}
        self._pending: dict[Hashable, asyncio.Future[CachedToken]] = {}
        self.hits = 0
        self.fetches = 0

    async def get(self, key: Hashable, fetch: Fetch) -> CachedToken:
        cached = self._tokens.get(key)
        if cached is not None and cached.expires_at > self.clock():
            self.hits += 1
            return cached
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[CachedToken] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            self.fetches += 1
            value, lifetime = await fetch()
            now = self.clock()
            lifetime = max(lifetime if lifetime is not None else self.default_lifetime, MIN_LIFETIME)
            margin = min(lifetime * 0.1, MAX_REFRESH_MARGIN)
            token = CachedToken(value, now, now + lifetime - margin)
            self._tokens[key] = token
            future.set_result(token)
            return token
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._pending[key]

    def invalidate(self, key: Hashable, value: str | None = None) -> None:
        """Forget a token (only if it is still `value`, so a newer one survives)."""
        cached = self._tokens.get(key)
        if cached is not None and (value is None or cached.value == value):
            del self._tokens[key]

    def clear(self) -> None:
        self._tokens.clear()
