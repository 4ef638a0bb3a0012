"""Failed-license attempts, rate-limited per client address: guessing licenses does not scale.

Each client address has a bucket of `limits.failed_license_attempts` tries that refills over
`limits.failed_license_window`; an unknown license takes one. With the bucket empty, every
request from that address that presents a license (Basic credentials, the token endpoint) is
answered 429 TOOMANYREQUESTS with Retry-After, before the license is looked at: a right guess
made while blocked is not recognised either. Bearer tokens already issued keep working.

NOTE: the address is the TCP peer. Behind a load balancer that is the balancer's address, so
limit failed attempts there too (or keep the mirror's limit generous).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from mitmproxy import http

from .errors import RegistryError
from .hardening_config import LimitsConfig

MAX_TRACKED_ADDRESSES = 100_000  # memory bound under a spray from many addresses: oldest forgotten


@dataclass
class _Bucket:
    tokens: float
    updated: float


class FailedLicenseLimiter:
    def __init__(self, config: LimitsConfig, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(config.failed_license_attempts)
        self.refill_per_second = self.capacity / config.failed_license_window
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def _bucket(self, address: str) -> _Bucket | None:
        bucket = self._buckets.get(address)
        if bucket is None:
            return None
        now = self.clock()
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.updated) * self.refill_per_second)
        bucket.updated = now
        if bucket.tokens >= self.capacity:
            del self._buckets[address]  # full again: nothing to remember
            return None
        return bucket

    def check(self, address: str) -> None:
        """Raise 429 TOOMANYREQUESTS when this address has used up its failed attempts."""
        if not self.enabled:
            return
        bucket = self._bucket(address)
        if bucket is not None and bucket.tokens < 1:
            retry_after = max(1, math.ceil((1 - bucket.tokens) / self.refill_per_second))
            raise RegistryError(
                "TOOMANYREQUESTS",
                f"too many failed license attempts from your address; retry after {retry_after} s",
                status=429,
                detail={"retry_after": retry_after},
                headers={"Retry-After": str(retry_after)},
            )

    def failed(self, address: str) -> None:
        """Count one failed license attempt from this address."""
        if not self.enabled:
            return
        bucket = self._bucket(address)
        if bucket is None:
            bucket = self._buckets[address] = _Bucket(self.capacity, self.clock())
        bucket.tokens -= 1
        self._buckets.move_to_end(address)
        while len(self._buckets) > MAX_TRACKED_ADDRESSES:
            self._buckets.popitem(last=False)


def client_address(flow: http.HTTPFlow) -> str:
    peer = flow.client_conn.peername
    return str(peer[0]) if peer else "unknown"


def presents_license(credential_scheme: str, route_kind: str) -> bool:
    """Does this request carry a license to check (Basic credentials, or a token request)?"""
    return credential_scheme == "basic" or route_kind == "token"
