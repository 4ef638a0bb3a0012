"""`Cache`: what the request pipeline (handling.py) asks of the cache, one method per step.

request          lookup()          after authentication and authorization: answer a hit, or mark a
                                   miss that may fill (and lead or wait for a cold blob's fetch)
responseheaders  answer_headers()  the file server's answer to a re-pointed flow (serve: proxy)
                 tee()             a passing 200 blob body also fills the cache
response/error   response()/error() commit manifests, land flights, label the pull event

Only requests that passed the license check reach lookup(); a cached file is only served for a
repository linked to its digest (see store.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

from mitmproxy import http

from ..context import RequestContext
from ..errors import RegistryError
from ..forwarding import ByteCounter, point_at, redirect_client, replace_response
from ..redirects import QUERY_PARAM, derive_key
from . import manifests, serve
from .fileserver import FileServer
from .fill import Fill, Flight, Flights, TeeStream
from .settings import CacheConfig
from .stats import CacheStats
from .store import BlobStore, Entry, Scope, file_digest, is_sha256, signature

log = logging.getLogger("authmirror.cache")

STATE_KEY = "cache"  # RequestContext.extra key of the request's CacheRequest
FLIGHT_STALL = 30.0  # waiters give up on a leader that made no progress for this long
HANDOVER = 60.0  # how long a redirected leader's storage leg may take to arrive
MAX_MANIFEST = 4 * 1024 * 1024


@dataclass
class CacheRequest:
    """The cache's state for one request (on RequestContext.extra)."""

    scope: Scope
    digest: str = ""
    may_fill: bool = False
    flight: Flight | None = None
    fill: Fill | None = None
    served: str = ""  # "local" (answered by the mirror), "redirect" (307 to the file server), "file_server" (proxied)
    size: int = 0
    corrupt: bool = False


