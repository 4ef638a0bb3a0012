"""Cache counters since start, for /metrics (hit ratio, bytes saved) and for operators.

Per customer and image, the pull log carries the same facts: every blob and manifest event has
`cache` (hit|miss|fill|stale) and `bytes` (for `serve: redirect` hits, the size the file server
sends), so `authmirror report` can sum upstream egress saved from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LABELS = ("hit", "miss", "fill", "stale")


@dataclass
class CacheStats:
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS, 0))
    bytes_served: int = 0  # bytes clients got from the cache instead of the upstream (hits and stale answers)
    bytes_filled: int = 0  # bytes fetched upstream and committed
    fills_dropped: int = 0  # fills that left nothing behind (truncated, mismatching, aborted)
    corrupt: int = 0  # cached files found corrupt (dropped, refetched on the next request)

    def count(self, label: str | None, served_bytes: int = 0) -> None:
        if label in self.requests:
            self.requests[label] += 1
        if label in ("hit", "stale"):
            self.bytes_served += served_bytes

    @property
    def hit_ratio(self) -> float:
        """Requests answered from the cache over all cacheable requests (0.0 before any)."""
        answered = self.requests["hit"] + self.requests["stale"]
        total = answered + self.requests["miss"] + self.requests["fill"]
        return answered / total if total else 0.0
