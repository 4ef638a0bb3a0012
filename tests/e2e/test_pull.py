"""Real pulls through the mirror with skopeo, compared with direct pulls from the upstream."""

import concurrent.futures
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.http import basic, bearer_for, request

from .conftest import LICENSES, VENDOR_PASSWORD, assert_no_secrets

pytestmark = pytest.mark.e2e


def pull(source: str, dest: Path, license: str | None, *extra: str, check: bool = True):
    args = ["copy", "--src-tls-verify=false", *extra]
    if license is not None:
        args += ["--src-creds", f"customer:{license}"]
    return processes.skopeo(*args, f"docker://{source}", f"oci:{dest}:pulled", check=check)


def blobs(layout: Path) -> set[str]:
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


def manifest_digest(reference: str, creds: str) -> str:
    raw = processes.skopeo("inspect", "--raw", "--tls-verify=false", "--creds", creds, f"docker://{reference}").stdout
    import hashlib

    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def test_single_arch_pull_matches_direct_pull(mirror, upstream, built, pull_dir):
    pull(f"{mirror.host}/proxy/acme/vendor/vendor/app:1.0", pull_dir / "via", LICENSES["valid"])
    processes.clear_skopeo_cache()
    processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"vendor:{VENDOR_PASSWORD}", f"docker://{upstream.host}/vendor/app:1.0", f"oci:{pull_dir / 'direct'}:pulled")
    assert blobs(pull_dir / "via") == blobs(pull_dir / "direct")
    assert built.single.manifest_digest.split(":")[1] in blobs(pull_dir / "via")
    via = manifest_digest(f"{mirror.host}/proxy/acme/vendor/vendor/app:1.0", f"c:{LICENSES['valid']}")
    assert via == manifest_digest(f"{upstream.host}/vendor/app:1.0", f"vendor:{VENDOR_PASSWORD}") == built.single.manifest_digest


def test_multi_arch_pull_all_platforms(mirror, built, pull_dir):
    pull(f"{mirror.host}/proxy/acme/vendor/vendor/app:multi", pull_dir / "via", LICENSES["valid"], "--all")
    got = blobs(pull_dir / "via")
    assert built.multi.manifest_digest.split(":")[1] in got
    assert all(child.split(":")[1] in got for child in built.multi.children)
    assert all(layer.digest.split(":")[1] in got for layer in built.multi.layers)


def test_pull_through_token_auth_upstream(mirror, token_upstream, built, pull_dir):
    _, token_server = token_upstream
    before = len(token_server.requests)
    pull(f"{mirror.host}/proxy/acme/tokenreg/vendor/app:1.0", pull_dir / "via", LICENSES["valid"])
    assert built.single.manifest_digest.split(":")[1] in blobs(pull_dir / "via")
    new = token_server.requests[before:]
    assert new and all(r["account"] == "tokenvendor" for r in new)
    # one token per scope, reused across the manifest and all blob requests
    assert len([r for r in new if r["scopes"] == ["repository:vendor/app:pull"]]) == 1


def test_custom_domain_pull_without_proxy_prefix(mirror, built, pull_dir):
    pull(f"localhost:{mirror.port}/vendor/vendor/app:1.0", pull_dir / "via", LICENSES["valid"])
    assert built.single.manifest_digest.split(":")[1] in blobs(pull_dir / "via")


@pytest.mark.parametrize(
    "license, image, words",
    [
        (None, "proxy/acme/vendor/vendor/app:1.0", "your license ID as password"),
        ("no-such-license-123", "proxy/acme/vendor/vendor/app:1.0", "unknown license"),
        (LICENSES["expired"], "proxy/acme/vendor/vendor/app:1.0", "expired on 2024-01-31"),
        (LICENSES["revoked"], "proxy/acme/vendor/vendor/app:1.0", "revoked"),
        (LICENSES["beta"], "proxy/acme/vendor/vendor/app:1.0", "does not include app 'acme'"),
        (LICENSES["limited"], "proxy/acme/vendor/vendor/other:other", "does not allow image 'vendor/other'"),
    ],
)
def test_refused_licenses_say_why(mirror, pull_dir, license, image, words):
    result = pull(f"{mirror.host}/{image}", pull_dir / "via", license, check=False)
    assert result.returncode != 0
    assert words in result.stderr, result.stderr
    assert_no_secrets(result.stderr)


def test_limited_license_still_pulls_its_image(mirror, pull_dir):
    pull(f"{mirror.host}/proxy/acme/vendor/vendor/app:1.0", pull_dir / "via", LICENSES["limited"])


