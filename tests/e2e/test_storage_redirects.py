"""Blob storage redirects for real: docker-registry's S3 driver on moto's S3 server answers blob
GETs with a 307 to a presigned URL, as ECR, GAR, GHCR and Docker Hub do."""

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.support import processes
from tests.support.http import basic, request

from .conftest import LICENSES, MIRROR_ENV, VENDOR_PASSWORD, license_entries

pytestmark = pytest.mark.e2e
APP = "proxy/acme/s3/vendor/app"


@pytest.fixture(scope="module")
def s3_upstream(workdir, built):
    port = processes.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    s3.create_bucket(Bucket="registry")
    storage = {
        "s3": {"accesskey": "test", "secretkey": "test", "region": "us-east-1", "regionendpoint": f"http://127.0.0.1:{port}", "bucket": "registry", "secure": False, "v4auth": True, "rootdirectory": "/reg"},
        "redirect": {"disable": False},
    }
    registry = processes.start_registry(workdir / "s3-upstream", users={"vendor": VENDOR_PASSWORD}, storage=storage)
    processes.push(built.single.layout, "1.0", registry, "vendor/app")
    yield registry, port
    registry.stop()
    server.stop()


def s3_mirror(workdir, s3_upstream, name, blob_redirects, redirect_hosts):
    registry, _ = s3_upstream
    port = processes.free_port()
    apps = {"acme": {"registries": [{"name": "s3", "type": "basic", "url": registry.url, "username": "vendor", "password": "env:E2E_VENDOR_PASS", "redirect_hosts": redirect_hosts}]}}
    config = processes.write_mirror_config(workdir / name, port, apps, license_entries(), blob_redirects=blob_redirects)
    return processes.start_mirror(workdir / name, config, port, env=MIRROR_ENV)


def pulled_blobs(dest):
    return {p.name for p in (dest / "blobs" / "sha256").iterdir()}


def test_upstream_really_redirects(s3_upstream, built):
    registry, s3_port = s3_upstream
    answer = request("GET", f"{registry.url}/v2/vendor/app/blobs/{built.single.layers[0].digest}", basic(VENDOR_PASSWORD, "vendor"))
    assert answer.status == 307 and f"127.0.0.1:{s3_port}" in answer.headers["Location"]


def test_follow_brings_blobs_through_the_mirror_and_hides_storage(workdir, s3_upstream, built, tmp_path):
    _, s3_port = s3_upstream
    mirror = s3_mirror(workdir, s3_upstream, "s3-follow", "follow", ["127.0.0.1"])
    try:
        layer = built.single.layers[0]
        auth = basic(LICENSES["valid"])
        first = request("GET", f"{mirror.url}/v2/{APP}/blobs/{layer.digest}", auth)
        assert first.status == 307
        location = first.headers["Location"]
        assert location.startswith(f"/v2/{APP}/blobs/{layer.digest}?") and "X-Amz" not in location and str(s3_port) not in location
        second = request("GET", f"{mirror.url}{location}", auth)
        data = (built.single.layout / "blobs" / "sha256" / layer.digest.split(":")[1]).read_bytes()
        assert second.status == 200 and second.body == data
        assert second.headers["Docker-Content-Digest"] == layer.digest
        assert not any(h.lower().startswith("x-amz") for h in second.headers)

        processes.clear_skopeo_cache()
        processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"c:{LICENSES['valid']}", f"docker://{mirror.host}/{APP}:1.0", f"oci:{tmp_path}/out:1.0")
        assert {l.digest.split(":")[1] for l in built.single.layers} <= pulled_blobs(tmp_path / "out")
        blob_events = [e for e in mirror.pull_events() if e["action"] == "blob" and e["status"] == 200]
        assert {e["digest"] for e in blob_events} >= {l.digest for l in built.single.layers}
        assert all(e["customer"] == "Globex Corp" and e["bytes"] > 0 for e in blob_events)
    finally:
        mirror.stop()


def test_follow_refuses_storage_on_private_addresses_unless_allowed(workdir, s3_upstream, built):
    mirror = s3_mirror(workdir, s3_upstream, "s3-follow-strict", "follow", [])
    try:
        auth = basic(LICENSES["valid"])
        first = request("GET", f"{mirror.url}/v2/{APP}/blobs/{built.single.layers[0].digest}", auth)
        second = request("GET", f"{mirror.url}{first.headers['Location']}", auth)
        assert second.status == 502
        assert "redirect_hosts" in second.errors()[0]["message"]
    finally:
        mirror.stop()


def test_pass_hands_the_storage_url_to_the_client(workdir, s3_upstream, built, tmp_path):
    _, s3_port = s3_upstream
    mirror = s3_mirror(workdir, s3_upstream, "s3-pass", "pass", [])
    try:
        answer = request("GET", f"{mirror.url}/v2/{APP}/blobs/{built.single.layers[0].digest}", basic(LICENSES["valid"]))
        assert answer.status == 307 and answer.headers["Location"].startswith(f"http://127.0.0.1:{s3_port}/")
        processes.clear_skopeo_cache()
        processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"c:{LICENSES['valid']}", f"docker://{mirror.host}/{APP}:1.0", f"oci:{tmp_path}/out:1.0")
        assert {l.digest.split(":")[1] for l in built.single.layers} <= pulled_blobs(tmp_path / "out")
        # the blob bytes bypassed the mirror
        assert all(e["bytes"] == 0 for e in mirror.pull_events() if e["action"] == "blob")
    finally:
        mirror.stop()
