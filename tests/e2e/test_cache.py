"""The verified blob cache for real: docker-registry upstreams, the mirror's managed nginx, skopeo
and raw HTTP clients. Each blob's upstream fetches are counted in the registry's access log."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from authmirror.cli.main import main
from tests.support import processes
from tests.support.faultserver import FaultServer
from tests.support.http import basic, request

from .conftest import LICENSES, MIRROR_ENV, VENDOR_PASSWORD, assert_no_secrets, license_entries
from .test_storage_redirects import s3_upstream  # noqa: F401 - a fixture: the S3-backed upstream

pytestmark = pytest.mark.e2e

APP = "proxy/acme/vendor/vendor/app"
VENDOR_AUTH = basic(VENDOR_PASSWORD, "vendor")


# -- helpers ----------------------------------------------------------------------------------


def vendor_registry(url: str, name: str = "vendor") -> dict:
    return {"name": name, "type": "basic", "url": url, "username": "vendor", "password": "env:E2E_VENDOR_PASS"}


def cache_mirror(workdir: Path, name: str, apps: dict, serve: str = "proxy", **cache) -> processes.MirrorProcess:
    """A mirror with the cache on (dir <workdir>/<name>/cache); `cache` overrides its settings."""
    port = processes.free_port()
    settings = {"dir": "cache", "max_size": "1GiB", "serve": serve, "manifests": {"stale_if_error": "1h"}, **cache}
    config = processes.write_mirror_config(workdir / name, port, apps, license_entries(), cache=settings)
    return processes.start_mirror(workdir / name, config, port, env=MIRROR_ENV)


def restart(mirror: processes.MirrorProcess) -> processes.MirrorProcess:
    mirror.stop()
    return processes.start_mirror(mirror.workdir, mirror.config_path, mirror.port, env=MIRROR_ENV)


def pull(mirror, image: str, dest: Path, license: str = LICENSES["valid"], check: bool = True):
    processes.clear_skopeo_cache()
    return processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"c:{license}", f"docker://{mirror.host}/{image}", f"oci:{dest}:x", check=check)


def pulled_digests(dest: Path) -> set[str]:
    return {f"sha256:{p.name}" for p in (dest / "blobs" / "sha256").iterdir()}


def image_digests(image) -> set[str]:
    return {image.manifest_digest, image.config.digest, *(layer.digest for layer in image.layers)}


def upstream_gets(registry, repository: str, digest: str, kind: str = "blobs", method: str = "GET") -> int:
    """Requests in the registry's access log. It writes a line once it has sent the answer, which
    can be just after our client got it: count when the log has been quiet for 100 ms."""
    deadline, quiet, size = time.time() + 3, 0, -1
    while quiet < 2 and time.time() < deadline:
        time.sleep(0.05)
        current = registry.process.log_path.stat().st_size
        quiet, size = (quiet + 1, size) if current == size else (0, current)
    return registry.access_log().count(f'"{method} /v2/{repository}/{kind}/{digest} ')


def cached_files(mirror) -> set[str]:
    root = mirror.workdir / "cache" / "files" / "sha256"
    return {f"sha256:{p.name}" for p in root.glob("*/*")} if root.exists() else set()


def settled_files(mirror, expected: set[str], timeout: float = 5.0) -> set[str]:
    """The cached files once they equal `expected` (a fill commits when the upstream's body has
    ended, which may be just after the client has read its last byte), or as they are at timeout."""
    deadline = time.time() + timeout
    while (files := cached_files(mirror)) != expected and time.time() < deadline:
        time.sleep(0.05)
    return files


def temp_files(mirror) -> list[Path]:
    return list((mirror.workdir / "cache" / "tmp").iterdir())


def events_for(mirror, digest: str, count: int = 1, timeout: float = 5.0) -> list[dict]:
    """Pull events about `digest` (the response hook may run just after the client is done)."""
    deadline = time.time() + timeout
    while True:
        found = [e for e in mirror.pull_events() if e["digest"] == digest and e["action"] in ("blob", "manifest")]
        if len(found) >= count or time.time() > deadline:
            return found
        time.sleep(0.05)


def get_blob(mirror, digest: str, repository: str = "vendor/vendor/app", license: str = LICENSES["valid"], app: str = "acme", method: str = "GET", headers: dict | None = None):
    return request(method, f"{mirror.url}/v2/proxy/{app}/{repository}/blobs/{digest}", {**basic(license), **(headers or {})})


def follow(answer, expect_digest: str) -> bytes:
    """Fetch a 307's Location (the signed file server URL) as a client would."""
    assert answer.status == 307, answer.body
    fetched = request("GET", answer.headers["Location"])
    assert fetched.status == 200, fetched.body
    assert f"sha256:{hashlib.sha256(fetched.body).hexdigest()}" == expect_digest
    return fetched.body


