"""Mirror behaviour a vendor relies on: read-only, token flows, hot reload, pull events, streaming."""

import json
import os
import time
import urllib.parse

import pytest
import yaml

from tests.support import processes
from tests.support.http import basic, bearer_for, request

from .conftest import LICENSES, VENDOR_PASSWORD, assert_no_secrets, license_entries, start_mirror

pytestmark = pytest.mark.e2e

APP = "proxy/acme/vendor/vendor/app"


def upstream_tags(upstream) -> list[str]:
    answer = request("GET", f"{upstream.url}/v2/vendor/app/tags/list", basic(VENDOR_PASSWORD, "vendor"))
    return sorted(answer.json()["tags"])


def test_push_is_refused_and_upstream_unchanged(mirror, upstream, built, tmp_path):
    before = upstream_tags(upstream)
    result = processes.skopeo(
        "copy", "--dest-tls-verify=false", "--dest-creds", f"c:{LICENSES['valid']}",
        f"oci:{built.other.layout}:other", f"docker://{mirror.host}/{APP}:pushed", check=False,
    )
    assert result.returncode != 0
    assert upstream_tags(upstream) == before and "pushed" not in before


def test_delete_is_refused_and_upstream_unchanged(mirror, upstream, built):
    auth = basic(LICENSES["valid"])
    answer = request("DELETE", f"{mirror.url}/v2/{APP}/manifests/{built.single.manifest_digest}", auth)
    assert answer.status == 405 and answer.errors()[0]["code"] == "UNSUPPORTED"
    still = request("HEAD", f"{upstream.url}/v2/vendor/app/manifests/{built.single.manifest_digest}", {**basic(VENDOR_PASSWORD, "vendor"), "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert still.status == 200
    upload = request("POST", f"{mirror.url}/v2/{APP}/blobs/uploads/", auth)
    assert upload.status == 405


def test_token_by_post_as_containerd_does(mirror, built):
    form = urllib.parse.urlencode({"grant_type": "password", "client_id": "containerd-client", "username": "x", "password": LICENSES["valid"], "scope": f"repository:{APP}:pull", "service": "authmirror"})
    answer = request("POST", f"{mirror.url}/v2/token", {"Content-Type": "application/x-www-form-urlencoded"}, form.encode())
    assert answer.status == 200
    token = answer.json()["access_token"]
    manifest = request("GET", f"{mirror.url}/v2/{APP}/manifests/1.0", {"Authorization": f"Bearer {token}", "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert manifest.status == 200 and manifest.headers["Docker-Content-Digest"] == built.single.manifest_digest
    bad = urllib.parse.urlencode({"grant_type": "password", "username": "x", "password": "nope-nope-nope", "scope": f"repository:{APP}:pull"})
    refused = request("POST", f"{mirror.url}/v2/token", {"Content-Type": "application/x-www-form-urlencoded"}, bad.encode())
    assert refused.status == 401 and refused.json()["errors"][0]["detail"]["error"] == "invalid_grant"


def test_every_request_needs_credentials(mirror):
    for path in ("/v2/", "/v2/_catalog", f"/v2/{APP}/manifests/1.0", f"/v2/{APP}/tags/list"):
        answer = request("GET", f"{mirror.url}{path}")
        assert answer.status == 401, path
        assert answer.headers["WWW-Authenticate"].startswith(f'Bearer realm="{mirror.url}/v2/token",service="authmirror"')
    assert request("GET", f"{mirror.url}/healthz").status == 200
    ready = request("GET", f"{mirror.url}/readyz")
    assert ready.status == 200 and ready.json()["licenses"] == len(license_entries())


def test_pull_events_record_who_pulled_what(mirror, built, tmp_path):
    processes.clear_skopeo_cache()
    processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"x:{LICENSES['other']}", f"docker://{mirror.host}/{APP}:1.0", f"oci:{tmp_path}/out:1.0")
    time.sleep(0.2)
    events = [e for e in mirror.pull_events() if e["customer"] == "Initech"]
    fields = {"ts", "request_id", "license", "customer", "app", "registry", "upstream", "repository", "reference", "digest", "action", "method", "status", "error_code", "bytes", "duration_ms", "client_ip", "user_agent"}
    assert all(fields <= set(e) for e in events)
    manifests = [e for e in events if e["action"] == "manifest" and e["status"] == 200]
    assert manifests and manifests[0]["reference"] == "1.0" and manifests[0]["digest"] == built.single.manifest_digest
    blobs = {e["digest"]: e for e in events if e["action"] == "blob"}
    for layer in built.single.layers:
        assert blobs[layer.digest]["bytes"] == layer.size and blobs[layer.digest]["status"] == 200
    assert all(e["license"].startswith("lic_") and e["app"] in (None, "acme") for e in events)
    assert {e["action"] for e in events} >= {"token", "manifest", "blob"}
    assert_no_secrets(json.dumps(mirror.pull_events()), mirror.log())


def test_license_hot_reload_without_restart(workdir, upstream, token_upstream, tmp_path):
    mirror = start_mirror(workdir, upstream, token_upstream, name="reload-mirror")
    try:
        auth = basic(LICENSES["other"])
        assert request("GET", f"{mirror.url}/v2/{APP}/tags/list", auth).status == 200
        bearer = bearer_for(mirror.url, LICENSES["other"], f"repository:{APP}:pull")
        licenses = mirror.workdir / "licenses.yaml"
        entries = [dict(e, revoked=True) if e["id"] == LICENSES["other"] else e for e in license_entries()]
        tmp = licenses.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"licenses": entries}))
        os.replace(tmp, licenses)
        started = time.time()
        while time.time() - started < 15:
            answer = request("GET", f"{mirror.url}/v2/{APP}/tags/list", auth)
            if answer.status == 403:
                break
            time.sleep(0.2)
        elapsed = time.time() - started
        assert answer.status == 403 and "revoked" in answer.errors()[0]["message"]
        assert elapsed < 5, f"revocation took {elapsed:.1f} s"
        # tokens issued before the revocation stop working too
        assert request("GET", f"{mirror.url}/v2/{APP}/tags/list", bearer).status == 403
        # a broken edit keeps the last good licenses
        licenses.write_text("licenses: [ {id: ")
        time.sleep(1.5)
        assert request("GET", f"{mirror.url}/v2/{APP}/tags/list", basic(LICENSES["valid"])).status == 200
        assert "keeping the previous version" in mirror.log()
    finally:
        mirror.stop()


