"""Abuse and limits against a running mirror: failed-license attempts rate-limited per client
address, and token signing key rotation (tokens signed with the previous key keep working)."""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse

import jwt
import pytest

from authmirror.tokens import key_id, load_signing_key
from tests.support import leakcheck, processes
from tests.support.http import basic, bearer_for, request

from .conftest import LICENSES, MIRROR_ENV, license_entries, mirror_apps

pytestmark = pytest.mark.e2e

IMAGE = "proxy/acme/vendor/vendor/app"
SCOPE = f"repository:{IMAGE}:pull"
ACCEPT = {"Accept": "application/vnd.oci.image.manifest.v1+json"}


def request_from(address: str, port: int, path: str, headers: dict) -> tuple[int, dict, dict]:
    """A request from another loopback source address (127.0.0.0/8 is all ours)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(address, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        leakcheck.record_answer(f"http://127.0.0.1:{port}{path}", response.status, response.headers, body)
        return response.status, dict(response.headers), json.loads(body) if body else {}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def limited(workdir, upstream, token_upstream):
    port = processes.free_port()
    config = processes.write_mirror_config(
        workdir / "limited-mirror", port, mirror_apps(upstream, token_upstream), license_entries(),
        limits={"failed_license_attempts": 3, "failed_license_window": "6s"},
    )
    mirror = processes.start_mirror(workdir / "limited-mirror", config, port, env=MIRROR_ENV)
    yield mirror
    mirror.stop()


def test_failed_license_attempts_are_rate_limited_per_address(limited):
    token_url = f"{limited.url}/v2/token?service=authmirror&scope={SCOPE}"
    bearer = bearer_for(limited.url, LICENSES["valid"], SCOPE)  # issued before the attack
    for guess in range(3):
        assert request("GET", token_url, basic(f"guess-{guess}-aaaaaaaa")).status == 401
    form = urllib.parse.urlencode({"grant_type": "password", "username": "x", "password": "guess-by-post-aaaa", "scope": SCOPE})
    blocked = request("POST", f"{limited.url}/v2/token", {"Content-Type": "application/x-www-form-urlencoded"}, form.encode())
    assert blocked.status == 429
    [error] = blocked.errors()
    retry_after = int(blocked.headers["Retry-After"])
    assert error["code"] == "TOOMANYREQUESTS" and 1 <= retry_after <= 6 and f"retry after {retry_after} s" in error["message"]
    # the right license is not even looked at from this address now (a right guess must not show)
    assert request("GET", token_url, basic(LICENSES["valid"])).status == 429
    assert request("GET", f"{limited.url}/v2/{IMAGE}/manifests/1.0", {**basic(LICENSES["valid"]), **ACCEPT}).status == 429
    # tokens already issued keep working; unauthenticated challenges are unaffected
    assert request("GET", f"{limited.url}/v2/{IMAGE}/manifests/1.0", {**bearer, **ACCEPT}).status == 200
    assert request("GET", f"{limited.url}/v2/").status == 401
    # another client address is not affected
    status, _, _ = request_from("127.0.0.2", limited.port, f"/v2/{IMAGE}/manifests/1.0", {**basic(LICENSES["valid"]), **ACCEPT})
    assert status == 200
    events = [e for e in limited.pull_events() if e["status"] == 429]
    assert events and events[-1]["error_code"] == "TOOMANYREQUESTS" and events[-1]["client_ip"] == "127.0.0.1"
    # after Retry-After the address may try again
    time.sleep(retry_after + 0.2)
    assert request("GET", token_url, basic(LICENSES["valid"])).status == 200


def test_signing_key_rotation(workdir, upstream, token_upstream):
    """Rotate: the new mirror signs with key 2 and still accepts tokens of key 1 (token.previous_keys)."""
    old_mirror = start(workdir, upstream, token_upstream, "rotate-old", {"signing_key": "file:../rotation/key1.pem"})
    try:
        old_token = bearer_for(old_mirror.url, LICENSES["valid"], SCOPE)
    finally:
        old_mirror.stop()
    key1 = load_signing_key(f"file:{workdir / 'rotation' / 'key1.pem'}")
    assert jwt.get_unverified_header(old_token["Authorization"].split()[1])["kid"] == key_id(key1.public_key())

    rotated = start(workdir, upstream, token_upstream, "rotate-new", {"signing_key": "file:../rotation/key2.pem", "previous_keys": ["file:../rotation/key1.pem"]})
    try:
        assert request("GET", f"{rotated.url}/v2/{IMAGE}/manifests/1.0", {**old_token, **ACCEPT}).status == 200
        new_token = bearer_for(rotated.url, LICENSES["valid"], SCOPE)
        new_kid = jwt.get_unverified_header(new_token["Authorization"].split()[1])["kid"]
        key2 = load_signing_key(f"file:{workdir / 'rotation' / 'key2.pem'}")
        assert new_kid == key_id(key2.public_key()) != key_id(key1.public_key())
        assert "accepted for 300 s more" in rotated.log()
    finally:
        rotated.stop()

    retired = start(workdir, upstream, token_upstream, "rotate-done", {"signing_key": "file:../rotation/key2.pem"})
    try:
        refused = request("GET", f"{retired.url}/v2/{IMAGE}/manifests/1.0", {**old_token, **ACCEPT})
        assert refused.status == 401 and refused.errors()[0]["code"] == "UNAUTHORIZED"
        assert request("GET", f"{retired.url}/v2/{IMAGE}/manifests/1.0", {**new_token, **ACCEPT}).status == 200
    finally:
        retired.stop()


def start(workdir, upstream, token_upstream, name: str, token: dict):
    port = processes.free_port()
    config = processes.write_mirror_config(workdir / name, port, mirror_apps(upstream, token_upstream), license_entries(), token={**token, "ttl_seconds": 300})
    return processes.start_mirror(workdir / name, config, port, env=MIRROR_ENV)