def report_of(log: Path) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", "--log", str(log), "--json"]) == 0
    return json.loads(out.getvalue())


def flip_a_bit(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x01]))


def read_partial_body(url: str, path: str, headers: dict) -> tuple[int, int, int]:
    """GET that tolerates a body cut short: (status, announced length, bytes received)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        received = 0
        try:
            while data := response.read(65536):
                received += len(data)
        except (http.client.IncompleteRead, ConnectionError) as e:
            received += len(getattr(e, "partial", b""))
        return response.status, int(response.headers.get("Content-Length", -1)), received
    finally:
        conn.close()


@dataclass
class Rig:
    """An upstream of the test's own (it may be stopped) with vendor/app:1.0, and a cache mirror."""

    registry: processes.Registry
    mirror: processes.MirrorProcess | None = None


@contextlib.contextmanager
def own_rig(tmp_path: Path, image, **cache) -> Iterator[Rig]:
    rig = Rig(processes.start_registry(tmp_path / "upstream", users={"vendor": VENDOR_PASSWORD}))
    try:
        processes.push(image.layout, "1.0", rig.registry, "vendor/app")
        rig.mirror = cache_mirror(tmp_path, "mirror", {"acme": {"registries": [vendor_registry(rig.registry.url)]}}, **cache)
        yield rig
    finally:
        if rig.mirror:
            rig.mirror.stop()
        rig.registry.stop()


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache_upstream(workdir, built):
    """The vendor's registry: vendor/app:1.0, the same image as vendor/app-copy, and vendor/other."""
    registry = processes.start_registry(workdir / "cache-upstream", users={"vendor": VENDOR_PASSWORD})
    processes.push(built.single.layout, "1.0", registry, "vendor/app")
    processes.push(built.single.layout, "1.0", registry, "vendor/app-copy")
    processes.push(built.other.layout, "other", registry, "vendor/other")
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def beta_upstream(workdir, built):
    """Another app's registry: a vendor/app of its own, without app acme's layers."""
    registry = processes.start_registry(workdir / "cache-beta-upstream", users={"vendor": VENDOR_PASSWORD})
    processes.push(built.other.layout, "other", registry, "vendor/app")
    yield registry
    registry.stop()


@pytest.fixture(scope="module")
def proxy_mirror(workdir, cache_upstream, beta_upstream):
    apps = {"acme": {"registries": [vendor_registry(cache_upstream.url)]}, "beta": {"registries": [vendor_registry(beta_upstream.url)]}}
    mirror = cache_mirror(workdir, "cache-proxy", apps)
    yield mirror
    mirror.stop()


@pytest.fixture(scope="module")
def redirect_mirror(workdir, cache_upstream):
    apps = {"acme": {"registries": [vendor_registry(cache_upstream.url)]}}
    mirror = cache_mirror(workdir, "cache-redirect", apps, serve="redirect", file_server={"url_ttl": "3s"})
    yield mirror
    mirror.stop()


# -- tests ------------------------------------------------------------------------------------


