"""Pull events: one JSON line per proxied request, appended atomically to the pull log.

NOTE: the shape follows Distribution's notification events (notifications/event.go), flattened.
Rotation by size (`pull_log: {path, max_size, keep}`) renames PATH to PATH.1 (PATH.1 to PATH.2, ...)
under the same lock as the writes, so every line lands whole in exactly one file.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .config import LogRotation
from .errors import ConfigError

log = logging.getLogger("authmirror.pulllog")



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
    error: str | None = None  # the message the client got (never a secret: messages are client-facing)
    bytes: int = 0
    duration_ms: float = 0.0
    client_ip: str | None = None
    user_agent: str | None = None
    cache: str | None = None
    ratelimit: dict[str, int] | None = None  # upstream rate-limit state (Docker Hub): limit, remaining, window_s

    def to_json(self) -> str:
        # NOTE: not dataclasses.asdict: it deep-copies every value, 5x the cost of this.
        data = {name: getattr(self, name) for name in _field_names()}
        for optional in ("cache", "ratelimit"):
            if data[optional] is None:
                del data[optional]
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@functools.cache
def _field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(PullEvent))


def utc_timestamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


class PullLog:
    """Appends events with one write() each on an O_APPEND descriptor: lines are never torn.

    With a rotation, a write that would take the file past max_size first renames it to PATH.1
    and opens a fresh PATH; a failed rotation keeps writing to the old file (nothing is lost).
    """

    def __init__(self, path: Path | None, rotation: LogRotation | None = None):
        self.path = path
        self.rotation = rotation
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()  # the event loop is the only writer; the lock makes threads safe too
        self.failures = 0

    def open(self) -> None:
        if self.path is None or str(self.path) == "-":
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = self._open_file()
        except OSError as e:
            raise ConfigError("pull_log", f"cannot open {self.path} for appending: {e.strerror}") from None

    def _open_file(self) -> int:
        assert self.path is not None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._size = os.fstat(fd).st_size
        return fd

    def write(self, event: PullEvent) -> None:
        line = (event.to_json() + "\n").encode()
        if self.path is None:
            return
        if str(self.path) == "-":
            sys.stdout.write(line.decode())
            sys.stdout.flush()
            return
        with self._lock:
            try:
                assert self._fd is not None, "pull log not opened"
                if self.rotation and self._size and self._size + len(line) > self.rotation.max_size:
                    self._rotate()
                written = os.write(self._fd, line)
                self._size += written
                if written != len(line):
                    raise OSError(f"short write ({written} of {len(line)} bytes)")
            except OSError as e:
                # Loud, not fatal: losing usage data must be visible, but pulls keep working.
                self.failures += 1
                log.error("PULL LOG WRITE FAILED (%s): %s; event lost: %s", self.path, e, event.request_id)

    def _rotate(self) -> None:
        """PATH.(keep-1) -> PATH.keep ... PATH -> PATH.1, then a new PATH. Called under the lock."""
        assert self.path is not None and self.rotation is not None and self._fd is not None
        try:
            for index in range(self.rotation.keep - 1, 0, -1):
                older = rotated_path(self.path, index)
                if older.exists():
                    os.replace(older, rotated_path(self.path, index + 1))
            if self.path.exists():  # absent only after an earlier, half-done rotation
                os.replace(self.path, rotated_path(self.path, 1))
            fresh = self._open_file()
        except OSError as e:
            log.error("pull log rotation failed (%s): %s; still writing to the current file", self.path, e)
            self._size = 0  # try again after another max_size, not on every write
            return
        old, self._fd = self._fd, fresh
        os.close(old)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def rotated_path(path: Path, index: int) -> Path:
    """PATH.1 is the newest rotated file, PATH.<keep> the oldest."""
    return path.with_name(f"{path.name}.{index}")