def peak_rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_blob_streams_with_flat_memory(mirror, upstream, tmp_path):
    """A 256 MiB blob passes through without the mirror's memory growing with it."""
    size = 256 * 1024 * 1024
    blob = tmp_path / "big.bin"
    import hashlib
    sha = hashlib.sha256()
    with open(blob, "wb") as f:
        chunk = os.urandom(1 << 20)
        for i in range(size >> 20):
            piece = chunk[:-4] + i.to_bytes(4, "big")
            sha.update(piece)
            f.write(piece)
    digest = f"sha256:{sha.hexdigest()}"
    auth = basic(VENDOR_PASSWORD, "vendor")
    start = request("POST", f"{upstream.url}/v2/vendor/app/blobs/uploads/", auth)
    assert start.status == 202
    location = start.headers["Location"]
    import http.client
    parts = urllib.parse.urlsplit(location)
    conn = http.client.HTTPConnection("127.0.0.1", upstream.port, timeout=120)
    with open(blob, "rb") as f:
        conn.request("PUT", f"{parts.path}?{parts.query}&digest={digest}", body=f, headers={**auth, "Content-Length": str(size), "Content-Type": "application/octet-stream"})
        assert conn.getresponse().status == 201
    conn.close()

    pid = mirror.process.popen.pid
    before = peak_rss_kib(pid)
    conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=120)
    conn.request("GET", f"/v2/{APP}/blobs/{digest}", headers=basic(LICENSES["valid"]))
    response = conn.getresponse()
    got = hashlib.sha256()
    received = 0
    while data := response.read(1 << 20):
        got.update(data)
        received += len(data)
    conn.close()
    assert response.status == 200 and received == size and f"sha256:{got.hexdigest()}" == digest
    growth_mib = (peak_rss_kib(pid) - before) / 1024
    assert growth_mib < 64, f"peak RSS grew by {growth_mib:.0f} MiB for a 256 MiB blob"


def test_bad_config_refused_at_start_naming_the_key(tmp_path):
    config = tmp_path / "authmirror.yaml"
    (tmp_path / "licenses.yaml").write_text("licenses: []\n")
    config.write_text("apps:\n  acme:\n    registries:\n      - {name: vendor, type: basic, url: 'http://127.0.0.1:1', username: u, password: 'env:AM_SURELY_UNSET'}\n")
    import subprocess

    result = subprocess.run(
        [processes.mitmdump_binary(), "-s", str(processes.REPO_ROOT / "addon" / "proxy.py"), "--set", f"authmirror_config={config}", "--set", f"confdir={tmp_path}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "apps.acme.registries[0].password" in result.stdout + result.stderr
    cli = subprocess.run([str(processes.REPO_ROOT / ".venv" / "bin" / "authmirror"), "serve", "-c", str(config)], capture_output=True, text=True, timeout=60)
    assert cli.returncode == 2 and "apps.acme.registries[0].password" in cli.stderr


def test_authmirror_serve_runs_the_mirror(workdir, upstream, token_upstream, tmp_path):
    port = processes.free_port()
    from .conftest import MIRROR_ENV, mirror_apps

    config = processes.write_mirror_config(tmp_path, port, mirror_apps(upstream, token_upstream), license_entries())
    process = processes.start([str(processes.REPO_ROOT / ".venv" / "bin" / "authmirror"), "serve", "-c", str(config), "--", "--set", f"confdir={tmp_path}"], tmp_path / "serve.log", env={**os.environ, **MIRROR_ENV})
    try:
        processes.wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
        answer = request("GET", f"http://127.0.0.1:{port}/v2/{APP}/tags/list", basic(LICENSES["valid"]))
        assert answer.status == 200 and "1.0" in answer.json()["tags"]
    finally:
        process.stop()
