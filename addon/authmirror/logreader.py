"""Reading pull logs: each log's rotated files in order, events streamed (memory stays flat),
several logs (one per replica) merged by time, and a live log followed across rotations."""

from __future__ import annotations

import datetime as dt
import gzip
import heapq
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from .errors import AuthMirrorError

try:  # orjson parses pull events about 3x faster; the standard library reads them just as well
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a bare install working
    _loads = json.loads

# Pull events start with {"ts":"2026-12-04T17:08:12.961Z", (PullEvent.to_json keeps field order):
# the time window is checked on those bytes before a line is parsed.
TS_PREFIX = b'{"ts":"'
TS_END = len(TS_PREFIX) + len("2026-12-04T17:08:12.961Z")
_ROTATED_RE = re.compile(r"^\.(\d+)(\.gz)?$")
_RELATIVE_RE = re.compile(r"^(\d+)\s*([mhdw])$")
_RELATIVE_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class LogError(AuthMirrorError):
    """A pull log that cannot be read, or a time that cannot be understood."""


@dataclass
class ReadStats:
    files: int = 0
    lines: int = 0
    skipped: int = 0  # lines that are not JSON objects (a torn last line of a live file, garbage)


def log_files(path: Path) -> list[Path]:
    """A log's files, oldest first: PATH.N ... PATH.1 (or PATH.N.gz, as logrotate leaves them), PATH."""
    rotated: list[tuple[int, Path]] = []
    if path.parent.is_dir():
        for sibling in path.parent.iterdir():
            if sibling.name.startswith(path.name + "."):
                match = _ROTATED_RE.match(sibling.name[len(path.name):])
                if match:
                    rotated.append((int(match.group(1)), sibling))
    files = [p for _, p in sorted(rotated, key=lambda item: -item[0])]
    if path.exists():
        files.append(path)
    return files


def expand_logs(paths: Iterable[Path]) -> list[list[Path]]:
    """One file list per log; a directory stands for every *.jsonl log in it (e.g. one per replica)."""
    logs: list[list[Path]] = []
    for path in paths:
        if path.is_dir():
            logs.extend(log_files(base) for base in sorted(path.glob("*.jsonl")) if base.is_file())
            continue
        files = log_files(path)
        if not files:
            raise LogError(f"no pull log at {path}")
        logs.append(files)
    return [files for files in logs if files]


def open_log(path: Path) -> IO[bytes]:
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115 - caller closes
    except OSError as e:
        raise LogError(f"cannot read {path}: {e.strerror}") from None


def parse_line(line: bytes, stats: ReadStats) -> dict | None:
    try:
        event = _loads(line)
    except ValueError:  # orjson.JSONDecodeError is a ValueError too
        event = None
    if not isinstance(event, dict):
        if line.strip():
            stats.skipped += 1
        return None
    return event


def read_log(files: list[Path], stats: ReadStats, since: str | None = None, until: str | None = None) -> Iterator[dict]:
    """Events of one log (its files in order) within [since, until), streamed line by line."""
    since_b = since.encode() if since else None
    until_b = until.encode() if until else None
    for path in files:
        stats.files += 1
        with open_log(path) as stream:
            for line in stream:
                stats.lines += 1
                if (since_b or until_b) and line.startswith(TS_PREFIX):
                    ts = line[len(TS_PREFIX):TS_END]
                    if (since_b and ts < since_b) or (until_b and ts >= until_b):
                        continue
                    event = parse_line(line, stats)
                else:
                    event = parse_line(line, stats)
                    if event is not None and not in_window(str(event.get("ts", "")), since, until):
                        continue
                if event is not None:
                    yield event


def in_window(ts: str, since: str | None, until: str | None) -> bool:
    return (since is None or ts >= since) and (until is None or ts < until)


def read_events(logs: list[list[Path]], stats: ReadStats, since: str | None = None, until: str | None = None) -> Iterator[dict]:
    """All logs' events; several logs (replicas) are merged by time, still streaming."""
    streams = [read_log(files, stats, since, until) for files in logs]
    if len(streams) == 1:
        return streams[0]
    return heapq.merge(*streams, key=lambda event: str(event.get("ts", "")))


# -- times --------------------------------------------------------------------------------------


