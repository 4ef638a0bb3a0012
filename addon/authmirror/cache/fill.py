"""Filling the cache while a blob streams to the client, with one upstream fetch per cold blob.

A `Fill` writes each chunk to a temporary file and hashes it as it passes on its way to the
client. Only a body whose length and sha256 match the digest is committed (an atomic rename into
the store). A truncated or mismatching body, an aborted transfer or a full disk leaves nothing
behind, and never disturbs the client's transfer.

`Flights`: the first full GET of a cold blob leads; concurrent GETs of the same blob wait for its
fill and are then served from the cache. Waiting is progress-aware: a leader that stalls (its
client stopped reading, the upstream hangs) releases the waiters, which then fetch for themselves.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from typing import Callable

from .store import BlobStore, Scope

log = logging.getLogger("authmirror.cache")

StreamCallable = Callable[[bytes], "bytes | list[bytes]"]


class Flight:
    """One cold blob being fetched upstream by a leading request."""

    def __init__(self, digest: str, on_finish: Callable[["Flight"], None]):
        self.digest = digest
        self.done = asyncio.Event()
        self.ok: bool | None = None
        self.progress = 0  # bytes filled so far; waiters watch it to tell slow from stalled
        self.handed_over_until: float | None = None  # waiting for the storage leg of a redirected fetch
        self._on_finish = on_finish

    def finish(self, ok: bool) -> None:
        if not self.done.is_set():
            self.ok = ok
            self.done.set()
            self._on_finish(self)


class Flights:
    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._active: dict[str, Flight] = {}

    def current(self, digest: str) -> Flight | None:
        flight = self._active.get(digest)
        if flight is not None and flight.handed_over_until is not None and flight.handed_over_until < self.clock():
            flight.finish(False)  # the client never came back for the storage leg
            return None
        return flight

    def start(self, digest: str) -> Flight:
        flight = Flight(digest, self._finished)
        self._active[digest] = flight
        return flight

    def hand_over(self, flight: Flight, seconds: float) -> None:
        """The upstream redirected the leader to blob storage: its client's next request (the
        storage leg, a new flow) continues the flight."""
        flight.handed_over_until = self.clock() + seconds
        flight.progress += 1

    def adopt(self, digest: str) -> Flight | None:
        flight = self.current(digest)
        if flight is None or flight.handed_over_until is None:
            return None
        flight.handed_over_until = None
        return flight

    def _finished(self, flight: Flight) -> None:
        if self._active.get(flight.digest) is flight:
            del self._active[flight.digest]

    @staticmethod
    async def wait(flight: Flight, stall_seconds: float) -> bool:
        """Wait for the flight to land. False when it made no progress for `stall_seconds`."""
        last = flight.progress
        while not flight.done.is_set():
            try:
                await asyncio.wait_for(flight.done.wait(), stall_seconds)
            except TimeoutError:
                if flight.progress == last:
                    return False
                last = flight.progress
        return True


class Fill:
    """One body on its way from upstream into the store."""

    def __init__(self, store: BlobStore, digest: str, expected_size: int | None, media_type: str, scope: Scope, flight: Flight | None = None):
        self.store = store
        self.digest = digest
        self.expected_size = expected_size
        self.media_type = media_type
        self.scope = scope
        self.flight = flight
        self.size = 0
        self.outcome: str | None = None  # "committed", or why the fill was dropped
        self._sha = hashlib.sha256()
        self.path, self._fd = store.temp_file()

    @property
    def committed(self) -> bool:
        return self.outcome == "committed"

    def write(self, chunk: bytes) -> None:
        if self.outcome is not None:
            return
        try:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            return self.abort(f"cannot write to the cache: {e.strerror}")
        self._sha.update(chunk)
        self.size += len(chunk)
        if self.flight is not None:
            self.flight.progress = self.size
        limit = self.expected_size if self.expected_size is not None else self.store.max_size
        if self.size > limit:
            self.abort("body longer than announced" if self.expected_size is not None else "larger than the whole cache")

    def finish(self) -> bool:
        """The upstream's body ended: commit it if it is complete and matches its digest."""
        if self.outcome is not None:
            return False
        self._close()
        if self.expected_size is not None and self.size != self.expected_size:
            self.abort(f"truncated: {self.size} of {self.expected_size} bytes")
            return False
        actual = f"sha256:{self._sha.hexdigest()}"
        if actual != self.digest:
            self.abort(f"content does not match its digest (got {actual[:19]}...)")
            return False
        try:
            self.store.commit(self.path, self.digest, self.size, self.media_type, self.scope)
        except OSError as e:
            self.abort(f"cannot commit to the cache: {e.strerror}")
            return False
        self.outcome = "committed"
        if self.flight is not None:
            self.flight.finish(True)
        return True

    def abort(self, reason: str) -> None:
        """Leave nothing behind."""
        if self.outcome is not None:
            return
        self.outcome = reason
        self._close()
        self.path.unlink(missing_ok=True)
        if self.flight is not None:
            self.flight.finish(False)
        log.info("cache: not storing %s: %s", self.digest, reason)

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class TeeStream:
    """Wraps the stream callable of a passing blob: every chunk also goes into the fill; the end
    of the body (mitmproxy's final empty call) commits it."""

    def __init__(self, inner: StreamCallable, fill: Fill):
        self.inner = inner
        self.fill = fill

    def __call__(self, chunk: bytes):
        if chunk:
            self.fill.write(chunk)
        else:
            self.fill.finish()
        return self.inner(chunk)
