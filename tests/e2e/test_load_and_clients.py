"""Load: 30 concurrent skopeo pulls with different licenses while the licenses file is rewritten
every 100 ms; and the same mirror pulled with podman and containerd's ctr."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import random
import threading
import time

import pytest
import yaml

from tests.support import clients, leakcheck, processes

from .conftest import MIRROR_ENV, mirror_apps

pytestmark = pytest.mark.e2e

IMAGE = "proxy/acme/vendor/vendor/app"
PULLS = 30
# kind -> (license fields, what a refused pull's error says)
KINDS = {
    "valid": ({"apps": ["acme"]}, None),
    "expired": ({"apps": ["acme"], "expires": "2024-01-31"}, "expired on 2024-01-31"),
    "revoked": ({"apps": ["acme"], "revoked": True}, "revoked"),
    "other_app": ({"apps": ["beta"]}, "does not include app 'acme'"),
}
PLAN = ["valid"] * 18 + ["expired"] * 4 + ["revoked"] * 4 + ["other_app"] * 4


def load_licenses() -> list[dict]:
    entries = []
    for index, kind in enumerate(PLAN):
        fields, _ = KINDS[kind]
        entries.append({"id": f"load-{kind}-{index:02d}-Zq8", "customer": f"Load Customer {index:02d}", **fields})
    return entries


@pytest.fixture(scope="module")
def load_mirror(workdir, upstream, token_upstream):
    port = processes.free_port()
    config = processes.write_mirror_config(workdir / "load-mirror", port, mirror_apps(upstream, token_upstream), load_licenses())
    leakcheck.forbid_everywhere(*(e["id"] for e in load_licenses()))
    mirror = processes.start_mirror(workdir / "load-mirror", config, port, env=MIRROR_ENV)
    yield mirror
    mirror.stop()


class LicenseRewriter(threading.Thread):
    """Rewrites the licenses file every 100 ms (same licenses, new order and note), atomically."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.rewrites, self.stopping = path, 0, threading.Event()

    def run(self) -> None:
        rng = random.Random(7)
        while not self.stopping.is_set():
            entries = load_licenses()
            rng.shuffle(entries)
            for entry in entries:
                entry["note"] = f"rewrite {self.rewrites}"
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(yaml.safe_dump({"licenses": entries}))
            os.replace(tmp, self.path)
            self.rewrites += 1
            self.stopping.wait(0.1)


def layout_is_correct(layout, built) -> bool:
    """The pulled manifest is the built one, and every blob's content matches its digest."""
    index = json.loads((layout / "index.json").read_text())
    if index["manifests"][0]["digest"] != built.single.manifest_digest:
        return False
    names = set()
    for blob in (layout / "blobs" / "sha256").iterdir():
        if hashlib.sha256(blob.read_bytes()).hexdigest() != blob.name:
            return False
        names.add(blob.name)
    return {l.digest.split(":")[1] for l in built.single.layers} <= names


def test_concurrent_pulls_while_the_licenses_file_is_rewritten(load_mirror, built, tmp_path):
    processes.clear_skopeo_cache()
    rewriter = LicenseRewriter(load_mirror.workdir / "licenses.yaml")
    rewriter.start()
    started = time.monotonic()

    def pull(index: int):
        license = load_licenses()[index]["id"]
        result = processes.skopeo(
            "copy", "--retry-times=0", "--src-tls-verify=false", "--src-creds", f"customer:{license}",
            f"docker://{load_mirror.host}/{IMAGE}:1.0", f"oci:{tmp_path / str(index)}:1.0", check=False, timeout=240,
        )
        return result.returncode, result.stderr

    try:
        with concurrent.futures.ThreadPoolExecutor(PULLS) as pool:
            results = list(pool.map(pull, range(PULLS)))
    finally:
        rewriter.stopping.set()
        rewriter.join(5)
    elapsed = time.monotonic() - started

    for index, (kind, (returncode, stderr)) in enumerate(zip(PLAN, results)):
        reason = KINDS[kind][1]
        if reason is None:
            assert returncode == 0, f"pull {index} ({kind}) failed: {stderr}"
            assert layout_is_correct(tmp_path / str(index), built), f"pull {index}: wrong content"
        else:
            assert returncode != 0 and reason in stderr, f"pull {index} ({kind}): {stderr}"
    assert rewriter.rewrites >= elapsed / 0.1 * 0.5, (rewriter.rewrites, elapsed)
    log = load_mirror.log()
    # The mirror looks at the file at most once a second; the pulls take a few seconds.
    assert log.count("reloaded licenses file") >= 1, "the rewrites were picked up while pulling"
    assert "keeping the previous version" not in log, "a rewrite was seen half-written"

    raw = (load_mirror.workdir / "pulls.jsonl").read_bytes()
    assert raw.endswith(b"\n")
    events = [json.loads(line) for line in raw.splitlines()]  # a torn line would not parse
    by_customer: dict[str, list[dict]] = {}
    for event in events:
        by_customer.setdefault(event["customer"], []).append(event)
    for index, kind in enumerate(PLAN):
        mine = by_customer.get(f"Load Customer {index:02d}", [])
        if kind == "valid":
            blobs = {e["digest"] for e in mine if e["action"] == "blob" and e["status"] == 200}
            assert {l.digest for l in built.single.layers} <= blobs, index
            assert any(e["action"] == "manifest" and e["status"] == 200 and e["digest"] == built.single.manifest_digest for e in mine)
        else:
            # (a valid license for another app still gets a token, with no scopes: Distribution does the same)
            assert any(e["status"] in (401, 403) for e in mine), (index, kind, mine)
            assert not any(e["action"] in ("manifest", "blob") and e["status"] < 400 for e in mine), (index, kind, mine)
    print(f"\n{PULLS} concurrent pulls while rewriting licenses: {elapsed:.1f} s, {rewriter.rewrites} rewrites, {len(events)} pull events")


# runtime -> (what its refusal shows, user agent prefix, the methods it uses)
RUNTIMES = {
    "podman": ("has been revoked", "containers/", {"GET"}),
    "ctr": ("401 Unauthorized", "containerd/", {"HEAD", "GET", "POST"}),  # ctr shows no message; token by POST
}


@pytest.fixture(params=sorted(RUNTIMES))
def runtime(request, tmp_path):
    if request.param == "podman":
        client = clients.new_podman(tmp_path / "podman")
        yield request.param, client
        client.remove()
    else:
        client = clients.start_containerd(tmp_path / "containerd")
        yield request.param, client
        client.stop()


def test_container_runtimes_pull_through_the_mirror(load_mirror, built, runtime):
    name, client = runtime
    refusal, user_agent, methods = RUNTIMES[name]
    valid, revoked = load_licenses()[0]["id"], load_licenses()[PLAN.index("revoked")]["id"]
    before = len(load_mirror.pull_events())
    reference = f"{load_mirror.host}/{IMAGE}:1.0"
    result = client.pull(reference, valid)
    assert result.returncode == 0, result.stderr
    assert client.digest(reference) == built.single.manifest_digest
    result = client.pull(f"{load_mirror.host}/{IMAGE}:multi", revoked)
    assert result.returncode != 0 and refusal in result.stderr, result.stderr
    events = [e for e in load_mirror.pull_events()[before:] if (e["user_agent"] or "").startswith(user_agent)]
    assert {e["method"] for e in events} >= methods
    assert {l.digest for l in built.single.layers} <= {e["digest"] for e in events if e["action"] == "blob" and e["status"] == 200}
