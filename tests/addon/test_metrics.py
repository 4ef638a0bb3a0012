"""/metrics: Prometheus numbers for requests, bytes, errors, upstream latency and caches, with
bounded labels and no secrets; open by default, or behind a metrics token."""

import hashlib
import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from authmirror import metrics
from authmirror.config import parse_config
from authmirror.context import get_context
from authmirror.errors import ConfigError

from .conftest import LICENSES, UPSTREAM_PASSWORD, VALID, basic, errors_of, loaded_addon, make_flow, run_request, write_config
from .test_addon_cache import play_blob
from .test_addon_forwarding import DIGEST, forwarded, upstream_answers

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'


async def scrape(addon, authorization: str | None = None, accept: str | None = None):
    flow = make_flow("/metrics", authorization=authorization, headers={"Accept": accept} if accept else None)
    await run_request(addon, flow)
    return flow


async def samples(addon) -> dict[tuple, float]:
    """{(sample name, sorted label items): value} from a scrape."""
    flow = await scrape(addon)
    assert flow.response.status_code == 200, flow.response.content
    found = {}
    for family in text_string_to_metric_families(flow.response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def pull_manifest(addon, reference: str = "1.0", authorization: str | None = None, status: int = 200, body: bytes = MANIFEST):
    flow = await forwarded(addon, f"/v2/proxy/acme/vendor/app/manifests/{reference}", authorization=authorization)
    addon.injector.request(flow)
    headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest": DIGEST} if status == 200 else {}
    upstream_answers(addon, flow, status, headers, body)
    return flow


async def test_metrics_count_requests_bytes_and_upstream_latency_without_credentials(addon_ctx):
    addon, _, _ = addon_ctx
    before = await samples(addon)
    await pull_manifest(addon)
    blob = await forwarded(addon, f"/v2/proxy/acme/vendor/app/blobs/{DIGEST}")
    upstream_answers(addon, blob, 200, {"Content-Type": "application/octet-stream"}, b"b" * 5000)
    after = await samples(addon)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("authmirror_requests_total", action="manifest", method="GET", status="200") == 1
    assert grew("authmirror_requests_total", action="blob", method="GET", status="200") == 1
    assert grew("authmirror_response_bytes_total", action="manifest", app="acme", registry="vendor") == len(MANIFEST)
    assert grew("authmirror_response_bytes_total", action="blob", app="acme", registry="vendor") == 5000
    assert grew("authmirror_upstream_latency_seconds_count", app="acme", registry="vendor", target="registry") == 2
    assert grew("authmirror_request_duration_seconds_count", action="blob") == 1
    assert value(after, "authmirror_licenses") == len(LICENSES)
    assert value(after, "process_resident_memory_bytes") > 0


async def test_errors_are_counted_by_code(addon_ctx):
    addon, _, _ = addon_ctx
    before = await samples(addon)
    await pull_manifest(addon, "9.9", status=404, body=b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')
    refused = make_flow("/v2/proxy/acme/vendor/app/manifests/1.0", authorization=basic("not-a-license-at-all"))
    await run_request(addon, refused)
    addon.response(refused)
    after = await samples(addon)
    assert value(after, "authmirror_errors_total", action="manifest", code="MANIFEST_UNKNOWN") - value(before, "authmirror_errors_total", action="manifest", code="MANIFEST_UNKNOWN") == 1
    assert value(after, "authmirror_errors_total", action="manifest", code="UNAUTHORIZED") - value(before, "authmirror_errors_total", action="manifest", code="UNAUTHORIZED") == 1
    assert value(after, "authmirror_requests_total", action="manifest", method="GET", status="401") > value(before, "authmirror_requests_total", action="manifest", method="GET", status="401")


async def test_token_caches_are_counted(addon_ctx):
    addon, _, fake = addon_ctx
    fake.routes["/v2/"] = (401, {"WWW-Authenticate": 'Bearer realm="http://upstream.test:5001/token",service="reg"'}, b"")
    fake.routes["/token"] = (200, {}, b'{"token":"upstream-token-1","expires_in":300}')
    token_flow = make_flow("/v2/token?service=authmirror&scope=repository:proxy/acme/vendor/app:pull", authorization=basic(VALID))
    await run_request(addon, token_flow)
    bearer = "Bearer " + json.loads(token_flow.response.content)["token"]
    before = await samples(addon)
    for _ in range(3):
        await pull_manifest(addon, authorization=bearer)
    after = await samples(addon)
    # the first use verifies the signature, later uses hit the cache
    assert value(after, "authmirror_token_verify_cache_total", result="miss") - value(before, "authmirror_token_verify_cache_total", result="miss") == 1
    assert value(after, "authmirror_token_verify_cache_total", result="hit") - value(before, "authmirror_token_verify_cache_total", result="hit") == 2
    # one upstream token fetched, then reused
    upstream = {"app": "acme", "registry": "vendor"}
    assert value(after, "authmirror_upstream_token_cache_total", **upstream, result="fetch") - value(before, "authmirror_upstream_token_cache_total", **upstream, result="fetch") == 1
    assert value(after, "authmirror_upstream_token_cache_total", **upstream, result="hit") - value(before, "authmirror_upstream_token_cache_total", **upstream, result="hit") == 2


async def test_counters_survive_a_config_reload(addon_ctx, config_path):
    addon, tctx, _ = addon_ctx
    token_flow = make_flow("/v2/token?service=authmirror&scope=repository:proxy/acme/vendor/app:pull", authorization=basic(VALID))
    await run_request(addon, token_flow)
    bearer = "Bearer " + json.loads(token_flow.response.content)["token"]
    await pull_manifest(addon, authorization=bearer)
    before = value(await samples(addon), "authmirror_token_verify_cache_total", result="miss")
    tctx.configure(addon, authmirror_config=str(config_path) + "")  # same path: force a rebuild below
    addon.configure({"authmirror_config"})
    assert value(await samples(addon), "authmirror_token_verify_cache_total", result="miss") >= before >= 1


async def test_blob_cache_results_are_counted_when_the_cache_reports_them(addon_ctx):
    addon, _, _ = addon_ctx
    before = await samples(addon)
    flow = await forwarded(addon, f"/v2/proxy/acme/vendor/app/blobs/{DIGEST}")
    get_context(flow).cache = "hit"  # what the blob cache sets on requests it answers
    upstream_answers(addon, flow, 200, {"Content-Type": "application/octet-stream"}, b"c" * 700)
    after = await samples(addon)
    assert value(after, "authmirror_blob_cache_requests_total", result="hit") - value(before, "authmirror_blob_cache_requests_total", result="hit") == 1
    assert value(after, "authmirror_blob_cache_bytes_total", result="hit") - value(before, "authmirror_blob_cache_bytes_total", result="hit") == 700


async def test_labels_stay_bounded_and_hold_no_secrets(addon_ctx):
    addon, _, _ = addon_ctx
    for tag in ("1.0", "1.1", "2.0", "latest", "beta-7"):
        await pull_manifest(addon, tag)
    for license in LICENSES:
        flow = make_flow("/v2/token?service=authmirror&scope=repository:proxy/acme/vendor/app:pull", authorization=basic(license["id"]))
        await run_request(addon, flow)
        addon.response(flow)
    before = await samples(addon)
    for tag in ("3.0", "3.1", "3.2", "3.3"):
        await pull_manifest(addon, tag)
    after = await samples(addon)
    assert {k for k in after if k[0] == "authmirror_requests_total"} == {k for k in before if k[0] == "authmirror_requests_total"}

    text = (await scrape(addon)).response.text
    for secret in (UPSTREAM_PASSWORD, *(lic["id"] for lic in LICENSES)):
        assert secret not in text
    for private in ("lic_", "Globex", "upstream.test", "latest", "app\""):
        assert private not in text, private


async def test_openmetrics_when_asked_for(addon_ctx):
    addon, _, _ = addon_ctx
    flow = await scrape(addon, accept="application/openmetrics-text; version=1.0.0")
    assert flow.response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert flow.response.text.rstrip().endswith("# EOF")


async def test_metrics_token_protects_the_endpoint(tmp_path):
    with loaded_addon(write_config(tmp_path, metrics={"token": "scrape-secret-1234"})) as (addon, _, _):
        refused = await scrape(addon)
        assert refused.response.status_code == 401 and errors_of(refused)[0]["code"] == "UNAUTHORIZED"
        assert "WWW-Authenticate" in refused.response.headers
        assert (await scrape(addon, "Bearer wrong-token")).response.status_code == 401
        assert (await scrape(addon, basic(VALID))).response.status_code == 401  # a license is not the metrics token
        assert (await scrape(addon, "Bearer scrape-secret-1234")).response.status_code == 200
        assert (await scrape(addon, basic("scrape-secret-1234", user="prometheus"))).response.status_code == 200


async def test_metrics_can_be_turned_off(tmp_path):
    with loaded_addon(write_config(tmp_path, metrics={"enabled": False})) as (addon, _, _):
        flow = await scrape(addon)
        assert flow.response.status_code == 404 and errors_of(flow)[0]["message"] == "metrics are not enabled"


@pytest.mark.parametrize(
    "metrics, key",
    [({"enabled": "yes"}, "metrics.enabled"), ({"port": 9100}, "metrics.port"), ({"token": ""}, "metrics.token"), ("on", "metrics")],
)
def test_bad_metrics_config_names_the_key(tmp_path, metrics, key):
    with pytest.raises(ConfigError) as error:
        parse_config({"metrics": metrics, "licenses": {"file": "licenses.yaml"}}, Path(tmp_path / "authmirror.yaml"))
    assert error.value.key == key


# -- the blob cache's own state, read at scrape time ----------------------------------------------

BLOB_A = bytes(range(256)) * 64
BLOB_B = bytes(reversed(range(256))) * 64
CACHE_COUNTERS = ("saved_bytes", "filled_bytes", "fills_dropped", "corrupt_files", "evictions")


def flip_a_bit(path: Path) -> None:
    with open(path, "r+b") as f:
        byte = f.read(1)
        f.seek(0)
        f.write(bytes([byte[0] ^ 1]))


def digest_of(body: bytes) -> str:
    return f"sha256:{hashlib.sha256(body).hexdigest()}"


async def fill_or_miss(addon, body: bytes, announced: int | None = None) -> None:
    """A blob GET the cache does not answer: the upstream's body passes (and fills, if whole)."""
    flow = await forwarded(addon, f"/v2/proxy/acme/vendor/app/blobs/{digest_of(body)}")
    addon.injector.request(flow)
    play_blob(addon, flow, body, announced if announced is not None else len(body))


async def cache_hit(addon, body: bytes, method: str = "GET") -> None:
    flow = await run_request(addon, make_flow(f"/v2/proxy/acme/vendor/app/blobs/{digest_of(body)}", method=method, authorization=basic(VALID)))
    assert flow.response.status_code == (307 if method == "GET" else 200)  # serve: redirect
    addon.response(flow)


@pytest.fixture
def redirect_cache(tmp_path):
    """A mirror whose cache holds one of the two 16 KiB blobs at a time, hits answered by a 307."""
    config = write_config(tmp_path, cache={"dir": "cache", "max_size": len(BLOB_A) + 1000, "serve": "redirect"})
    with loaded_addon(config) as (addon, _, _):
        try:
            yield addon
        finally:
            addon.mirror.close()  # stops nginx (taddons does not call `done`)


async def test_cache_state_is_read_at_scrape_time(redirect_cache):
    addon = redirect_cache
    before = await samples(addon)
    await fill_or_miss(addon, BLOB_A)
    await fill_or_miss(addon, BLOB_B)  # evicts A: the cache holds one of them
    await cache_hit(addon, BLOB_B)  # 307 to the file server: the blob's bytes are saved upstream
    await cache_hit(addon, BLOB_B, "HEAD")  # answered from the index, no bytes
    await fill_or_miss(addon, BLOB_A, announced=len(BLOB_A) + 10)  # truncated: dropped
    flip_a_bit(addon.mirror.cache.store.path(digest_of(BLOB_B)))
    await fill_or_miss(addon, BLOB_B)  # found corrupt before serving: fetched and filled again
    after = await samples(addon)

    def grew(name):
        return value(after, f"authmirror_blob_cache_{name}_total") - value(before, f"authmirror_blob_cache_{name}_total")

    assert {name: grew(name) for name in CACHE_COUNTERS} == {
        "saved_bytes": len(BLOB_B),
        "filled_bytes": len(BLOB_A) + 2 * len(BLOB_B),
        "fills_dropped": 1,
        "corrupt_files": 1,
        "evictions": 1,
    }
    assert value(after, "authmirror_blob_cache_entries") == 1
    assert value(after, "authmirror_blob_cache_size_bytes") == len(BLOB_B)
    assert value(after, "authmirror_blob_cache_max_size_bytes") == len(BLOB_A) + 1000
    # the per-request counters agree with the cache's own
    assert value(after, "authmirror_blob_cache_bytes_total", result="hit") - value(before, "authmirror_blob_cache_bytes_total", result="hit") == len(BLOB_B)
    assert value(after, "authmirror_blob_cache_requests_total", result="hit") - value(before, "authmirror_blob_cache_requests_total", result="hit") == 2

    # Since start: 2 of 6 requests answered from the cache (the module's collector also carries
    # earlier tests' mirrors, so a collector of its own watches this one).
    collector = metrics.MirrorCollector()
    collector.watch(addon.mirror)
    ratio = {family.name: family.samples[0].value for family in collector.collect() if family.name == "authmirror_blob_cache_hit_ratio"}
    assert ratio == {"authmirror_blob_cache_hit_ratio": pytest.approx(2 / 6)}

    text = (await scrape(addon)).response.text
    assert digest_of(BLOB_B)[7:] not in text and "cache/files" not in text  # no digests, no paths
    assert "authmirror_blob_cache_hit_ratio{" not in text  # no labels on the cache's own state


async def test_no_cache_state_without_a_cache(addon_ctx):
    addon, _, _ = addon_ctx
    found = await samples(addon)
    assert not [name for name, _ in found if name.startswith(("authmirror_blob_cache_hit_ratio", "authmirror_blob_cache_entries", "authmirror_blob_cache_saved"))]
