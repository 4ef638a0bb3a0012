"""GCR / GAR end to end, offline.

The service-account key is generated here; its `token_uri` points at a local stand-in for Google's
token endpoint that checks the RS256-signed JWT assertion and issues an access token. The registry
is a real docker-registry with token auth, as gcr.io and *-docker.pkg.dev are: its token service
accepts Basic `oauth2accesstoken:<that access token>` and `_json_key:<the key JSON>`, exactly the
two forms GCR/GAR accept. skopeo pulls through the mirror.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time

import pytest
import yaml

from authmirror.cli.main import main
from authmirror.config import parse_registry_entry
from authmirror.errors import ConfigError
from authmirror.upstreams import make_upstream
from tests.support import processes, pulling
from tests.support.googletoken import GoogleTokenEndpoint
from tests.support.http import basic, request
from tests.support.tokenserver import TokenServer

from .conftest import LICENSES, license_entries

pytestmark = pytest.mark.e2e
VALID = LICENSES["valid"]


class Google:
    def __init__(self, workdir, built, cleanup: contextlib.ExitStack):
        self.endpoint = GoogleTokenEndpoint().start()
        cleanup.callback(self.endpoint.stop)
        self.key = self.endpoint.service_account_key()
        self.key_text = json.dumps(self.key, indent=2)
        self.key_file = workdir / "google" / "puller-key.json"
        self.key_file.parent.mkdir(parents=True, exist_ok=True)
        self.key_file.write_text(self.key_text)
        # A key Google no longer knows (deleted): signed by a key this endpoint never issued.
        stranger = GoogleTokenEndpoint().start()
        self.deleted_key = {**stranger.service_account_key(), "token_uri": self.endpoint.url}
        stranger.stop()
        self.tokens = TokenServer({"oauth2accesstoken": self.endpoint.access_token, "_json_key": self.key_text}, service="gcr.io").start()
        cleanup.callback(self.tokens.stop)
        cert = self.tokens.write_cert(workdir / "google" / "token-cert.pem")
        self.registry = processes.start_registry(workdir / "google" / "registry", users={}, token_auth=self.tokens.registry_auth(cert, "/v2/token"))
        cleanup.callback(self.registry.stop)
        creds = f"_json_key:{self.key_text}"
        processes.push(built.single.layout, "1.0", self.registry, "acme-project/app", creds=creds)
        processes.push(built.single.layout, "1.0", self.registry, "acme-project/images/app", creds=creds)


@pytest.fixture(scope="module")
def google(workdir, built):
    with contextlib.ExitStack() as cleanup:  # stops what was started, even when setup fails half-way
        yield Google(workdir, built, cleanup)


@pytest.fixture(scope="module")
def google_env(google) -> dict[str, str]:
    return {"E2E_GAR_KEY": google.key_text, "E2E_DELETED_KEY": json.dumps(google.deleted_key)}


@pytest.fixture(scope="module")
def google_mirror(workdir, google, google_env):
    registries = [
        {"name": "gcr", "type": "gcr", "url": f"{google.registry.url}/acme-project", "service_account_json": f"file:{google.key_file}"},
        {"name": "gar", "type": "gar", "url": f"{google.registry.url}/acme-project/images", "service_account_json": "env:E2E_GAR_KEY", "json_key": True},
        {"name": "gcr-deleted-key", "type": "gcr", "url": f"{google.registry.url}/acme-project", "service_account_json": "env:E2E_DELETED_KEY"},
    ]
    mirror = pulling.start_mirror_for(workdir, "google-mirror", registries, license_entries(), google_env)
    yield mirror
    mirror.stop()


def test_gcr_pull_with_an_access_token_minted_from_the_service_account(google, google_mirror, built, pull_dir):
    grants, token_requests = len(google.endpoint.requests), len(google.tokens.requests)
    got = pulling.pull(google_mirror, "proxy/acme/gcr/app:1.0", pull_dir / "gcr", VALID)
    assert built.single.manifest_digest.split(":")[1] in got
    new_grants = google.endpoint.requests[grants:]
    assert [(g["iss"], g["ok"]) for g in new_grants] == [(google.key["client_email"], True)], "one signed assertion, verified"
    new = google.tokens.requests[token_requests:]
    assert {r["account"] for r in new} == {"oauth2accesstoken"}
    assert [r["scopes"] for r in new] == [["repository:acme-project/app:pull"]], "project from the url is the repository prefix"
    assert {r["path"] for r in new} == {"/v2/token"} and {r["service"] for r in new} == {"gcr.io"}


def test_gar_pull_with_json_key_sends_the_key_itself(google, google_mirror, built, pull_dir):
    grants, token_requests = len(google.endpoint.requests), len(google.tokens.requests)
    got = pulling.pull(google_mirror, "proxy/acme/gar/app:1.0", pull_dir / "gar", VALID)
    assert built.single.manifest_digest.split(":")[1] in got
    assert len(google.endpoint.requests) == grants, "json_key mints nothing"
    new = google.tokens.requests[token_requests:]
    assert {r["account"] for r in new} == {"_json_key"}
    assert [r["scopes"] for r in new] == [["repository:acme-project/images/app:pull"]]


def test_deleted_key_is_a_clear_502(google_mirror):
    answer = request("GET", f"{google_mirror.url}/v2/proxy/acme/gcr-deleted-key/app/manifests/1.0", basic(LICENSES["valid"]))
    assert answer.status == 502
    [error] = answer.errors()
    assert error["code"] == "UNAUTHORIZED"
    assert "Google refused the service account key" in error["message"] and "invalid_grant" in error["message"]
    assert "PRIVATE KEY" not in answer.body.decode()


def test_config_check_hints_at_a_new_key(google_mirror, google_env, monkeypatch, capsys):
    for name, value in google_env.items():
        monkeypatch.setenv(name, value)
    assert main(["config", "check", "-c", str(google_mirror.config_path), "--json"]) == 1
    results = {r["registry"]: r for r in json.loads(capsys.readouterr().out)["registries"]}
    assert results["gcr"]["ok"] and results["gar"]["ok"]
    deleted = results["gcr-deleted-key"]
    assert not deleted["ok"] and deleted["kind"] == "credentials_unavailable" and "create a new JSON key" in deleted["hint"]


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def test_access_token_is_cached_and_refreshed_ahead_of_expiry(google, tmp_path):
    clock = Clock()
    entry = {"name": "gcr", "type": "gcr", "url": f"{google.registry.url}/acme-project", "service_account_json": f"file:{google.key_file}"}
    upstream = make_upstream(parse_registry_entry("acme", 0, entry, tmp_path), clock=clock)
    grants = len(google.endpoint.requests)

    async def scenario():
        assert await upstream.credentials() == ("oauth2accesstoken", google.endpoint.access_token)
        clock.now += 3000  # of 3599 s: still good
        await upstream.credentials()
        assert len(google.endpoint.requests) - grants == 1
        clock.now += 400  # inside the refresh margin before expiry
        await upstream.credentials()
        assert len(google.endpoint.requests) - grants == 2

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "content, words",
    [
        ("{not json", "is not valid JSON"),
        (json.dumps({"type": "authorized_user", "client_id": "x"}), "not a service account key"),
        (json.dumps({"type": "service_account", "client_email": "a@b"}), "lacks private_key, token_uri"),
        (json.dumps({"type": "service_account", "client_email": "a@b", "token_uri": "http://127.0.0.1:9/token", "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"}), "private_key could not be read"),
    ],
)
def test_malformed_service_account_json_is_refused_naming_the_key(tmp_path, content, words):
    (tmp_path / "key.json").write_text(content)
    entry = {"name": "gar", "type": "gar", "url": "https://europe-docker.pkg.dev/p/r", "service_account_json": "file:key.json"}
    with pytest.raises(ConfigError, match=words) as raised:
        parse_registry_entry("acme", 0, entry, tmp_path)
    assert raised.value.key == "apps.acme.registries[0].service_account_json"


def test_registry_add_gcr_interactively_with_the_key_file(google, tmp_path, monkeypatch, capsys):
    config = tmp_path / "authmirror.yaml"
    answers = "\n".join(["acme", "", f"{google.registry.url}/acme-project", str(google.key_file), "no"]) + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(answers))
    assert main(["registry", "add", "gcr", "-c", str(config)]) == 0
    out = capsys.readouterr()
    guide = out.out.index("roles/artifactregistry.reader")
    assert guide < out.out.index("Path to the service account JSON key file"), "explained before asked"
    assert "credentials accepted" in out.out
    assert google.key["private_key"].splitlines()[1] not in out.out + out.err
    [entry] = yaml.safe_load(config.read_text())["apps"]["acme"]["registries"]
    assert entry == {"name": "gcr", "type": "gcr", "url": f"{google.registry.url}/acme-project", "service_account_json": f"file:{google.key_file}"}


def test_token_service_refusing_a_stale_access_token_mints_a_new_one(google, tmp_path):
    """Google revoked the access token early (the registry's token service says 401): the mirror
    mints a new one and fetches the registry token again, once."""
    clock = Clock()
    entry = {"name": "gcr", "type": "gcr", "url": f"{google.registry.url}/acme-project", "service_account_json": f"file:{google.key_file}"}
    upstream = make_upstream(parse_registry_entry("acme", 0, entry, tmp_path), clock=clock)
    old_token = google.endpoint.access_token

    async def scenario():
        await upstream.credentials()
        google.endpoint.access_token = google.tokens.users["oauth2accesstoken"] = "ya29.local-access-token-0002"
        clock.now += 20  # the cached access token is no longer fresh
        grants = len(google.endpoint.requests)
        auth = await upstream.authorization("app")
        assert auth.header.startswith("Bearer ")
        assert len(google.endpoint.requests) - grants == 1
        assert google.tokens.requests[-1]["account"] == "oauth2accesstoken"

    try:
        asyncio.run(scenario())
    finally:
        google.endpoint.access_token = google.tokens.users["oauth2accesstoken"] = old_token
