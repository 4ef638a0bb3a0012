"""The cache's pure parts: its config section, the store (commit, links, LRU, restart), fills,
flights and signed paths."""

import asyncio
import base64
import hashlib
import hmac
import os
from pathlib import Path

import pytest

from authmirror.cache.fileserver import sign_path
from authmirror.cache.fill import Fill, Flights, TeeStream
from authmirror.cache.settings import DEFAULT_NJS_MODULE, parse_cache
from authmirror.cache.store import BlobStore, Scope, file_digest
from authmirror.errors import ConfigError

SCOPE = Scope("acme", "vendor", "http://upstream:5001/", "vendor/app")
OTHER_REPO = Scope("acme", "vendor", "http://upstream:5001/", "vendor/other")
OTHER_APP = Scope("beta", "vendor", "http://upstream:5001/", "vendor/app")


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        self.now += 1  # every call is a later moment: LRU order is the order of use
        return self.now


@pytest.fixture
def store(tmp_path):
    store = BlobStore(tmp_path / "cache", max_size=10_000, clock=Clock())
    store.open()
    yield store
    store.close()


def put(store: BlobStore, data: bytes, scope: Scope = SCOPE) -> str:
    digest = digest_of(data)
    store.put_bytes(digest, data, "application/octet-stream", scope)
    return digest


# -- settings ---------------------------------------------------------------------------------


def test_cache_is_off_unless_configured_and_has_defaults(tmp_path):
    assert parse_cache(None, tmp_path) is None and parse_cache(False, tmp_path) is None
    config = parse_cache({"dir": "c", "max_size": "2GiB", "manifests": {"stale_if_error": "1h"}}, tmp_path)
    assert (config.dir, config.max_size, config.serve, config.stale_if_error, config.verify) == (tmp_path / "c", 2 * 1024**3, "proxy", 3600.0, "changed")
    fs = config.file_server
    assert (fs.listen, fs.public_url, fs.url_ttl, fs.managed, fs.njs_module) == (None, None, 60.0, True, DEFAULT_NJS_MODULE)
    redirect = parse_cache({"serve": "redirect", "file_server": {"listen": "0.0.0.0:5002", "public_url": "https://cache.example.com/"}}, tmp_path)
    assert redirect.file_server.listen.port == 5002 and redirect.file_server.public_url == "https://cache.example.com"


@pytest.mark.parametrize(
    "raw, key",
    [
        ({"serve": "sendfile"}, "cache.serve"),
        ({"max_size": "lots"}, "cache.max_size"),
        ({"max_size": 0}, "cache.max_size"),
        ({"manifests": {"stale_if_error": "forever"}}, "cache.manifests.stale_if_error"),
        ({"manifests": {"stale": "1h"}}, "cache.manifests.stale"),
        ({"verify": "never"}, "cache.verify"),
        ({"dirr": "x"}, "cache.dirr"),
        ({"file_server": {"managed": False}}, "cache.file_server.listen"),
        ({"file_server": {"public_url": "ftp://x"}}, "cache.file_server.public_url"),
        ({"file_server": {"url_ttl": "2d"}}, "cache.file_server.url_ttl"),
        ("yes", "cache"),
    ],
)
def test_bad_cache_settings_name_the_key(tmp_path, raw, key):
    with pytest.raises(ConfigError) as error:
        parse_cache(raw, tmp_path)
    assert error.value.key == key


# -- store ------------------------------------------------------------------------------------


def test_commit_links_only_the_repository_it_came_from(store):
    digest = put(store, b"layer bytes")
    entry = store.entry(digest)
    assert entry.size == 11 and store.path(digest).read_bytes() == b"layer bytes"
    assert store.linked(SCOPE, digest)
    assert not store.linked(OTHER_REPO, digest) and not store.linked(OTHER_APP, digest)
    assert file_digest(store.path(digest)) == (digest, 11)
    with pytest.raises(ValueError):
        store.path("sha256:../../etc/passwd")


def test_least_recently_used_is_evicted_first_and_pins_hold(store):
    a, b, c = (put(store, bytes([n]) * 4000) for n in (1, 2, 3))  # 12 000 > 10 000: a goes
    assert store.entry(a) is None and not store.path(a).exists() and store.total == 8000
    store.touch(b)  # b is now more recent than c
    store.pin(c, store.clock.now + 100)  # a signed URL to c is out
    d = put(store, b"d" * 4000)
    assert store.entry(b) is None, "c is pinned and d just came: b is the one to go"
    assert {x for x in (c, d) if store.entry(x)} == {c, d} and store.evictions == 2
    assert not store.linked(SCOPE, b)