def event_timestamp(moment: dt.datetime) -> str:
    """The pull events' own format, so windows compare as strings."""
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str, *, end: bool = False, now: float | None = None) -> str:
    """'2026-12-01', '2026-12-01T10:00', or relative '90m', '24h', '7d', '2w' (ago).

    A date given as an end (`--until 2026-12-01`) includes that whole day.
    """
    text = text.strip()
    relative = _RELATIVE_RE.match(text)
    if relative:
        seconds = int(relative.group(1)) * _RELATIVE_UNITS[relative.group(2)]
        return event_timestamp(dt.datetime.fromtimestamp((time.time() if now is None else now) - seconds, dt.timezone.utc))
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        pass
    else:
        moment = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
        return event_timestamp(moment + dt.timedelta(days=1) if end else moment)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise LogError(f"cannot read time {text!r}: use 2026-12-01, 2026-12-01T10:00 or 24h / 7d (ago)") from None
    return event_timestamp(moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc))


# -- following a live log ---------------------------------------------------------------------


class Follower:
    """Reads a log's current file as it grows. On rotation it finishes the old file, reads the files
    rotated after it (several rotations can happen between two polls), then takes the new file."""

    MAX_SNAPSHOT_TRIES = 20

    def __init__(self, path: Path):
        self.path = path
        self._stream: IO[bytes] | None = None
        self._inode: int | None = None
        self._partial = b""
        self._stream = self._open_current()

    def _open_current(self) -> IO[bytes] | None:
        try:
            stream = open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except FileNotFoundError:
            return None
        self._inode = os.fstat(stream.fileno()).st_ino
        return stream

    def _path_inode(self) -> int | None:
        try:
            return os.stat(self.path).st_ino
        except FileNotFoundError:
            return None

    def read_available(self) -> Iterator[bytes]:
        """Complete lines written so far; a half-written line waits for its end."""
        if self._stream is None:
            return
        while True:
            chunk = self._stream.read(1 << 16)
            if not chunk:
                return
            data = self._partial + chunk
            lines = data.split(b"\n")
            self._partial = lines.pop()
            yield from (line for line in lines if line)

    def _rotated(self) -> bool:
        inode = self._path_inode()
        if inode is None:
            return False  # between the rename and the new file: keep reading the old one
        if inode != self._inode:
            return True
        if self._stream is not None and os.stat(self.path).st_size < self._stream.tell():
            self._stream.seek(0)  # truncated in place (copytruncate)
            self._partial = b""
        return False

    def follow(self, poll_seconds: float = 0.5, stop: Callable[[], bool] = lambda: False) -> Iterator[bytes]:
        while not stop():
            yield from self.read_available()
            if self._stream is None:
                self._stream = self._open_current()
                if self._stream is not None:
                    continue
            elif self._rotated():
                yield from self.read_available()  # the old file's last lines, written before the rename
                yield from self._switch()
                continue
            time.sleep(poll_seconds)

    def _switch(self) -> Iterator[bytes]:
        """After a rotation: the files rotated after the one just read (oldest first), then the new file."""
        newer, current = self._snapshot()
        assert self._stream is not None
        self._stream.close()
        self._stream, self._partial = current, b""
        self._inode = os.fstat(current.fileno()).st_ino if current else None
        try:
            for stream in reversed(newer):
                yield from (line.rstrip(b"\n") for line in stream if line.strip())
        finally:
            for stream in newer:
                stream.close()

    def _snapshot(self) -> tuple[list[IO[bytes]], IO[bytes] | None]:
        """Open PATH.1, PATH.2, ... up to the file we followed, and PATH, with no rotation in between
        (PATH's inode unchanged from start to end); open files no longer care about renames."""
        for _ in range(self.MAX_SNAPSHOT_TRIES):
            before = self._path_inode()
            newer: list[IO[bytes]] = []
            found = False
            while not found:
                try:
                    stream = open(self.path.with_name(f"{self.path.name}.{len(newer) + 1}"), "rb")  # noqa: SIM115 - caller closes
                except FileNotFoundError:
                    break
                if os.fstat(stream.fileno()).st_ino == self._inode:
                    stream.close()
                    found = True
                else:
                    newer.append(stream)
            current = self._open_current_quietly()
            current_inode = os.fstat(current.fileno()).st_ino if current else None
            if before == self._path_inode() == current_inode:
                # Without the old file among the rotated ones (deleted: `keep` exceeded) the order is unknown.
                return (newer if found else self._close_all(newer)), current
            self._close_all(newer)
            if current:
                current.close()
        return [], self._open_current_quietly()

    def _open_current_quietly(self) -> IO[bytes] | None:
        try:
            return open(self.path, "rb")  # noqa: SIM115 - kept open while following
        except FileNotFoundError:
            return None

    @staticmethod
    def _close_all(streams: list[IO[bytes]]) -> list[IO[bytes]]:
        for stream in streams:
            stream.close()
        return []

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
