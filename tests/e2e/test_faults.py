"""Faults: a fault-injecting upstream (tests/support/faultserver.py) in front of real registries.

For each fault the client gets the right OCI error (a truncated blob reaches it as a broken
transfer, never as a complete-looking 200), the pull event records it, and the mirror keeps
serving other clients.
"""

from __future__ import annotations

import http.client
import threading
import time

import pytest

from tests.support import leakcheck, processes
from tests.support.canary import Canary
from tests.support.faultserver import FaultServer
from tests.support.http import basic, request

from .conftest import LICENSES, MIRROR_ENV, VENDOR_PASSWORD, license_entries

pytestmark = pytest.mark.e2e

HEADERS_TIMEOUT = 1.5
STALL_TIMEOUT = 1.5
AUTH = basic(LICENSES["valid"])
FLAKY = "proxy/acme/flaky/vendor/app"
GOOD = "proxy/acme/vendor/vendor/app"
MANIFEST_ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
# The mirror's cached upstream token must be older than this before a 401 counts as "stale"
# (upstreams/tokencache.py FRESH_SECONDS) rather than "the vendor's credentials are wrong".
STALE_AFTER = 11.0


class Setup:
    def __init__(self, mirror, faults, token_faults, vanishing, canary, primed_at):
        self.mirror, self.faults, self.token_faults = mirror, faults, token_faults
        self.vanishing, self.canary, self.primed_at = vanishing, canary, primed_at


@pytest.fixture(scope="module")
def setup(workdir, upstream, token_upstream):
    token_registry, _ = token_upstream
    faults = FaultServer(upstream.url).start()
    token_faults = FaultServer(token_registry.url).start()
    vanishing = FaultServer(upstream.url).start()
    canary = Canary().start()
    creds = {"username": "vendor", "password": "env:E2E_VENDOR_PASS"}
    apps = {
        "acme": {
            "registries": [
                {"name": "vendor", "type": "basic", "url": upstream.url, **creds},
                {"name": "flaky", "type": "basic", "url": faults.url, **creds},
                {"name": "tokflaky", "type": "basic", "url": token_faults.url, "username": "tokenvendor", "password": "env:E2E_TOKEN_VENDOR_PASS"},
                {"name": "vanishing", "type": "basic", "url": vanishing.url, **creds},
            ]
        }
    }
    port = processes.free_port()
    config = processes.write_mirror_config(
        workdir / "faults-mirror", port, apps, license_entries(),
        timeouts={"headers": f"{HEADERS_TIMEOUT}s", "body_stall": f"{STALL_TIMEOUT}s"},
    )
    mirror = processes.start_mirror(workdir / "faults-mirror", config, port, env=MIRROR_ENV)
    # The upstream token for tokflaky is cached now; the revocation test runs once it is stale.
    assert get_manifest(mirror, "proxy/acme/tokflaky/vendor/app").status == 200
    yield Setup(mirror, faults, token_faults, vanishing, canary, time.monotonic())
    mirror.stop()
    for server in (faults, token_faults, vanishing, canary):
        server.stop()


@pytest.fixture(autouse=True)
def clean_rules(setup):
    setup.faults.clear()
    setup.token_faults.clear()
    yield
    assert_still_serving(setup.mirror)


def get_manifest(mirror, name: str, reference: str = "1.0", timeout: float = 30) -> object:
    return request("GET", f"{mirror.url}/v2/{name}/manifests/{reference}", {**AUTH, **MANIFEST_ACCEPT}, timeout=timeout)


def assert_still_serving(mirror) -> None:
    answer = get_manifest(mirror, GOOD)
    assert answer.status == 200, answer.body