def test_wrong_vendor_password_is_named_as_the_vendors_problem(mirror):
    answer = request("GET", f"{mirror.url}/v2/proxy/acme/wrongpass/vendor/app/manifests/1.0", basic(LICENSES["valid"]))
    assert answer.status == 502
    [error] = answer.errors()
    assert error["code"] == "UNAUTHORIZED"
    assert "vendor's registry credentials were refused by upstream registry 'wrongpass'" in error["message"]
    assert_no_secrets(answer.body.decode(), str(answer.headers))
    assert "127.0.0.1" not in answer.body.decode()


def test_dead_upstream_is_502_naming_the_registry(mirror):
    answer = request("GET", f"{mirror.url}/v2/proxy/acme/dead/vendor/app/manifests/1.0", basic(LICENSES["valid"]))
    assert answer.status == 502
    [error] = answer.errors()
    assert error["code"] == "UNAVAILABLE" and "upstream registry 'dead'" in error["message"]
    assert "127.0.0.1" not in answer.body.decode()


def test_head_by_tag_and_digest(mirror, built):
    auth = bearer_for(mirror.url, LICENSES["valid"], "repository:proxy/acme/vendor/vendor/app:pull")
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    by_tag = request("HEAD", f"{mirror.url}/v2/proxy/acme/vendor/vendor/app/manifests/1.0", {**auth, **accept})
    assert by_tag.status == 200 and by_tag.body == b""
    assert by_tag.headers["Docker-Content-Digest"] == built.single.manifest_digest
    by_digest = request("HEAD", f"{mirror.url}/v2/proxy/acme/vendor/vendor/app/manifests/{built.single.manifest_digest}", {**auth, **accept})
    assert by_digest.status == 200 and int(by_digest.headers["Content-Length"]) > 0
    layer = built.single.layers[0]
    blob = request("HEAD", f"{mirror.url}/v2/proxy/acme/vendor/vendor/app/blobs/{layer.digest}", auth)
    assert blob.status == 200 and int(blob.headers["Content-Length"]) == layer.size
    missing = request("HEAD", f"{mirror.url}/v2/proxy/acme/vendor/vendor/app/manifests/9.9.9", {**auth, **accept})
    assert missing.status == 404 and missing.body == b""


def test_range_request(mirror, built):
    auth = bearer_for(mirror.url, LICENSES["valid"], "repository:proxy/acme/vendor/vendor/app:pull")
    layer = built.single.layers[0]
    data = (built.single.layout / "blobs" / "sha256" / layer.digest.split(":")[1]).read_bytes()
    answer = request("GET", f"{mirror.url}/v2/proxy/acme/vendor/vendor/app/blobs/{layer.digest}", {**auth, "Range": "bytes=100-1099"})
    assert answer.status == 206
    assert answer.body == data[100:1100]
    assert answer.headers["Content-Range"] == f"bytes 100-1099/{layer.size}"


def test_tag_pagination_through_the_mirror(mirror):
    auth = bearer_for(mirror.url, LICENSES["valid"], "repository:proxy/acme/vendor/vendor/app:pull")
    url = f"{mirror.url}/v2/proxy/acme/vendor/vendor/app/tags/list?n=2"
    seen = []
    while url:
        answer = request("GET", url, auth)
        assert answer.status == 200
        page = answer.json()
        assert page["name"] == "proxy/acme/vendor/vendor/app" and len(page["tags"]) <= 2
        seen += page["tags"]
        link = answer.headers.get("Link")
        url = f"{mirror.url}{link.split('<')[1].split('>')[0]}" if link else None
    assert seen == ["1.0", "1.1", "1.2", "1.3", "2.0", "latest", "multi"]


def test_malformed_digest_is_400_not_the_upstreams_500(mirror):
    auth = basic(LICENSES["valid"])
    answer = request("GET", f"{mirror.url}/v2/proxy/acme/vendor/vendor/app/manifests/sha256:nothex", auth)
    assert answer.status == 400 and answer.errors()[0]["code"] == "DIGEST_INVALID"


def test_referrers_fallback_on_an_upstream_without_the_api(mirror, built):
    auth = basic(LICENSES["valid"])
    answer = request("GET", f"{mirror.url}/v2/proxy/acme/vendor/vendor/app/referrers/{built.single.manifest_digest}", auth)
    assert answer.status == 200
    assert answer.json() == {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}


def test_concurrent_pulls(mirror, built, tmp_path):
    processes.clear_skopeo_cache()

    def one(i):
        dest = tmp_path / f"pull{i}"
        result = pull(f"{mirror.host}/proxy/acme/vendor/vendor/app:1.0", dest, LICENSES["valid"], check=False)
        return result.returncode, blobs(dest) if result.returncode == 0 else result.stderr

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    expected = {built.single.manifest_digest.split(":")[1], *(l.digest.split(":")[1] for l in built.single.layers)}
    for code, got in results:
        assert code == 0, got
        assert expected <= got