def test_cold_pull_fills_once_and_warm_pulls_need_no_upstream_even_after_restart(built, tmp_path):
    with own_rig(tmp_path, built.single) as rig:
        registry, mirror = rig.registry, rig.mirror
        image = built.single
        blobs = [image.config.digest, *(layer.digest for layer in image.layers)]

        pull(mirror, f"{APP}:1.0", tmp_path / "cold")
        assert pulled_digests(tmp_path / "cold") >= image_digests(image)
        for digest in blobs:
            assert upstream_gets(registry, "vendor/app", digest) == 1, digest
            [event] = events_for(mirror, digest)
            assert (event["cache"], event["status"], event["customer"]) == ("fill", 200, "Globex Corp")
        assert settled_files(mirror, image_digests(image)) == image_digests(image)
        assert not temp_files(mirror)

        pull(mirror, f"{APP}:1.0", tmp_path / "warm")
        assert pulled_digests(tmp_path / "warm") >= image_digests(image)
        assert all(upstream_gets(registry, "vendor/app", d) == 1 for d in blobs), "warm pull went upstream for a blob"
        assert upstream_gets(registry, "vendor/app", "1.0", "manifests") == 1  # later only revalidated with HEAD
        assert upstream_gets(registry, "vendor/app", "1.0", "manifests", "HEAD") >= 1
        assert all(events_for(mirror, d, 2)[-1]["cache"] == "hit" for d in blobs)

        # The upstream goes away; the mirror restarts on the same cache: blobs are served, and the
        # manifest by tag stands in (stale_if_error), marked stale.
        registry.stop()
        mirror = rig.mirror = restart(mirror)
        pull(mirror, f"{APP}:1.0", tmp_path / "offline")
        assert pulled_digests(tmp_path / "offline") >= image_digests(image)
        manifest = [e for e in events_for(mirror, image.manifest_digest, 3) if e["reference"] == "1.0"][-1]
        assert (manifest["cache"], manifest["status"]) == ("stale", 200)
        assert "stale_if_error" in mirror.log()
        # By digest, manifests are immutable: served as plain hits.
        by_digest = request("GET", f"{mirror.url}/v2/{APP}/manifests/{image.manifest_digest}", {**basic(LICENSES["valid"]), "Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert by_digest.status == 200 and hashlib.sha256(by_digest.body).hexdigest() == image.manifest_digest[7:]
        assert events_for(mirror, image.manifest_digest, 4)[-1]["cache"] == "hit"
        assert_no_secrets(json.dumps(mirror.pull_events()), mirror.log())


def test_concurrent_cold_pulls_fetch_each_blob_once(built, tmp_path):
    with own_rig(tmp_path, built.single, serve="redirect") as rig:
        processes.clear_skopeo_cache()
        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda i: pull(rig.mirror, f"{APP}:1.0", tmp_path / f"out{i}", check=False), range(10)))
        assert all(r.returncode == 0 for r in results), [r.stderr[-300:] for r in results if r.returncode]
        for i in range(10):
            assert pulled_digests(tmp_path / f"out{i}") >= image_digests(built.single)
        for layer in built.single.layers:
            assert upstream_gets(rig.registry, "vendor/app", layer.digest) == 1, f"{layer.digest} fetched more than once"
            labels = [e["cache"] for e in events_for(rig.mirror, layer.digest, 10)]
            assert labels.count("fill") == 1 and labels.count("hit") == 9, labels
        # `authmirror report` on these events: the 307 hits are egress, and upstream egress saved.
        report = report_of(rig.mirror.workdir / "pulls.jsonl")
        blob_bytes = built.single.config.size + sum(layer.size for layer in built.single.layers)
        assert report["totals"]["pulls"] == 10 and report["totals"]["egress_bytes"] == 10 * blob_bytes
        manifests_saved = report["totals"]["saved_bytes"] - 9 * blob_bytes  # concurrent tag GETs may each miss
        manifest_size = next(e["bytes"] for e in rig.mirror.pull_events() if e["action"] == "manifest" and e["method"] == "GET")
        assert 0 <= manifests_saved <= 9 * manifest_size and manifests_saved % manifest_size == 0, manifests_saved


