"""Pull events: one JSON line per proxied request, appended atomically to the pull log.

NOTE: the shape follows Distribution's notification events (notifications/event.go), flattened.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger("authmirror.pulllog")

ACTIONS = ("token", "manifest", "blob", "tags", "referrers", "catalog")


@dataclass
class PullEvent:
    ts: str = ""
    request_id: str = ""
    license: str | None = None  # fingerprint, never the license itself
    customer: str | None = None
    app: str | None = None
    registry: str | None = None
    upstream: str | None = None
    repository: str | None = None
    reference: str | None = None
    digest: str | None = None
    action: str = ""
    method: str = ""
    status: int = 0
    error_code: str | None = None
    bytes: int = 0
    duration_ms: float = 0.0
    client_ip: str | None = None
    user_agent: str | None = None
    cache: str | None = None

    def to_json(self) -> str:
        # NOTE: not dataclasses.asdict: it deep-copies every value, 5x the cost of this (all fields are scalars).
        data = {name: getattr(self, name) for name in _field_names()}
        if data["cache"] is None:
            del data["cache"]
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@functools.cache
def _field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(PullEvent))


def utc_timestamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


class PullLog:
    """Appends events with one write() each on an O_APPEND descriptor: lines are never torn."""

    def __init__(self, path: Path | None):
        self.path = path
        self._fd: int | None = None
        self.failures = 0

    def open(self) -> None:
        if self.path is None or str(self.path) == "-":
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as e:
            raise ConfigError("pull_log", f"cannot open {self.path} for appending: {e.strerror}") from None

    def write(self, event: PullEvent) -> None:
        line = (event.to_json() + "\n").encode()
        if self.path is None:
            return
        if str(self.path) == "-":
            sys.stdout.write(line.decode())
            sys.stdout.flush()
            return
        try:
            assert self._fd is not None, "pull log not opened"
            written = os.write(self._fd, line)
            if written != len(line):
                raise OSError(f"short write ({written} of {len(line)} bytes)")
        except OSError as e:
            # Loud, not fatal: losing usage data must be visible, but pulls keep working.
            self.failures += 1
            log.error("PULL LOG WRITE FAILED (%s): %s; event lost: %s", self.path, e, event.request_id)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