def test_index_survives_a_restart_and_drops_what_disk_does_not_have(tmp_path):
    store = BlobStore(tmp_path / "cache", max_size=10_000, clock=Clock())
    store.open()
    kept, lost = put(store, b"kept"), put(store, b"lost")
    store.remember_tag(SCOPE, "1.0", kept, "application/vnd.oci.image.manifest.v1+json")
    store.close()
    store.path(lost).unlink()
    orphan = store.files / "sha256" / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"half a commit")
    (store.tmp / "fill-x").write_bytes(b"an interrupted fill")

    again = BlobStore(tmp_path / "cache", max_size=10_000, clock=Clock())
    again.open()
    try:
        assert again.entry(kept).signature is not None and again.linked(SCOPE, kept)
        assert again.entry(lost) is None and not orphan.exists() and not list(again.tmp.iterdir())
        assert again.total == 4 and again.tag(SCOPE, "1.0").digest == kept
    finally:
        again.close()


def test_unclean_shutdown_means_every_file_is_rehashed(tmp_path):
    store = BlobStore(tmp_path / "cache", max_size=10_000)
    store.open()
    digest = put(store, b"data")
    store.db.close()  # the process dies: no clean marker, lock released by the OS
    store._db = None
    store._unlock()
    again = BlobStore(tmp_path / "cache", max_size=10_000)
    again.open()
    try:
        assert again.entry(digest).signature is None
    finally:
        again.close()


def test_one_process_per_cache_dir(store, tmp_path):
    with pytest.raises(ConfigError, match=f"in use by another authmirror process \\(pid {os.getpid()}\\)"):
        BlobStore(tmp_path / "cache", max_size=1).open()


# -- fills and flights ------------------------------------------------------------------------


def run_fill(store, data: bytes, digest: str, expected: int | None, chunks: int = 4) -> Fill:
    fill = Fill(store, digest, expected, "application/octet-stream", SCOPE)
    tee = TeeStream(lambda chunk: chunk, fill)
    step = max(1, len(data) // chunks)
    passed = b"".join(tee(data[i : i + step]) for i in range(0, len(data), step))
    assert passed == data, "the client's bytes are untouched"
    tee(b"")
    return fill


@pytest.mark.parametrize(
    "data, announced, committed",
    [
        (b"x" * 5000, 5000, True),
        (b"x" * 5000, None, True),  # no Content-Length: the digest decides
        (b"x" * 4000, 5000, False),  # truncated
        (b"y" * 5000, 5000, False),  # complete, but other bytes than the digest says
        (b"x" * 5001, 5000, False),  # longer than announced
    ],
)
def test_only_complete_matching_bodies_are_committed(store, data, announced, committed):
    digest = digest_of(b"x" * 5000)
    fill = run_fill(store, data, digest, announced)
    assert fill.committed is committed
    assert (store.entry(digest) is not None) is committed
    assert not list(store.tmp.iterdir()), "nothing left behind"


def test_an_aborted_fill_leaves_nothing(store):
    fill = Fill(store, digest_of(b"abc"), 3, "application/octet-stream", SCOPE)
    fill.write(b"ab")
    fill.abort("the transfer broke off")
    assert not fill.finish() and store.entry(digest_of(b"abc")) is None and not list(store.tmp.iterdir())


async def test_waiters_are_released_by_the_leader_or_by_a_stall():
    flights = Flights()
    flight = flights.start("sha256:x")
    assert flights.current("sha256:x") is flight

    async def lead():
        for _ in range(3):
            await asyncio.sleep(0.05)
            flight.progress += 100  # slow but moving: waiters keep waiting
        flight.finish(True)

    leader = asyncio.ensure_future(lead())
    assert await flights.wait(flight, stall_seconds=0.08) is True
    await leader
    assert flights.current("sha256:x") is None

    stuck = flights.start("sha256:y")
    assert await flights.wait(stuck, stall_seconds=0.05) is False  # no progress: fetch separately


def test_a_redirected_leader_hands_its_flight_to_the_storage_leg():
    clock = Clock()
    flights = Flights(clock)
    flight = flights.start("sha256:z")
    flights.hand_over(flight, 60)
    assert flights.adopt("sha256:z") is flight and flight.handed_over_until is None
    flights.hand_over(flight, 60)
    clock.now += 120  # the client never came back
    assert flights.current("sha256:z") is None and flight.ok is False


def test_signed_paths_cover_digest_and_expiry():
    digest = "sha256:" + "ab" * 32
    path = sign_path("k3y", digest, 1_900_000_000)
    assert path.startswith(f"/sha256/ab/{'ab' * 32}?expires=1900000000&sig=")
    mac = hmac.new(b"k3y", f"/sha256/ab/{'ab' * 32}\n1900000000".encode(), hashlib.sha256).digest()
    assert path.endswith(base64.urlsafe_b64encode(mac).decode().rstrip("="))
    assert sign_path("k3y", digest, 1_900_000_001) != path and sign_path("other", digest, 1_900_000_000) != path