def test_truncated_mismatching_or_aborted_transfers_leave_nothing(workdir, cache_upstream, built):
    faults = FaultServer(cache_upstream.url).start()
    mirror = cache_mirror(workdir, "cache-faults", {"acme": {"registries": [vendor_registry(faults.url)]}}, manifests={"stale_if_error": "4s"})
    try:
        layer = built.single.layers[0]
        path = f"/v2/{APP}/blobs/{layer.digest}"
        auth = basic(LICENSES["valid"])

        faults.add(r"/blobs/", reset_after=1000, times=1)  # the upstream's connection breaks mid-body
        status, announced, received = read_partial_body(mirror.url, path, auth)
        assert status == 200 and received < announced == layer.size
        faults.add(r"/blobs/", status=200, body=os.urandom(layer.size), headers={"Docker-Content-Digest": layer.digest}, times=1)
        wrong = request("GET", f"{mirror.url}{path}", auth)  # complete, but not the blob it claims to be
        assert wrong.status == 200 and hashlib.sha256(wrong.body).hexdigest() != layer.digest[7:]
        faults.add(r"/blobs/", delay_body=1.5, times=1)  # the client gives up before the body comes
        conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=10)
        conn.request("GET", path, headers=auth)
        assert conn.getresponse().status == 200
        conn.close()
        time.sleep(2.5)  # the upstream's body has come and gone by now
        assert not cached_files(mirror) and not temp_files(mirror)
        assert [e["cache"] for e in events_for(mirror, layer.digest, 3)] == ["miss", "miss", "miss"]

        fine = request("GET", f"{mirror.url}{path}", auth)
        assert fine.status == 200 and hashlib.sha256(fine.body).hexdigest() == layer.digest[7:]
        assert settled_files(mirror, {layer.digest}) == {layer.digest} and events_for(mirror, layer.digest, 4)[-1]["cache"] == "fill"

        # A rate-limited upstream: the last manifest for the tag stands in, for stale_if_error only.
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        assert request("GET", f"{mirror.url}/v2/{APP}/manifests/1.0", {**auth, **accept}).status == 200
        faults.add(r"/manifests/1.0", status=429, headers={"Retry-After": "30"})
        stale = request("GET", f"{mirror.url}/v2/{APP}/manifests/1.0", {**auth, **accept})
        assert stale.status == 200 and stale.headers["Docker-Content-Digest"] == built.single.manifest_digest
        assert "Stale" in stale.headers["Warning"]
        time.sleep(4.2)
        too_old = request("GET", f"{mirror.url}/v2/{APP}/manifests/1.0", {**auth, **accept})
        assert too_old.status == 429 and too_old.errors()[0]["code"] == "TOOMANYREQUESTS"
        labels = [e["cache"] for e in mirror.pull_events() if e["action"] == "manifest"][-3:]
        assert labels == ["fill", "stale", "miss"]
    finally:
        mirror.stop()
        faults.stop()


def test_digest_guessing_across_repositories_and_apps_is_refused(proxy_mirror, cache_upstream, built):
    layer = built.single.layers[1]
    assert get_blob(proxy_mirror, layer.digest).status == 200  # now cached, linked to acme's vendor/app
    gets_before = upstream_gets(cache_upstream, "vendor/other", layer.digest)

    # Another repository of the same registry: the upstream says it has no such blob.
    other_repo = get_blob(proxy_mirror, layer.digest, "vendor/vendor/other")
    assert other_repo.status == 404 and other_repo.errors()[0]["code"] == "BLOB_UNKNOWN"
    assert upstream_gets(cache_upstream, "vendor/other", layer.digest, method="HEAD") >= 1
    # Another app whose registry has a vendor/app without that layer.
    other_app = get_blob(proxy_mirror, layer.digest, app="beta", license=LICENSES["beta"])
    assert other_app.status == 404
    # Licenses are checked before the cache is looked at: no app, no image, expired -> refused.
    assert get_blob(proxy_mirror, layer.digest, license=LICENSES["beta"]).status == 403
    assert get_blob(proxy_mirror, layer.digest, "vendor/vendor/other", license=LICENSES["limited"]).status == 403
    assert get_blob(proxy_mirror, layer.digest, license=LICENSES["expired"]).status == 403
    assert request("GET", f"{proxy_mirror.url}/v2/{APP}/blobs/{layer.digest}").status == 401
    # Manifests by digest too.
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    assert request("GET", f"{proxy_mirror.url}/v2/{APP}/manifests/{built.single.manifest_digest}", {**basic(LICENSES["valid"]), **accept}).status == 200
    assert request("GET", f"{proxy_mirror.url}/v2/proxy/acme/vendor/vendor/other/manifests/{built.single.manifest_digest}", {**basic(LICENSES["valid"]), **accept}).status == 404
    assert upstream_gets(cache_upstream, "vendor/other", layer.digest) == gets_before + 1  # the refusal came from upstream

    # A repository the upstream confirms (HEAD) has the blob is served from the cache, not fetched again.
    copy = get_blob(proxy_mirror, layer.digest, "vendor/vendor/app-copy")
    assert copy.status == 200 and hashlib.sha256(copy.body).hexdigest() == layer.digest[7:]
    assert upstream_gets(cache_upstream, "vendor/app-copy", layer.digest) == 0
    refused = [e for e in proxy_mirror.pull_events() if e["digest"] == layer.digest and e["status"] in (401, 403, 404)]
    assert refused and all(e.get("cache") != "hit" for e in refused)


