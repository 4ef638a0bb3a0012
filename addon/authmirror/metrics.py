"""Prometheus metrics (`/metrics`): requests, bytes, errors by code, upstream latency, token caches,
and the blob cache's hits.

Labels stay few and bounded: the request's action, method and status, the OCI error code, and the
*configured* app and registry names. Never a customer, license (not even its fingerprint),
repository, tag, digest or client address: those belong to the pull log, and as labels they
would grow without bound.

Each replica serves its own numbers; Prometheus scrapes every replica (see examples/kubernetes/).
Counters kept by the mirror itself (token caches, pull-log failures) are read at scrape time, so
they cost nothing per request, and carry over a config reload (which builds a new Mirror).

Blob cache: a request answered with `context.cache` set ("hit", "miss", "fill", "stale") is
counted per request in authmirror_blob_cache_requests_total{result} and its bytes in
authmirror_blob_cache_bytes_total{result}. The cache's own state (`Cache.snapshot()`) is read at
scrape time: the hit ratio and upstream egress saved since start (the two figures operators ask
for first), fills, drops, corrupt files, evictions and the store's size. The snapshot's requests
per result are not exported again (the per-request counters have them); saved bytes equal the
hit + stale bytes of authmirror_blob_cache_bytes_total, as one series a dashboard can plot.
"""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Any, Iterable

from mitmproxy import http
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from . import answers
from .errors import RegistryError

if TYPE_CHECKING:
    from .context import RequestContext
    from .mirror import Mirror

# Our own registry rather than prometheus_client's global one: only what we mean to publish.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, cpu seconds, open fds

KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("authmirror_requests", "Requests answered, by action, method and HTTP status.", ("action", "method", "status"), registry=REGISTRY)
ERRORS = Counter("authmirror_errors", "Requests answered with an OCI error, by error code.", ("action", "code"), registry=REGISTRY)
RESPONSE_BYTES = Counter("authmirror_response_bytes", "Body bytes sent to clients.", ("action", "app", "registry"), registry=REGISTRY)
DURATION = Histogram("authmirror_request_duration_seconds", "Time from request to the end of the answer (blobs: the whole transfer).", ("action",), buckets=DURATION_BUCKETS, registry=REGISTRY)
UPSTREAM_LATENCY = Histogram(
    "authmirror_upstream_latency_seconds",
    "Time from forwarding a request to the upstream's answer headers (target: registry or storage).",
    ("app", "registry", "target"),
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
CACHE_REQUESTS = Counter("authmirror_blob_cache_requests", "Requests that consulted the blob cache, by result.", ("result",), registry=REGISTRY)
CACHE_BYTES = Counter("authmirror_blob_cache_bytes", "Bytes answered per blob cache result (hit bytes are bytes saved upstream).", ("result",), registry=REGISTRY)

SENT_AT = "metrics_sent_at"  # context.extra key: when the request left for upstream (monotonic)

# Labelled children by (metric, label values): a dict lookup instead of `labels()`, which
# converts and checks every value and takes a lock on each call (the label sets are bounded).
_children: dict[tuple, Any] = {}


def child(metric: Any, *labels: str) -> Any:
    found = _children.get((metric, labels))
    if found is None:
        found = _children[(metric, labels)] = metric.labels(*labels)
    return found


# -- called from the request pipeline ---------------------------------------------------------


def request_forwarded(context: RequestContext) -> None:
    context.extra[SENT_AT] = time.monotonic()


def upstream_answered(context: RequestContext) -> None:
    sent = context.extra.get(SENT_AT)
    registry = context.registry
    if sent is None or registry is None:
        return
    target = "storage" if context.to_storage else "registry"
    child(UPSTREAM_LATENCY, registry.app, registry.name, target).observe(time.monotonic() - sent)


def request_finished(context: RequestContext, method: str, status: int) -> None:
    """One answered request (called once per flow, from `response` or `error`)."""
    action = request_action(context)
    child(REQUESTS, action, method if method in KNOWN_METHODS else "other", str(status)).inc()
    if context.error_code:
        child(ERRORS, action, context.error_code).inc()
    if context.bytes:
        registry = context.registry
        child(RESPONSE_BYTES, action, registry.app if registry else "", registry.name if registry else "").inc(context.bytes)
    child(DURATION, action).observe(time.monotonic() - context.started)
    if context.cache:
        child(CACHE_REQUESTS, context.cache).inc()
        child(CACHE_BYTES, context.cache).inc(context.bytes)


def request_action(context: RequestContext) -> str:
    """A bounded label: the pull-event action, else the local route (health, ready, metrics, base)."""
    if context.action:
        return context.action
    return context.route.kind if context.route else "invalid"


# -- the endpoint -----------------------------------------------------------------------------


def answer(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext) -> None:
    """Serve /metrics (text format, or OpenMetrics when asked for), if enabled and allowed."""
    settings = mirror.config.metrics
    if not settings.enabled:
        raise RegistryError("UNSUPPORTED", "metrics are not enabled", status=404)
    if settings.token is not None:
        presented = context.credential.secret
        if not presented or not hmac.compare_digest(presented.encode(), settings.token.value.encode()):
            raise RegistryError("UNAUTHORIZED", "metrics need the configured metrics token (Bearer)", headers={"WWW-Authenticate": 'Bearer realm="authmirror-metrics"'})
    encode, content_type = choose_encoder(flow.request.headers.get("Accept", ""))
    flow.response = answers.make(flow.request, 200, encode(REGISTRY), context.request_id, {"Cache-Control": "no-store"}, content_type)


# -- counters the mirror keeps itself ---------------------------------------------------------


class MirrorCollector:
    """Reads the current Mirror's own counters at scrape time; totals survive a config reload."""

    def __init__(self) -> None:
        self.mirror: Mirror | None = None
        self.carried: dict[tuple, float] = {}  # totals of mirrors replaced by a reload

    def watch(self, mirror: Mirror) -> None:
        if self.mirror is not None and self.mirror is not mirror:
            for key, value in self._counts(self.mirror):
                self.carried[key] = self.carried.get(key, 0) + value
        self.mirror = mirror

    def _counts(self, mirror: Mirror) -> Iterable[tuple[tuple, float]]:
        issuer = mirror.issuer
        yield ("verify", "hit"), issuer.cache_hits
        yield ("verify", "miss"), issuer.cache_misses
        for (app, name), upstream in mirror.upstreams.items():
            yield ("upstream", app, name, "hit"), upstream.tokens.hits
            yield ("upstream", app, name, "fetch"), upstream.tokens.fetches
        yield ("pull_log_failures",), mirror.pull_log.failures
        if mirror.cache is not None:
            snapshot = mirror.cache.snapshot()
            requests = snapshot["requests"]
            yield ("cache", "answered"), requests["hit"] + requests["stale"]
            yield ("cache", "consulted"), sum(requests.values())
            for name in CACHE_COUNTERS:
                yield ("cache", name), snapshot[name]

    def collect(self) -> Iterable[Metric]:
        totals = dict(self.carried)
        if self.mirror is not None:
            for key, value in self._counts(self.mirror):
                totals[key] = totals.get(key, 0) + value
        verify = CounterMetricFamily("authmirror_token_verify_cache", "Client bearer tokens checked: cache hits, and misses that verified the signature.", labels=("result",))
        upstream = CounterMetricFamily("authmirror_upstream_token_cache", "Upstream credentials (registry tokens, minted cloud tokens): cache hits and fetches.", labels=("app", "registry", "result"))
        failures = CounterMetricFamily("authmirror_pull_log_write_failures", "Pull events that could not be written.")
        for key, value in sorted(totals.items()):
            if key[0] == "verify":
                verify.add_metric([key[1]], value)
            elif key[0] == "upstream":
                upstream.add_metric(list(key[1:]), value)
            elif key[0] == "pull_log_failures":
                failures.add_metric([], value)
        yield verify
        yield upstream
        yield failures
        if self.mirror is not None:
            yield GaugeMetricFamily("authmirror_licenses", "Licenses loaded from the licenses file.", value=len(self.mirror.licenses.licenses))
            yield GaugeMetricFamily("authmirror_registries", "Configured upstream registries.", value=len(self.mirror.upstreams))
            if self.mirror.cache is not None:
                yield from cache_families(totals, self.mirror.cache.snapshot())


# Cumulative cache counters (snapshot key -> metric name without _total, help). Kept over reloads.
CACHE_COUNTERS = {
    "bytes_served": ("authmirror_blob_cache_saved_bytes", "Bytes clients got from the cache (hits and stale manifests) instead of the upstream: upstream egress saved."),
    "bytes_filled": ("authmirror_blob_cache_filled_bytes", "Bytes fetched upstream and committed to the cache (blobs and manifests)."),
    "fills_dropped": ("authmirror_blob_cache_fills_dropped", "Fills that left nothing behind: truncated, mismatching or aborted transfers."),
    "corrupt": ("authmirror_blob_cache_corrupt_files", "Cached files found corrupt (dropped, then fetched from upstream again)."),
    "evictions": ("authmirror_blob_cache_evictions", "Cached files evicted, least recently used first, to stay within max_size."),
}
# The store as it is now (snapshot key -> metric name, help).
CACHE_GAUGES = {
    "size_bytes": ("authmirror_blob_cache_size_bytes", "Bytes held in the cache."),
    "max_size_bytes": ("authmirror_blob_cache_max_size_bytes", "The cache's configured max_size."),
    "entries": ("authmirror_blob_cache_entries", "Files (blobs and manifests) held in the cache."),
}


def cache_families(totals: dict[tuple, float], snapshot: dict[str, Any]) -> Iterable[Metric]:
    """The blob cache's state: `totals` holds its counters summed over config reloads."""
    consulted = totals.get(("cache", "consulted"), 0)
    ratio = totals.get(("cache", "answered"), 0) / consulted if consulted else 0.0
    yield GaugeMetricFamily(
        "authmirror_blob_cache_hit_ratio",
        "Blob and manifest requests answered from the cache (hits and stale answers) over all that consulted it, since start (0 before any). "
        "Over a window: authmirror_blob_cache_requests_total by result.",
        value=ratio,
    )
    for key, (name, help_text) in CACHE_COUNTERS.items():
        yield CounterMetricFamily(name, help_text, value=totals.get(("cache", key), 0))
    for key, (name, help_text) in CACHE_GAUGES.items():
        yield GaugeMetricFamily(name, help_text, value=snapshot[key])


MIRROR = MirrorCollector()
REGISTRY.register(MIRROR)


def watch(mirror: Mirror) -> None:
    """The addon calls this with every Mirror it builds."""
    MIRROR.watch(mirror)

