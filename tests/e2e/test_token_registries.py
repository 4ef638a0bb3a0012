"""GHCR, Docker Hub, Quay and ACR: the exact token exchange each real service expects, played
against local stand-ins, with skopeo pulling through the mirror.

Why stand-ins: ghcr.io, registry-1.docker.io/auth.docker.io, quay.io and *.azurecr.io cannot be
reached offline and have no offline emulator. All four speak the Distribution token protocol, so
each stand-in is a real docker-registry with token auth whose token service answers as that service
does: the realm path (/token, /v2/auth, /oauth2/token), the `service` name, the account form
(GitHub user, Docker ID, `org+robot`, service principal app id) and the answer's field (`token`
only for GHCR and Quay, `access_token` only for ACR, both for Docker Hub). Docker Hub's `library/`
prefix and its rate-limit headers are exercised too (headers added by a FaultServer in front).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import pytest

from authmirror.config import parse_registry_entry
from authmirror.upstreams import make_upstream
from tests.support import processes, pulling
from tests.support.faultserver import FaultServer
from tests.support.http import basic, request
from tests.support.tokenserver import TokenServer

from .conftest import LICENSES, license_entries

pytestmark = pytest.mark.e2e
VALID = LICENSES["valid"]


@dataclass(frozen=True)
class Service:
    type: str
    service: str  # the `service` its challenge names
    realm_path: str
    answer_fields: tuple[str, ...]
    username: str
    password: str
    upstream_repository: str  # where the image lives upstream
    url_path: str  # the registry url's path (a repository prefix)
    client_repository: str  # what customers pull through the mirror


SERVICES = [
    Service("ghcr", "ghcr.io", "/token", ("token",), "acme-bot", "ghp_localTestToken0123456789abcdefABCD", "acme/app", "/acme", "app"),
    Service("dockerhub", "registry.docker.io", "/token", ("token", "access_token"), "acmebot", "dckr_pat_localTestToken0123", "library/nginx", "", "nginx"),
    Service("quay", "quay.io", "/v2/auth", ("token",), "acme+puller", "QUAYROBOTTOKEN0123456789LOCALTEST", "acme/app", "/acme", "app"),
    Service("acr", "acme.azurecr.io", "/oauth2/token", ("access_token",), "11111111-2222-3333-4444-555555555555", "acr~secret.value-0123456789", "team/app", "", "team/app"),
]
RATE_LIMIT = {"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600", "docker-ratelimit-source": "0a1b2c3d-vendor-account"}


@dataclass
class StandIn:
    spec: Service
    tokens: TokenServer
    registry: processes.Registry
    front: FaultServer

    def new_token_requests(self, since: int) -> list[dict]:
        return self.tokens.requests[since:]


@pytest.fixture(scope="module")
def stand_ins(workdir, built):
    made = {}
    with contextlib.ExitStack() as cleanup:  # stops what was started, even when setup fails half-way
        for spec in SERVICES:
            tokens = TokenServer({spec.username: spec.password}, service=spec.service, answer_fields=spec.answer_fields).start()
            cleanup.callback(tokens.stop)
            cert = tokens.write_cert(workdir / f"{spec.type}-cert.pem")
            registry = processes.start_registry(workdir / f"{spec.type}-registry", users={}, token_auth=tokens.registry_auth(cert, spec.realm_path))
            cleanup.callback(registry.stop)
            processes.push(built.single.layout, "1.0", registry, spec.upstream_repository, creds=f"{spec.username}:{spec.password}")
            front = FaultServer(registry.url).start()
            cleanup.callback(front.stop)
            made[spec.type] = StandIn(spec, tokens, registry, front)
        yield made


def entry(stand_in: StandIn, url_base: str | None = None) -> dict:
    spec = stand_in.spec
    return {
        "name": spec.type, "type": spec.type, "url": f"{url_base or stand_in.front.url}{spec.url_path}",
        "username": spec.username, "password": f"env:E2E_{spec.type.upper()}_TOKEN",
    }


@pytest.fixture(scope="module")
def token_mirror(workdir, stand_ins):
    env = {f"E2E_{s.type.upper()}_TOKEN": s.password for s in SERVICES}
    mirror = pulling.start_mirror_for(workdir, "token-mirror", [entry(s) for s in stand_ins.values()], license_entries(), env)
    yield mirror
    mirror.stop()


@pytest.mark.parametrize("registry_type", [s.type for s in SERVICES])
def test_pull_uses_the_services_token_exchange_once_per_scope(registry_type, stand_ins, token_mirror, built, pull_dir):
    stand_in = stand_ins[registry_type]
    spec = stand_in.spec
    since = len(stand_in.tokens.requests)
    image = f"proxy/acme/{spec.type}/{spec.client_repository}:1.0"
    got = pulling.pull(token_mirror, image, pull_dir / "first", VALID)
    assert built.single.manifest_digest.split(":")[1] in got
    assert {layer.digest.split(":")[1] for layer in built.single.layers} <= got
    exchange = stand_in.new_token_requests(since)
    # Basic credentials reached the realm (the token server refuses wrong ones with 401), for the
    # upstream repository's pull scope, with the service the challenge named, at its realm path.
    assert [(r["account"], r["scopes"], r["service"], r["path"]) for r in exchange] == [
        (spec.username, [f"repository:{spec.upstream_repository}:pull"], spec.service, spec.realm_path)
    ], "one token request for the manifest and every blob"
    pulling.pull(token_mirror, image, pull_dir / "second", VALID)
    assert len(stand_in.tokens.requests) == since + 1, "the token is reused until it expires"


def test_docker_hub_rate_limit_headers_reach_the_pull_events(stand_ins, token_mirror):
    hub = stand_ins["dockerhub"]
    hub.front.add(r"/manifests/", headers=RATE_LIMIT, times=1)
    answer = request("GET", f"{token_mirror.url}/v2/proxy/acme/dockerhub/nginx/manifests/1.0", {**basic(LICENSES["valid"]), "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert answer.status == 200
    client_headers = {k.lower() for k in answer.headers}
    assert "docker-ratelimit-source" not in client_headers, "the vendor's account id stays upstream"
    assert not {"ratelimit-limit", "ratelimit-remaining"} & client_headers, "the vendor's quota stays upstream"
    event = next(e for e in reversed(token_mirror.pull_events()) if e["request_id"] == answer.headers["X-Request-Id"])
    assert event["ratelimit"] == {"limit": 100, "remaining": 76, "window_s": 21600}


def test_docker_hub_429_passes_retry_after_and_is_recorded(stand_ins, token_mirror):
    hub = stand_ins["dockerhub"]
    hub.front.add(r"/manifests/", status=429, headers={"Retry-After": "3600", **RATE_LIMIT, "ratelimit-remaining": "0;w=21600"}, body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"You have reached your pull rate limit."}]}', times=1)
    answer = request("GET", f"{token_mirror.url}/v2/proxy/acme/dockerhub/nginx/manifests/1.0", basic(LICENSES["valid"]))
    assert answer.status == 429 and answer.headers["Retry-After"] == "3600"
    [error] = answer.errors()
    assert error["code"] == "TOOMANYREQUESTS" and "pull rate limit" in error["message"]
    event = next(e for e in reversed(token_mirror.pull_events()) if e["request_id"] == answer.headers["X-Request-Id"])
    assert event["ratelimit"]["remaining"] == 0 and event["status"] == 429


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def test_one_token_request_per_scope_per_expiry(stand_ins, tmp_path, monkeypatch):
    """With an injected clock: tokens are per scope, reused until (just before) `expires_in`, then fetched once."""
    hub = stand_ins["dockerhub"]
    monkeypatch.setenv("E2E_DOCKERHUB_TOKEN", hub.spec.password)
    clock = Clock()
    upstream = make_upstream(parse_registry_entry("acme", 0, entry(hub, hub.registry.url), tmp_path), clock=clock)
    since = len(hub.tokens.requests)

    def scopes() -> list[str]:
        return sorted(s for r in hub.tokens.requests[since:] for s in r["scopes"])

    async def scenario():
        for _ in range(3):
            await asyncio.gather(upstream.authorization("nginx"), upstream.authorization("acme/app"))
        assert scopes() == ["repository:acme/app:pull", "repository:library/nginx:pull"]
        clock.now += hub.tokens.expires_in - 60  # within the refresh margin (10 % of 300 s = 30 s)? not yet
        await upstream.authorization("nginx")
        assert len(scopes()) == 2
        clock.now += 40  # now inside the margin: refreshed ahead of expiry, once
        await asyncio.gather(*[upstream.authorization("nginx") for _ in range(5)])
        assert scopes() == ["repository:acme/app:pull", "repository:library/nginx:pull", "repository:library/nginx:pull"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "registry_type, realm, allowed",
    [
        ("dockerhub", "https://auth.docker.io/token", True),
        ("dockerhub", "https://evil.example/token", False),
        ("ghcr", "https://ghcr.io/token", True),
        ("ghcr", "https://auth.docker.io/token", False),
    ],
)
def test_vendor_credentials_go_only_to_the_services_own_token_hosts(registry_type, realm, allowed, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKEN", "t")
    raw = {"name": "r", "type": registry_type, "username": "u", "password": "env:TOKEN"}  # the default url
    upstream = make_upstream(parse_registry_entry("acme", 0, raw, tmp_path))
    if allowed:
        upstream.check_realm(realm)
    else:
        with pytest.raises(Exception, match="not allowed to receive the vendor's credentials"):
            upstream.check_realm(realm)


def test_upstream_denial_tells_the_vendor_which_permission_to_grant(stand_ins, token_mirror):
    """The customer gets a generic 502 DENIED; the mirror's log says what the vendor must fix for this type."""
    acr = stand_ins["acr"]
    acr.front.add(r"/manifests/", status=403, body=b'{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}', times=1)
    answer = request("GET", f"{token_mirror.url}/v2/proxy/acme/acr/team/app/manifests/1.0", basic(LICENSES["valid"]))
    assert answer.status == 502 and answer.errors()[0]["code"] == "DENIED"
    request_id = answer.headers["X-Request-Id"]
    deadline = time.time() + 5
    while request_id not in token_mirror.log() and time.time() < deadline:
        time.sleep(0.1)
    line = next(line for line in token_mirror.log().splitlines() if request_id in line and "hint:" in line)
    assert "AcrPull" in line and "acr" in line