def test_signed_urls_send_cached_blobs_and_refuse_tampering_and_expiry(redirect_mirror, built):
    layer = built.single.layers[2]
    auth = basic(LICENSES["valid"])
    assert get_blob(redirect_mirror, layer.digest).status == 200  # cold: through the mirror, filling
    answer = get_blob(redirect_mirror, layer.digest)
    location = answer.headers["Location"]
    assert location.startswith("http://127.0.0.1:") and f"/sha256/{layer.digest[7:9]}/{layer.digest[7:]}?" in location
    follow(answer, layer.digest)
    head = request("HEAD", f"{redirect_mirror.url}/v2/{APP}/blobs/{layer.digest}", auth)
    assert head.status == 200 and int(head.headers["Content-Length"]) == layer.size and head.body == b""
    [event] = [e for e in redirect_mirror.pull_events() if e["digest"] == layer.digest and e["status"] == 307]
    assert (event["cache"], event["bytes"]) == ("hit", layer.size)

    path, query = location.split("?", 1)
    params = dict(p.split("=", 1) for p in query.split("&"))
    other = built.single.layers[0].digest[7:]
    forged = [
        f"{path}?expires={params['expires']}&sig={params['sig'][:-2]}AA",  # tampered signature
        f"{path}?expires={int(params['expires']) + 3600}&sig={params['sig']}",  # extended expiry
        location.replace(layer.digest[7:], other).replace(f"/{layer.digest[7:9]}/", f"/{other[:2]}/"),  # another blob
        path,  # no signature at all
    ]
    for url in forged:
        refused = request("GET", url)
        assert refused.status == 403 and refused.errors()[0]["code"] == "DENIED", url
    time.sleep(int(params["expires"]) - time.time() + 1.2)
    expired = request("GET", location)
    assert expired.status == 403 and "expired" in expired.errors()[0]["message"]


def test_eviction_keeps_the_least_recently_used_out_and_survives_restart(workdir, cache_upstream, built):
    small, medium, large = sorted(built.single.layers, key=lambda layer: layer.size)
    max_size = large.size + medium.size + 1000  # any two blobs fit, all three do not
    mirror = cache_mirror(workdir, "cache-evict", {"acme": {"registries": [vendor_registry(cache_upstream.url)]}}, max_size=max_size)
    try:
        for layer in (small, medium):
            assert get_blob(mirror, layer.digest).status == 200
        assert get_blob(mirror, small.digest).status == 200  # used again: now more recent than medium
        assert get_blob(mirror, large.digest).status == 200
        assert settled_files(mirror, {small.digest, large.digest}) == {small.digest, large.digest}, "the least recently used blob should go"
        used = sum(p.stat().st_size for p in (mirror.workdir / "cache" / "files").rglob("*") if p.is_file())
        assert used <= max_size

        mirror = restart(mirror)
        fetched = upstream_gets(cache_upstream, "vendor/app", large.digest)
        assert get_blob(mirror, large.digest).status == 200 and get_blob(mirror, small.digest).status == 200
        assert upstream_gets(cache_upstream, "vendor/app", large.digest) == fetched  # still cached after the restart
        assert get_blob(mirror, medium.digest).status == 200  # refetched; the least recently used goes again
        assert settled_files(mirror, {small.digest, medium.digest}) == {small.digest, medium.digest}
    finally:
        mirror.stop()


