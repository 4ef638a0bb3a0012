"""Content-addressed cache files and their index: which blobs and manifests we hold, which
repositories may see them, which digest each tag last named, and least-recently-used order.
Everything survives restarts.

Layout under the cache `dir`:

    files/sha256/ab/abcdef...   one file per blob or manifest, stored unchanged (named by its digest)
    tmp/                        fills in progress (same filesystem, so a commit is an atomic rename)
    index.sqlite                entries, links, tags
    lock                        one mirror process per cache dir (flock)
    clean                       present only while no process has the cache open and it was closed cleanly

A file is only ever served for a repository that has a *link* to its digest: the upstream gave us
that digest for that (app, registry, upstream, repository), as Distribution keeps per-repository
links. Digest guessing across repositories or apps therefore finds nothing.

Each entry records the file's stat signature (inode, size, mtime, ctime) when it was last known
good. Anything that writes to the file changes its ctime, which cannot be set back, so a changed
signature means "hash it again before serving". After an unclean shutdown every signature is
dropped, so every file is re-hashed before its first serve.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError

log = logging.getLogger("authmirror.cache")

SHA256_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
FILE_MODE = 0o640  # group-readable: an nginx run by the operator (managed: false) may be in the group
DIR_MODE = 0o750

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    media_type TEXT NOT NULL,
    signature TEXT,
    last_access REAL NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_access ON entries(last_access);
CREATE TABLE IF NOT EXISTS links (
    app TEXT NOT NULL, registry TEXT NOT NULL, upstream TEXT NOT NULL, repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (app, registry, upstream, repository, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_by_digest ON links(digest);
CREATE TABLE IF NOT EXISTS tags (
    app TEXT NOT NULL, registry TEXT NOT NULL, upstream TEXT NOT NULL, repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    validated REAL NOT NULL,
    PRIMARY KEY (app, registry, upstream, repository, tag)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Scope:
    """Where a digest was seen upstream: the key of a link. `upstream` is the registry's origin and
    repository prefix, so a registry re-pointed at another upstream starts with no links."""

    app: str
    registry: str
    upstream: str
    repository: str

    def key(self) -> tuple[str, str, str, str]:
        return (self.app, self.registry, self.upstream, self.repository)


@dataclass(frozen=True)
class Entry:
    digest: str
    size: int
    media_type: str
    signature: str | None
    last_access: float


@dataclass(frozen=True)
class TagRecord:
    digest: str
    media_type: str
    validated: float  # when the upstream last named this digest for the tag


def is_sha256(digest: str) -> bool:
    return bool(SHA256_DIGEST.match(digest))


def signature(st: os.stat_result) -> str:
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def file_digest(path: Path) -> tuple[str, int]:
    """sha256 digest and size of a file, read in 1 MiB pieces (runs in a worker thread)."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as f:
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        while n := f.readinto(buffer):
            sha.update(view[:n])
            size += n
    return f"sha256:{sha.hexdigest()}", size