def new_events(mirror, before: int, count: int = 1, timeout: float = 5.0) -> list[dict]:
    """Events written after `before` (pull events land in the response/error hook, just after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        events = mirror.pull_events()[before:]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def one_error(answer) -> dict:
    [error] = answer.errors()
    return error


def fetch_blob(mirror, name: str, digest: str) -> tuple[int, dict, bytes, Exception | None]:
    """GET a blob and read what arrives: (status, headers, bytes, the read error if the body broke)."""
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=30)
    try:
        conn.request("GET", f"/v2/{name}/blobs/{digest}", headers=AUTH)
        response = conn.getresponse()
        headers = dict(response.headers)
        body, broke = b"", None
        try:
            body = response.read()
        except http.client.IncompleteRead as e:
            body, broke = e.partial, e
        except (ConnectionError, OSError) as e:
            broke = e
        leakcheck.record_answer(f"{mirror.url}/v2/{name}/blobs/{digest}", response.status, headers, body)
        return response.status, headers, body, broke
    finally:
        conn.close()


def test_connection_refused(setup):
    assert get_manifest(setup.mirror, "proxy/acme/vanishing/vendor/app").status == 200  # learns the upstream's auth
    setup.vanishing.stop()  # now nothing listens there
    before = len(setup.mirror.pull_events())
    answer = get_manifest(setup.mirror, "proxy/acme/vanishing/vendor/app")
    assert answer.status == 502
    error = one_error(answer)
    assert error["code"] == "UNAVAILABLE"
    assert "upstream registry 'vanishing'" in error["message"] and "refused" in error["message"]
    assert str(setup.vanishing.port) not in answer.body.decode()
    [event] = new_events(setup.mirror, before)
    assert event["registry"] == "vanishing" and event["status"] == 502 and event["error_code"] == "UNAVAILABLE"


def test_reset_mid_blob_is_a_broken_transfer(setup, built):
    layer = built.single.layers[0]
    setup.faults.add(r"/blobs/", reset_after=1000)
    before = len(setup.mirror.pull_events())
    status, headers, body, broke = fetch_blob(setup.mirror, FLAKY, layer.digest)
    assert status == 200 and int(headers["Content-Length"]) == layer.size
    assert broke is not None and len(body) < layer.size, "a truncated blob must not look complete"
    [event] = new_events(setup.mirror, before)
    assert event["action"] == "blob" and event["error_code"] == "UNAVAILABLE" and event["bytes"] < layer.size


def test_reset_mid_blob_fails_a_real_pull(setup, tmp_path):
    setup.faults.add(r"/blobs/", reset_after=1000)
    processes.clear_skopeo_cache()
    result = processes.skopeo("copy", "--retry-times=0", "--src-tls-verify=false", "--src-creds", f"c:{LICENSES['valid']}", f"docker://{setup.mirror.host}/{FLAKY}:1.0", f"oci:{tmp_path}/out:1.0", check=False)
    assert result.returncode != 0


def test_slow_headers_get_504_naming_the_registry_while_others_are_served(setup):
    setup.faults.add(r"/manifests/", delay_headers=HEADERS_TIMEOUT + 4)
    before = len(setup.mirror.pull_events())
    result: dict = {}

    def slow():
        started = time.monotonic()
        result["answer"] = get_manifest(setup.mirror, FLAKY)
        result["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert_still_serving(setup.mirror)  # another client, while the slow one waits
    assert time.monotonic() - started < HEADERS_TIMEOUT
    thread.join(30)
    answer = result["answer"]
    assert answer.status == 504
    error = one_error(answer)
    assert error["code"] == "UNAVAILABLE" and error["message"] == f"upstream registry 'flaky' did not answer within {HEADERS_TIMEOUT:g} s"
    assert result["elapsed"] < HEADERS_TIMEOUT + 2
    event = next(e for e in new_events(setup.mirror, before, 2) if e["registry"] == "flaky")
    assert event["status"] == 504 and event["error_code"] == "UNAVAILABLE"


def test_stalled_blob_body_is_cut(setup, built):
    layer = built.single.layers[0]
    setup.faults.add(r"/blobs/", delay_body=STALL_TIMEOUT + 4)
    before = len(setup.mirror.pull_events())
    started = time.monotonic()
    status, headers, body, broke = fetch_blob(setup.mirror, FLAKY, layer.digest)
    assert status == 200 and broke is not None and len(body) < layer.size
    assert time.monotonic() - started < STALL_TIMEOUT + 2
    [event] = new_events(setup.mirror, before)
    assert event["action"] == "blob" and event["error_code"] == "UNAVAILABLE"


def test_stalled_manifest_body_gets_504(setup):
    setup.faults.add(r"/manifests/", delay_body=STALL_TIMEOUT + 4)
    before = len(setup.mirror.pull_events())
    answer = get_manifest(setup.mirror, FLAKY)
    assert answer.status == 504
    assert one_error(answer)["message"] == f"upstream registry 'flaky' stopped sending the answer for {STALL_TIMEOUT:g} s"
    [event] = new_events(setup.mirror, before)
    assert event["status"] == 504 and event["error_code"] == "UNAVAILABLE"


@pytest.mark.parametrize("status, client_status", [(500, 502), (502, 502), (503, 503)])
def test_upstream_5xx(setup, status, client_status):
    setup.faults.add(r"/manifests/", status=status, headers={"Retry-After": "30", "Content-Type": "application/json"}, body=b'{"errors":[{"code":"UNKNOWN","message":"database on fire"}]}')
    before = len(setup.mirror.pull_events())
    answer = get_manifest(setup.mirror, FLAKY)
    assert answer.status == client_status
    error = one_error(answer)
    assert error["code"] == "UNAVAILABLE" and f"upstream registry 'flaky' failed with HTTP {status}: database on fire" == error["message"]
    assert answer.headers.get("Retry-After") == ("30" if status == 503 else None)
    [event] = new_events(setup.mirror, before)
    assert event["status"] == client_status and event["error_code"] == "UNAVAILABLE"


def test_429_passes_retry_after(setup):
    setup.faults.add(r"/manifests/", status=429, headers={"Retry-After": "17"}, body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate exceeded"}]}')
    before = len(setup.mirror.pull_events())
    answer = get_manifest(setup.mirror, FLAKY)
    assert answer.status == 429 and answer.headers["Retry-After"] == "17"
    error = one_error(answer)
    assert error["code"] == "TOOMANYREQUESTS" and "retry after 17 s" in error["message"]
    [event] = new_events(setup.mirror, before)
    assert event["status"] == 429 and event["error_code"] == "TOOMANYREQUESTS"


def test_huge_non_json_error_body(setup):
    page = f"<html><body>backend {setup.faults.url}/internal failed; password {VENDOR_PASSWORD}".encode() + b"x" * (8 << 20) + b"</body></html>"
    setup.faults.add(r"/manifests/", status=500, headers={"Content-Type": "text/html"}, body=page)
    before = len(setup.mirror.pull_events())
    answer = get_manifest(setup.mirror, FLAKY)
    assert answer.status == 502 and len(answer.body) < 2048
    error = one_error(answer)
    assert error["code"] == "UNAVAILABLE" and error["message"] == "upstream registry 'flaky' failed with HTTP 500"
    assert str(setup.faults.port) not in answer.body.decode()
    [event] = new_events(setup.mirror, before)
    assert event["status"] == 502


def test_non_json_404(setup):
    setup.faults.add(r"/manifests/", status=404, headers={"Content-Type": "text/plain"}, body=b"nothing here, see http://internal.example:8080/x")
    before = len(setup.mirror.pull_events())
    answer = get_manifest(setup.mirror, FLAKY)
    assert answer.status == 404 and one_error(answer)["code"] == "MANIFEST_UNKNOWN"
    assert "internal.example" not in answer.body.decode()
    [event] = new_events(setup.mirror, before)
    assert event["status"] == 404 and event["error_code"] == "MANIFEST_UNKNOWN"


def test_redirect_loop_ends_in_502(setup, built):
    digest = built.single.layers[1].digest
    loop = f"{setup.faults.url}/v2/vendor/app/blobs/{digest}"
    setup.faults.add(r"/blobs/", status=307, headers={"Location": loop})
    before = len(setup.mirror.pull_events())
    url, hops = f"{setup.mirror.url}/v2/{FLAKY}/blobs/{digest}", 0
    while True:
        answer = request("GET", url, AUTH)
        if answer.status != 307:
            break
        assert answer.headers["Location"].startswith(f"/v2/{FLAKY}/blobs/{digest}?"), "only the mirror's own sealed URL"
        url, hops = f"{setup.mirror.url}{answer.headers['Location']}", hops + 1
        assert hops < 10
    assert answer.status == 502 and "redirected the blob too many times" in one_error(answer)["message"]
    assert hops == 3
    events = new_events(setup.mirror, before, hops + 1)
    assert events[-1]["status"] == 502 and events[-1]["error_code"] == "UNAVAILABLE"


@pytest.mark.parametrize("target", ["http://{canary}/blob", "https://{canary}/blob", "http://localhost:{port}/blob", "http://[::1]:{port}/blob", "http://169.254.169.254/latest/meta-data/"])
def test_redirect_to_a_host_that_is_not_allowed_storage(setup, built, target):
    digest = built.single.layers[1].digest
    setup.faults.add(r"/blobs/", status=307, headers={"Location": target.format(canary=setup.canary.address, port=setup.canary.port)})
    before = len(setup.mirror.pull_events())
    first = request("GET", f"{setup.mirror.url}/v2/{FLAKY}/blobs/{digest}", AUTH)
    assert first.status == 307
    assert str(setup.canary.port) not in first.headers["Location"] and "169.254" not in first.headers["Location"]
    second = request("GET", f"{setup.mirror.url}{first.headers['Location']}", AUTH)
    assert second.status == 502
    error = one_error(second)
    assert error["code"] == "DENIED" and "redirect_hosts" in error["message"]
    assert setup.canary.connections == []
    events = new_events(setup.mirror, before, 2)
    assert events[-1]["status"] == 502 and events[-1]["error_code"] == "DENIED"


def test_revoked_upstream_token_is_refreshed_and_retried_once(setup, token_upstream, tmp_path, built):
    """Runs last in this module: by now the cached upstream token is stale (see `setup`)."""
    _, token_server = token_upstream
    time.sleep(max(0.0, setup.primed_at + STALE_AFTER - time.monotonic()))
    setup.token_faults.add(r"/manifests/", status=401, times=1, headers={"WWW-Authenticate": f'Bearer realm="{token_server.url}/token",service="test-registry",error="invalid_token"'}, body=b'{"errors":[{"code":"UNAUTHORIZED","message":"token revoked"}]}')
    tokens_before = len(token_server.requests)
    before = len(setup.mirror.pull_events())
    processes.clear_skopeo_cache()
    result = processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"c:{LICENSES['valid']}", f"docker://{setup.mirror.host}/proxy/acme/tokflaky/vendor/app:1.0", f"oci:{tmp_path}/out:1.0", check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "blobs" / "sha256" / built.single.manifest_digest.split(":")[1]).exists()
    assert len(token_server.requests) == tokens_before + 1, "exactly one new upstream token"
    manifest_auth = [h.get("Authorization") for m, p, h in setup.token_faults.requests if "/manifests/" in p]
    assert len(manifest_auth) >= 2 and manifest_auth[0] != manifest_auth[1], "retried with the new token"
    events = [e for e in new_events(setup.mirror, before, 3) if e["action"] == "manifest"]
    assert [e["status"] for e in events][:2] == [307, 200]