class Cache:
    def __init__(self, config: CacheConfig, link_key: bytes, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self.store = BlobStore(config.dir, config.max_size, clock)
        self.file_server = FileServer(config.file_server, self.store.files, config.dir / "nginx", link_key)
        self.flights = Flights(clock)
        self.stats = CacheStats()
        self.ready = False
        self._verifying: dict[str, asyncio.Future] = {}
        self._file_server_down_logged = False

    @classmethod
    def build(cls, config: CacheConfig, signing_key: Any, clock: Callable[[], float] = time.time) -> "Cache":
        return cls(config, derive_key(signing_key, b"cache file server"), clock)

    def start(self) -> None:
        self.store.open()
        try:
            self.file_server.start()
        except Exception:
            self.store.close()
            raise
        self.ready = True
        log.info("cache: %s, %d file(s), %d of %d bytes, serve: %s", self.config.dir, self.store.entries(), self.store.total, self.config.max_size, self.config.serve)

    def close(self) -> None:
        if self.ready:
            self.ready = False
            self.file_server.stop()
            self.store.close()

    def may_connect(self, host: str, port: int) -> bool:
        return self.ready and (host, port) == self.file_server.internal_address

    def snapshot(self) -> dict[str, Any]:
        """Counters and gauges for /metrics."""
        stats = self.stats
        return {
            "requests": dict(stats.requests),
            "hit_ratio": stats.hit_ratio,
            "bytes_served": stats.bytes_served,
            "bytes_filled": stats.bytes_filled,
            "fills_dropped": stats.fills_dropped,
            "corrupt": stats.corrupt,
            "evictions": self.store.evictions,
            "size_bytes": self.store.total,
            "max_size_bytes": self.config.max_size,
            "entries": self.store.entries() if self.ready else 0,
        }

    @staticmethod
    def scope(context: RequestContext) -> Scope:
        route, registry = context.route, context.registry
        assert route is not None and registry is not None
        return Scope(route.app, registry.name, f"{registry.origin}/{registry.path_prefix}", route.repository)

    # -- request ------------------------------------------------------------------------------

    async def lookup(self, flow: http.HTTPFlow, context: RequestContext) -> bool:
        """True when the request was answered from the cache (or re-pointed at the file server)."""
        route = context.route
        if not self.ready or route is None or route.kind not in ("blob", "manifest"):
            return False
        state = CacheRequest(self.scope(context))
        context.extra[STATE_KEY] = state
        context.cache = "miss"
        if route.kind == "blob":
            return await self._lookup_blob(flow, context, state)
        if route.is_digest:
            return await self._lookup_manifest_by_digest(flow, context, state)
        return await self._lookup_manifest_by_tag(flow, context, state)

    async def _lookup_blob(self, flow: http.HTTPFlow, context: RequestContext, state: CacheRequest) -> bool:
        digest = context.route.reference
        if not is_sha256(digest):
            return False
        state.digest = digest
        request = flow.request
        full_get = request.method == "GET" and "Range" not in request.headers
        sendable = request.method == "HEAD" or self._file_server_alive()
        while True:
            entry = await self._usable(context, state, "blobs")
            if entry is not None and sendable:
                self._serve_blob(flow, context, state, entry)
                return True
            if not full_get:
                return False
            flight = self.flights.current(digest)
            if flight is None:
                state.flight = self.flights.start(digest)
                break
            if not await self.flights.wait(flight, FLIGHT_STALL):
                log.info("%s: cache fill of %s made no progress for %g s; fetching it separately", context.request_id, digest, FLIGHT_STALL)
                break
        state.may_fill = True
        return False

    async def _lookup_manifest_by_digest(self, flow: http.HTTPFlow, context: RequestContext, state: CacheRequest) -> bool:
        digest = context.route.reference
        if not is_sha256(digest):
            return False
        state.digest = digest
        accept = manifests.accept_header(flow.request)
        entry = self.store.entry(digest)
        if entry is not None and manifests.accepts(accept, entry.media_type):
            entry = await self._usable(context, state, "manifests")
            if entry is not None and self._answer_manifest(flow, context, state, entry, stale=False):
                return True
        state.may_fill = flow.request.method == "GET"
        return False

    async def _lookup_manifest_by_tag(self, flow: http.HTTPFlow, context: RequestContext, state: CacheRequest) -> bool:
        route, upstream = context.route, context.upstream
        assert route is not None and upstream is not None
        accept = manifests.accept_header(flow.request)
        state.may_fill = flow.request.method == "GET"
        if accept is None:
            return False  # the answer depends on what the upstream defaults to: always ask it
        current = await manifests.revalidate(upstream, route.repository, route.reference, accept)
        if current.digest:
            self.store.remember_tag(state.scope, route.reference, current.digest, current.media_type)
            entry = self.store.entry(current.digest)
            if entry is not None and manifests.accepts(accept, entry.media_type):
                self.store.link(state.scope, current.digest)  # the upstream just named it for this repository
                state.digest = current.digest
                return self._answer_manifest(flow, context, state, entry, stale=False)
            return False
        if current.unavailable and self.config.stale_if_error > 0:
            return self._answer_stale(flow, context, state, accept)
        return False

    def _answer_stale(self, flow: http.HTTPFlow, context: RequestContext, state: CacheRequest, accept: str) -> bool:
        route = context.route
        record = self.store.tag(state.scope, route.reference)
        if record is None or self.clock() - record.validated > self.config.stale_if_error:
            return False
        entry = self.store.entry(record.digest)
        if entry is None or not manifests.accepts(accept, entry.media_type) or not self.store.linked(state.scope, record.digest):
            return False
        state.digest = record.digest
        answered = self._answer_manifest(flow, context, state, entry, stale=True)
        if answered:
            age = self.clock() - record.validated
            log.warning("%s: upstream registry '%s' unavailable: serving the manifest of %s:%s validated %.0f s ago (stale_if_error)", context.request_id, context.registry.name, route.repository, route.reference, age)
        return answered

    async def _usable(self, context: RequestContext, state: CacheRequest, kind: str) -> Entry | None:
        """The entry for state.digest if it exists, this repository may see it and it is intact."""
        digest = state.digest
        entry = self.store.entry(digest)
        if entry is None:
            return None
        if not self.store.linked(state.scope, digest):
            assert context.upstream is not None and context.route is not None
            if not await manifests.upstream_has(context.upstream, context.route.repository, kind, digest):
                return None
            self.store.link(state.scope, digest)
        if kind == "blobs" and not await self._intact(entry):
            return None
        return self.store.entry(digest)

    async def _intact(self, entry: Entry) -> bool:
        """Is the file still what we stored? Re-hashed (in a thread) when its stat changed."""
        digest = entry.digest
        path = self.store.path(digest)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self.store.forget(digest)
            return False
        if self.config.verify == "changed" and entry.signature == signature(st):
            return True
        task = self._verifying.get(digest)
        if task is None:
            task = asyncio.ensure_future(asyncio.to_thread(file_digest, path))
            self._verifying[digest] = task
            task.add_done_callback(lambda _: self._verifying.pop(digest, None))
        try:
            actual, size = await asyncio.shield(task)
        except OSError as e:
            log.warning("cache: cannot read %s: %s", digest, e.strerror)
            return False
        if actual == digest and size == entry.size:
            self.store.record_signature(digest, signature(st))
            return True
        self._corrupt(digest, "on disk")
        return False

    def _file_server_alive(self) -> bool:
        if self.file_server.alive():
            return True
        if not self._file_server_down_logged:
            self._file_server_down_logged = True
            code = self.file_server.process.returncode if self.file_server.process else None
            log.error("cache: the file server (nginx) exited (code %s); blobs come from upstream until the mirror restarts; see %s", code, self.file_server.state / "error.log")
        return False

    def _corrupt(self, digest: str, where: str) -> None:
        if self.store.entry(digest) is None:
            return
        self.stats.corrupt += 1
        self.store.forget(digest)
        log.warning("cache: %s is corrupt %s; dropped, the next request fetches it from upstream again", digest, where)

    def _serve_blob(self, flow: http.HTTPFlow, context: RequestContext, state: CacheRequest, entry: Entry) -> None:
        request = flow.request
        digest = entry.digest
        self.store.touch(digest)
        context.cache, context.digest = "hit", digest
        state.size = entry.size
        if request.method == "HEAD":
            state.served = "local"
            flow.response = serve.head_answer(request, context.request_id, digest, entry.size)
            return
        expires = int(self.clock() + self.config.file_server.url_ttl)
        self.store.pin(digest, expires)
        if self.config.serve == "redirect":
            state.served = "redirect"
            url = self.file_server.public_url(digest, expires)
            flow.response = serve.redirect_answer(request, context.request_id, url, digest)
            return
        state.served = "file_server"
        point_at(request, self.file_server.internal_url(digest, expires))
        for name in serve.CONDITIONAL_HEADERS:
            request.headers.pop(name, None)
        context.forwarded = True

    def _answer_manifest(self, flow: http.HTTPFlow, context: RequestContext, state: CacheRequest, entry: Entry, stale: bool) -> bool:
        digest = entry.digest
        try:
            body = self.store.path(digest).read_bytes()
        except OSError:
            self.store.forget(digest)
            return False
        if f"sha256:{hashlib.sha256(body).hexdigest()}" != digest:
            self._corrupt(digest, "on disk")
            return False
        self.store.touch(digest)
        flow.response = serve.manifest_answer(flow.request, context.request_id, digest, entry.media_type, body, stale)
        context.cache, context.digest = ("stale" if stale else "hit"), digest
        state.served, state.size = "local", len(body)
        return True

    # -- responseheaders ----------------------------------------------------------------------

    def answer_headers(self, flow: http.HTTPFlow, context: RequestContext) -> bool:
        """The file server answered a re-pointed flow (serve: proxy). True: handled here."""
        state: CacheRequest | None = context.extra.get(STATE_KEY)
        if state is None or state.served != "file_server":
            return False
        response = flow.response
        assert response is not None
        self.store.pins.pop(state.digest, None)  # nginx has the file open now: eviction may unlink it
        status = response.status_code
        if status in (200, 206):
            serve.shape_file_server_answer(response, context, state.digest)
            if status == 200:
                response.stream = serve.VerifyingStream(flow, context, state.digest, state.size, lambda: self._corrupt_while_serving(state))
            else:
                response.stream = ByteCounter(context)
            context.streamed = True
            return True
        if status == 404:
            # Gone between lookup and fetch: the client asks again, and gets it from upstream.
            self.store.forget(state.digest)
            context.cache = "miss"
            redirect_client(flow, context, context.client_path)
            return True
        if status == 416:
            error = RegistryError("SIZE_INVALID", "requested range not satisfiable", status=416)
        else:
            log.warning("%s: cache file server answered %d for %s", context.request_id, status, state.digest)
            error = RegistryError("UNAVAILABLE", "the mirror's cache could not send this blob; try again", status=503)
        context.error_code = error.code
        replace_response(flow, context, error.status, {}, lambda _: error.body(context.request_id))
        return True

    def _corrupt_while_serving(self, state: CacheRequest) -> None:
        state.corrupt = True
        self._corrupt(state.digest, "(it did not match its digest while being sent; the client's transfer was cut short)")

    def tee(self, flow: http.HTTPFlow, context: RequestContext) -> None:
        """A blob passing from upstream (or its storage) with a full 200 body fills the cache."""
        route = context.route
        if not self.ready or route is None or route.kind != "blob" or flow.request.method != "GET":
            return
        state: CacheRequest | None = context.extra.get(STATE_KEY)
        if state is None and context.to_storage:
            state = self._storage_leg(flow, context)
        if state is None or not state.may_fill or state.fill is not None:
            return
        response = flow.response
        assert response is not None
        length = response.headers.get("Content-Length", "")
        if response.status_code != 200 or not callable(response.stream) or "Content-Range" in response.headers:
            return
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            return
        expected = int(length) if length.isdigit() else None
        if expected is not None and expected > self.config.max_size:
            return
        try:
            state.fill = Fill(self.store, state.digest, expected, serve.BLOB_CONTENT_TYPE, state.scope, state.flight)
        except OSError as e:
            log.warning("cache: cannot start a fill of %s: %s", state.digest, e.strerror)
            return
        response.stream = TeeStream(response.stream, state.fill)

    def _storage_leg(self, flow: http.HTTPFlow, context: RequestContext) -> CacheRequest | None:
        """The second leg of a redirected blob (blob_redirects: follow): it fills, and continues the
        first leg's flight. Its license check happened on the first leg (the sealed URL)."""
        digest = context.route.reference
        if not is_sha256(digest) or "Range" in flow.request.headers:
            return None
        state = CacheRequest(self.scope(context), digest=digest, may_fill=True, flight=self.flights.adopt(digest))
        context.extra[STATE_KEY] = state
        context.cache = "miss"
        return state

    # -- response / error ---------------------------------------------------------------------

    def response(self, flow: http.HTTPFlow, context: RequestContext) -> None:
        state: CacheRequest | None = context.extra.get(STATE_KEY)
        if state is None:
            return
        if state.fill is not None:
            self._settle_fill(context, state.fill, "the answer ended before its body did")
        elif state.may_fill and not state.served and context.route is not None and context.route.kind == "manifest":
            self._fill_manifest(flow, context, state)
        if state.served == "redirect":
            context.bytes = state.size  # sent by the file server; the pull log counts it as the customer's
        if state.corrupt:
            context.error_code = "UNAVAILABLE"
        self._land(flow, state)
        self.stats.count(context.cache, context.bytes)

    def error(self, flow: http.HTTPFlow, context: RequestContext) -> None:
        state: CacheRequest | None = context.extra.get(STATE_KEY)
        if state is None:
            return
        if state.fill is not None:
            self._settle_fill(context, state.fill, "the transfer broke off")
        if state.flight is not None:
            state.flight.finish(False)
        self.stats.count(context.cache, context.bytes)

    def _settle_fill(self, context: RequestContext, fill: Fill, reason: str) -> None:
        fill.abort(reason)  # nothing happens to a fill that already committed or was dropped
        if fill.committed:
            context.cache = "fill"
            self.stats.bytes_filled += fill.size
        else:
            self.stats.fills_dropped += 1

    def _land(self, flow: http.HTTPFlow, state: CacheRequest) -> None:
        flight = state.flight
        if flight is None or flight.done.is_set():
            return
        response = flow.response
        if response is not None and response.status_code == 307 and f"{QUERY_PARAM}=" in response.headers.get("Location", ""):
            self.flights.hand_over(flight, HANDOVER)  # the client comes back for the storage leg
        else:
            flight.finish(False)

    def _fill_manifest(self, flow: http.HTTPFlow, context: RequestContext, state: CacheRequest) -> None:
        response = flow.response
        route = context.route
        if response is None or response.status_code != 200 or context.streamed or context.replacement is not None:
            return
        if response.headers.get("Content-Encoding", "identity").lower() != "identity":
            return
        body = response.raw_content or b""
        media_type = manifests.media_type_of(response.headers)
        if not body or len(body) > MAX_MANIFEST or not media_type:
            return
        actual = f"sha256:{hashlib.sha256(body).hexdigest()}"
        expected = route.reference if route.is_digest else response.headers.get("Docker-Content-Digest", actual)
        if actual != expected:
            log.warning("%s: manifest %s does not match its digest %s; not cached", context.request_id, actual, expected[:80])
            return
        try:
            self.store.put_bytes(actual, body, media_type, state.scope)
        except OSError as e:
            log.warning("cache: cannot store manifest %s: %s", actual, e.strerror)
            return
        if not route.is_digest:
            self.store.remember_tag(state.scope, route.reference, actual, media_type)
        context.cache = "fill"
        self.stats.bytes_filled += len(body)