class BlobStore:
    def __init__(self, root: Path, max_size: int, clock: Callable[[], float] = time.time):
        self.root = root
        self.files = root / "files"
        self.tmp = root / "tmp"
        self.max_size = max_size
        self.clock = clock
        self.total = 0  # bytes held, kept in step with the index
        self.evictions = 0
        self.pins: dict[str, float] = {}  # digest -> until when it must not be evicted (a URL to it is out)
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    # -- open / close -------------------------------------------------------------------------

    def open(self) -> None:
        try:
            for directory in (self.root, self.files / "sha256", self.tmp):
                directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError("cache.dir", f"cannot create {self.root}: {e.strerror}") from None
        self._lock()
        try:
            self._db = sqlite3.connect(self.root / "index.sqlite", isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as e:
            self._unlock()
            raise ConfigError("cache.dir", f"cannot open the cache index {self.root / 'index.sqlite'}: {e}") from None
        clean_marker = self.root / "clean"
        clean = clean_marker.exists()
        clean_marker.unlink(missing_ok=True)
        self._reconcile(clean)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            (self.root / "clean").touch()
        self._unlock()

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "cache store not open"
        return self._db

    def _lock(self) -> None:
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise ConfigError("cache.dir", f"{self.root} is in use by another authmirror process (pid {holder or '?'}); give each mirror its own cache dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _reconcile(self, clean: bool) -> None:
        """Make index and files agree after whatever happened while we were not running."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(mode=DIR_MODE, exist_ok=True)
        indexed = {digest for (digest,) in self.db.execute("SELECT digest FROM entries")}
        on_disk = set()
        for shard in (self.files / "sha256").iterdir():
            for path in shard.iterdir() if shard.is_dir() else ():
                digest = f"sha256:{path.name}"
                if digest in indexed and path.parent.name == path.name[:2]:
                    on_disk.add(digest)
                else:
                    path.unlink(missing_ok=True)  # a file we never finished committing: untrusted
        for digest in indexed - on_disk:
            self.db.execute("DELETE FROM entries WHERE digest = ?", (digest,))
        if not clean and on_disk:
            log.warning("cache %s was not closed cleanly: every file is re-hashed before it is next served", self.root)
            self.db.execute("UPDATE entries SET signature = NULL")
        self.total = self.db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        self.evict()

    # -- files --------------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        if not is_sha256(digest):
            raise ValueError(f"not a sha256 digest: {digest[:80]!r}")
        hex_digest = digest[7:]
        return self.files / "sha256" / hex_digest[:2] / hex_digest

    def temp_file(self) -> tuple[Path, int]:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="fill-")
        os.fchmod(fd, FILE_MODE)
        return Path(name), fd

    def commit(self, temp: Path, digest: str, size: int, media_type: str, scope: Scope) -> None:
        """Move a verified temp file into place (atomic rename), index it, link it, evict if full."""
        if self.entry(digest) is not None:
            temp.unlink(missing_ok=True)  # another fill got there first: same bytes
        else:
            final = self.path(digest)
            final.parent.mkdir(mode=DIR_MODE, exist_ok=True)
            os.replace(temp, final)
            now = self.clock()
            self.db.execute(
                "INSERT OR REPLACE INTO entries (digest, size, media_type, signature, last_access, created) VALUES (?, ?, ?, ?, ?, ?)",
                (digest, size, media_type, signature(os.stat(final)), now, now),
            )
            self.total += size
        self.link(scope, digest)
        self.touch(digest)
        self.evict(keep=digest)

    def put_bytes(self, digest: str, data: bytes, media_type: str, scope: Scope) -> None:
        """Store a small, already verified body (a manifest)."""
        temp, fd = self.temp_file()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.commit(temp, digest, len(data), media_type, scope)
        finally:
            temp.unlink(missing_ok=True)

    # -- index --------------------------------------------------------------------------------

    def entry(self, digest: str) -> Entry | None:
        row = self.db.execute(
            "SELECT digest, size, media_type, signature, last_access FROM entries WHERE digest = ?", (digest,)
        ).fetchone()
        return Entry(*row) if row else None

    def linked(self, scope: Scope, digest: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM links WHERE app = ? AND registry = ? AND upstream = ? AND repository = ? AND digest = ?",
            (*scope.key(), digest),
        ).fetchone()
        return row is not None

    def link(self, scope: Scope, digest: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO links VALUES (?, ?, ?, ?, ?)", (*scope.key(), digest))

    def touch(self, digest: str) -> None:
        self.db.execute("UPDATE entries SET last_access = ? WHERE digest = ?", (self.clock(), digest))

    def record_signature(self, digest: str, sig: str) -> None:
        self.db.execute("UPDATE entries SET signature = ? WHERE digest = ?", (sig, digest))

    def pin(self, digest: str, until: float) -> None:
        self.pins[digest] = max(until, self.pins.get(digest, 0.0))

    def forget(self, digest: str) -> None:
        """Drop an entry, its file and its links (corrupt, missing or evicted)."""
        row = self.db.execute("SELECT size FROM entries WHERE digest = ?", (digest,)).fetchone()
        self.db.execute("DELETE FROM entries WHERE digest = ?", (digest,))
        self.db.execute("DELETE FROM links WHERE digest = ?", (digest,))
        if row:
            self.total -= row[0]
        self.pins.pop(digest, None)
        try:
            self.path(digest).unlink(missing_ok=True)
        except OSError as e:
            log.warning("cache: cannot remove %s: %s", digest, e.strerror)

    def evict(self, keep: str | None = None) -> list[str]:
        """Least recently used first, until the cache fits `max_size`. Pinned entries (a signed URL
        to them is still valid) are skipped, so the cache may briefly hold more."""
        if self.total <= self.max_size:
            return []
        now = self.clock()
        self.pins = {d: until for d, until in self.pins.items() if until > now}
        evicted = []
        for digest, size in self.db.execute("SELECT digest, size FROM entries ORDER BY last_access").fetchall():
            if self.total <= self.max_size:
                break
            if digest == keep or digest in self.pins:
                continue
            self.forget(digest)
            evicted.append(digest)
        if evicted:
            self.evictions += len(evicted)
            log.info("cache: evicted %d least recently used file(s); %d of %d bytes used", len(evicted), self.total, self.max_size)
        return evicted

    def entries(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    # -- tags ---------------------------------------------------------------------------------

    def remember_tag(self, scope: Scope, tag: str, digest: str, media_type: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*scope.key(), tag, digest, media_type, self.clock()),
        )

    def tag(self, scope: Scope, tag: str) -> TagRecord | None:
        row = self.db.execute(
            "SELECT digest, media_type, validated FROM tags WHERE app = ? AND registry = ? AND upstream = ? AND repository = ? AND tag = ?",
            (*scope.key(), tag),
        ).fetchone()
        return TagRecord(*row) if row else None
