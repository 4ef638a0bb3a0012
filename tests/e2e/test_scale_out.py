"""Scale-out for real: two mirror replicas sharing only the signing key (config, licenses from
files), behind nginx; tokens from one replica work on the other; each replica writes its own pull
events (one to a file, one to stdout as in a pod) and serves its own Prometheus metrics."""

import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import nginx, processes
from tests.support.http import basic, bearer_for, request

from .conftest import LICENSES, MIRROR_ENV, assert_no_secrets, license_entries, mirror_apps, start_mirror

pytestmark = pytest.mark.e2e
IMAGE = "proxy/acme/vendor/vendor/app"
SCOPE = f"repository:{IMAGE}:pull"
MANIFEST_ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


@pytest.fixture(scope="module")
def replicas(workdir, upstream, token_upstream):
    shared = workdir / "replicas-shared"
    shared.mkdir()
    token = {"signing_key": f"file:{shared / 'token.pem'}", "ttl_seconds": 300}
    started = []
    try:
        first = start_mirror(workdir, upstream, token_upstream, "replica-a", token=token)
        started.append(first)
        # The second replica runs as in the Kubernetes example: pull events on stdout.
        port = processes.free_port()
        config = processes.write_mirror_config(workdir / "replica-b", port, mirror_apps(upstream, token_upstream), license_entries(), token=token, pull_log="-")
        second = processes.start_mirror(workdir / "replica-b", config, port, env=MIRROR_ENV, extra_args=["--set", "flow_detail=0"])
        started.append(second)
        balancer = nginx.start_nginx(workdir / "replicas-nginx", {"both": [first.port, second.port]})
        started.append(balancer)
        yield first, second, balancer
    finally:
        for thing in reversed(started):
            thing.stop()


def events_of(replica) -> list[dict]:
    """Pull events from the replica's log file, or from its stdout (the JSON lines there)."""
    if replica.pull_events():
        return replica.pull_events()
    return [json.loads(line) for line in replica.log().splitlines() if line.startswith("{")]


def test_a_token_from_one_replica_is_accepted_by_the_other(replicas, built):
    first, second, _ = replicas
    headers = {**bearer_for(first.url, LICENSES["valid"], SCOPE), **MANIFEST_ACCEPT}
    answer = request("GET", f"{second.url}/v2/{IMAGE}/manifests/1.0", headers)
    assert answer.status == 200 and answer.headers["Docker-Content-Digest"] == built.single.manifest_digest


def test_pull_through_a_load_balancer_over_two_replicas(replicas, built, pull_dir):
    first, second, balancer = replicas
    host = balancer.url("both").split("://")[1]
    processes.skopeo("copy", "--quiet", "--src-tls-verify=false", "--src-creds", f"c:{LICENSES['valid']}", f"docker://{host}/{IMAGE}:1.0", f"oci:{pull_dir}/out:1.0")
    pulled = {p.name for p in (pull_dir / "out" / "blobs" / "sha256").iterdir()}
    assert {layer.digest.split(":")[1] for layer in built.single.layers} <= pulled

    # Requests one after another spread over both replicas; each logs what it served, itself.
    auth = basic(LICENSES["valid"])
    for _ in range(4):
        assert request("GET", f"{balancer.url('both')}/v2/{IMAGE}/manifests/1.0", {**auth, **MANIFEST_ACCEPT}).status == 200
    served = [[e for e in events_of(replica) if e["action"] == "manifest"] for replica in (first, second)]
    assert all(served), "both replicas should have answered manifest requests"
    assert {e["request_id"] for e in served[0]}.isdisjoint({e["request_id"] for e in served[1]})
    assert not (second.workdir / "pulls.jsonl").exists()
    assert all(e["customer"] == "Globex Corp" for e in served[1])
    blobs = [e for replica in (first, second) for e in events_of(replica) if e["action"] == "blob" and e["status"] == 200]
    assert {e["digest"] for e in blobs} >= {layer.digest for layer in built.single.layers}


def test_each_replica_serves_its_own_metrics_without_secrets(replicas):
    first, second, _ = replicas
    for replica in (first, second):
        request("GET", f"{replica.url}/v2/{IMAGE}/manifests/1.0", {**basic(LICENSES["valid"]), **MANIFEST_ACCEPT})
        answer = request("GET", f"{replica.url}/metrics")
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain")
        text = answer.body.decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        served = [s for s in families["authmirror_requests"].samples if s.labels.get("action") == "manifest" and s.labels.get("status") == "200"]
        assert served and served[0].value >= 1
        assert "authmirror_upstream_latency_seconds" in families and "authmirror_token_verify_cache" in families
        assert_no_secrets(text)
        assert "Globex" not in text and "lic_" not in text