@pytest.mark.parametrize("serve", ["proxy", "redirect"])
def test_a_corrupted_file_is_detected_and_refetched(workdir, cache_upstream, built, serve):
    mirror = cache_mirror(workdir, f"cache-corrupt-{serve}", {"acme": {"registries": [vendor_registry(cache_upstream.url)]}}, serve=serve)
    try:
        layer = built.single.layers[1]
        assert get_blob(mirror, layer.digest).status == 200
        fetched = upstream_gets(cache_upstream, "vendor/app", layer.digest)
        cached = mirror.workdir / "cache" / "files" / "sha256" / layer.digest[7:9] / layer.digest[7:]
        assert settled_files(mirror, {layer.digest}) == {layer.digest}
        flip_a_bit(cached)

        again = get_blob(mirror, layer.digest)  # detected before serving: fetched again, transparently
        assert again.status == 200 and hashlib.sha256(again.body).hexdigest() == layer.digest[7:]
        assert upstream_gets(cache_upstream, "vendor/app", layer.digest) == fetched + 1
        assert "is corrupt" in mirror.log() and events_for(mirror, layer.digest, 2)[-1]["cache"] == "fill"
        body = get_blob(mirror, layer.digest)
        assert (follow(body, layer.digest) if serve == "redirect" else body.body) and cached.read_bytes() == again.body

        if serve == "proxy":
            # Rot that leaves the stat unchanged (simulated by recording the new one): caught while
            # streaming, and the client never receives the complete corrupt blob.
            flip_a_bit(cached)
            st = cached.stat()
            with sqlite3.connect(mirror.workdir / "cache" / "index.sqlite") as db:
                db.execute("UPDATE entries SET signature = ? WHERE digest = ?", (f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}", layer.digest))
            status, announced, received = read_partial_body(mirror.url, f"/v2/{APP}/blobs/{layer.digest}", basic(LICENSES["valid"]))
            assert status == 200 and received < announced == layer.size
            healed = get_blob(mirror, layer.digest)
            assert healed.status == 200 and hashlib.sha256(healed.body).hexdigest() == layer.digest[7:]
            assert upstream_gets(cache_upstream, "vendor/app", layer.digest) == fetched + 2
    finally:
        mirror.stop()


def test_redirected_upstream_fills_through_its_storage_leg(workdir, s3_upstream, built, tmp_path):  # noqa: F811
    registry, _ = s3_upstream
    apps = {"acme": {"registries": [{**vendor_registry(registry.url, "s3"), "redirect_hosts": ["127.0.0.1"]}]}}
    mirror = cache_mirror(workdir, "cache-s3", apps)
    try:
        image = "proxy/acme/s3/vendor/app:1.0"
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda i: pull(mirror, image, tmp_path / f"cold{i}", check=False), range(3)))
        assert all(r.returncode == 0 for r in results), [r.stderr[-300:] for r in results]
        for layer in built.single.layers:
            assert upstream_gets(registry, "vendor/app", layer.digest) == 1, "each blob is sent to storage once"
        pull(mirror, image, tmp_path / "warm")
        assert all(upstream_gets(registry, "vendor/app", layer.digest) == 1 for layer in built.single.layers)
        assert pulled_digests(tmp_path / "warm") >= image_digests(built.single)
        assert cached_files(mirror) >= {layer.digest for layer in built.single.layers}
    finally:
        mirror.stop()


def test_the_file_server_stops_with_the_mirror(workdir, cache_upstream):
    mirror = cache_mirror(workdir, "cache-stop", {"acme": {"registries": [vendor_registry(cache_upstream.url)]}})
    pid = int((mirror.workdir / "cache" / "nginx" / "nginx.pid").read_text())
    assert Path(f"/proc/{pid}").exists()
    mirror.stop()
    deadline = time.time() + 10
    while Path(f"/proc/{pid}").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "nginx outlived the mirror"
