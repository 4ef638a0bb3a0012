"""ECR end to end, offline: moto's ECR API mints the token through boto3 (endpoint_url), a real
docker-registry with htpasswd user `AWS` and moto's token as password stands in for the ECR
registry, and skopeo pulls through the mirror.

moto's token is `AWS:<registryId>-auth-token` with an `expiresAt` in 2015, so the mirror must cache
it for the floor lifetime and refresh it without looping. A FaultServer in front of moto counts
GetAuthorizationToken calls; one in front of the registry injects the 401 that forces a refresh.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import time

import boto3
import pytest
import yaml

from authmirror.cli.main import main
from authmirror.config import parse_registry_entry
from authmirror.upstreams import make_upstream
from tests.support import aws, processes, pulling
from tests.support.faultserver import FaultServer
from tests.support.http import basic, request

from .conftest import LICENSES, license_entries

pytestmark = pytest.mark.e2e
VALID = LICENSES["valid"]

APP = "proxy/acme/ecr/vendor/app"
AWS_ENV = {"E2E_AWS_KEY_ID": "AKIAAUTHMIRRORTEST01", "E2E_AWS_SECRET": "ecr-test-secret-key-0123456789abcdef"}
IAM_ACTIONS = ("ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability")


class Ecr:
    def __init__(self, workdir, built, cleanup: contextlib.ExitStack):
        self.moto, self.moto_url = aws.start_threaded()
        cleanup.callback(self.moto.stop)
        self.api = FaultServer(self.moto_url).start()  # counts the AWS calls the mirror makes
        cleanup.callback(self.api.stop)
        self.password = aws.ecr_password(self.moto_url)
        self.registry = processes.start_registry(workdir / "ecr-registry", users={"AWS": self.password})
        cleanup.callback(self.registry.stop)
        processes.push(built.single.layout, "1.0", self.registry, "vendor/app")
        self.front = FaultServer(self.registry.url).start()
        cleanup.callback(self.front.stop)
        # The role the ecr-role registry assumes (moto's STS hands out credentials for it).
        boto3.client("iam", endpoint_url=self.moto_url, region_name=aws.REGION, aws_access_key_id="a", aws_secret_access_key="a").create_role(
            RoleName="mirror-puller", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[]}'
        )
        # A second moto that enforces IAM: a user without ecr:GetAuthorizationToken is really denied.
        self.strict = aws.start_enforcing(workdir / "moto-strict")
        cleanup.callback(self.strict.stop)
        self.denied_key = aws.create_user_with_policy(self.strict.url, "no-token", ["ecr:BatchGetImage"])
        aws.enforce_iam(self.strict.url)

    def mints(self, service: str = "ecr") -> int:
        return sum(
            1 for method, _path, headers in self.api.requests
            if method == "POST" and f"/{service}/aws4_request" in headers.get("Authorization", "")
        )

    def seconds_since_last_mint(self) -> float:
        stamps = [h["X-Amz-Date"] for m, _p, h in self.api.requests if m == "POST" and "/ecr/aws4_request" in h.get("Authorization", "")]
        last = calendar.timegm(time.strptime(max(stamps), "%Y%m%dT%H%M%SZ"))
        return time.time() - last

    def entry(self, name: str, **overrides) -> dict:
        return {
            "name": name, "type": "ecr", "url": self.front.url, "region": aws.REGION,
            "access_key_id": "env:E2E_AWS_KEY_ID", "secret_access_key": "env:E2E_AWS_SECRET",
            "registry_id": aws.ACCOUNT, "endpoint_url": self.api.url, **overrides,
        }



@pytest.fixture(scope="module")
def ecr(workdir, built):
    with contextlib.ExitStack() as cleanup:  # stops what was started, even when setup fails half-way
        yield Ecr(workdir, built, cleanup)


@pytest.fixture(scope="module")
def ecr_env(ecr) -> dict[str, str]:
    return {**AWS_ENV, "E2E_DENIED_KEY_ID": ecr.denied_key[0], "E2E_DENIED_SECRET": ecr.denied_key[1]}


@pytest.fixture(scope="module")
def ecr_mirror(workdir, ecr, ecr_env):
    dead = f"http://127.0.0.1:{processes.free_port()}"
    registries = [
        ecr.entry("ecr"),
        ecr.entry("ecr-role", role_arn=f"arn:aws:iam::{aws.ACCOUNT}:role/mirror-puller", sts_endpoint_url=ecr.api.url),
        ecr.entry("ecr-denied", endpoint_url=ecr.strict.url, access_key_id="env:E2E_DENIED_KEY_ID", secret_access_key="env:E2E_DENIED_SECRET"),
        ecr.entry("ecr-down", endpoint_url=dead),
    ]
    # The mirror starts although one registry's AWS API is down (nothing is minted before a pull).
    mirror = pulling.start_mirror_for(workdir, "ecr-mirror", registries, license_entries(), ecr_env)
    yield mirror
    mirror.stop()


def test_skopeo_pulls_through_the_mirror_with_an_ecr_token_minted_by_boto3(ecr, ecr_mirror, built, pull_dir):
    before = ecr.mints()
    pulling.pull(ecr_mirror, f"{APP}:1.0", pull_dir / "first", VALID)
    assert built.single.manifest_digest.split(":")[1] in pulling.blobs(pull_dir / "first")
    assert {layer.digest.split(":")[1] for layer in built.single.layers} <= pulling.blobs(pull_dir / "first")
    assert ecr.mints() - before == 1, "one GetAuthorizationToken for the whole pull"
    # The registry stand-in only knows user AWS with moto's token: every request carried it.
    upstream_auth = {h.get("Authorization", "")[:6] for _m, p, h in ecr.front.requests if "/vendor/app/" in p}
    assert upstream_auth == {"Basic "}
    # Cached: a second pull within the token's lifetime mints nothing.
    pulling.pull(ecr_mirror, f"{APP}:1.0", pull_dir / "second", VALID)
    assert ecr.mints() - before == 1
    text = (ecr_mirror.workdir / "pulls.jsonl").read_text() + ecr_mirror.log()
    for secret in (ecr.password, AWS_ENV["E2E_AWS_SECRET"]):
        assert secret not in text


def test_assumed_role_mints_through_sts(ecr, ecr_mirror, built):
    before_sts = ecr.mints("sts")
    answer = request("GET", f"{ecr_mirror.url}/v2/proxy/acme/ecr-role/vendor/app/manifests/1.0", {**basic(LICENSES["valid"]), "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert answer.status == 200, answer.body
    assert ecr.mints("sts") - before_sts == 1


def test_access_denied_names_the_iam_actions_the_policy_needs(ecr_mirror):
    answer = request("GET", f"{ecr_mirror.url}/v2/proxy/acme/ecr-denied/vendor/app/manifests/1.0", basic(LICENSES["valid"]))
    assert answer.status == 502
    [error] = answer.errors()
    assert error["code"] == "DENIED"
    assert all(action in error["message"] for action in IAM_ACTIONS)
    assert "AWS ECR" in error["message"]
    assert "arn:aws" not in error["message"] and aws.ACCOUNT not in error["message"], "AWS's own message names the account: logged, not sent"


def test_aws_api_down_is_a_502_naming_the_provider(ecr_mirror):
    answer = request("GET", f"{ecr_mirror.url}/v2/proxy/acme/ecr-down/vendor/app/manifests/1.0", basic(LICENSES["valid"]))
    assert answer.status in (502, 503, 504)
    [error] = answer.errors()
    assert error["code"] == "UNAVAILABLE" and "AWS" in error["message"] and error["detail"]["registry"] == "ecr-down"
    assert "127.0.0.1" not in error["message"]
    # The mirror is still healthy and serves the other registries.
    assert request("GET", f"{ecr_mirror.url}/healthz").status == 200


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def ecr_upstream(ecr, monkeypatch, clock, **overrides):
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    registry = parse_registry_entry("acme", 0, ecr.entry("ecr", url=ecr.registry.url, **overrides), ecr.registry.workdir)
    return make_upstream(registry, clock=clock)


def test_past_expiry_means_refresh_after_the_floor_without_a_loop(ecr, monkeypatch):
    """moto's expiresAt is 2015: the token is used for the cache's floor, then minted again, once."""
    clock = Clock()
    upstream = ecr_upstream(ecr, monkeypatch, clock)

    async def scenario():
        first = await asyncio.gather(*[upstream.credentials() for _ in range(20)])
        assert {c for c in first} == {("AWS", ecr.password)}
        assert upstream.minted.fetches == 1, "concurrent callers share one mint"
        clock.now += 30
        await upstream.credentials()
        assert upstream.minted.fetches == 1, "still within the floor lifetime"
        clock.now += 60
        for _ in range(5):
            await upstream.credentials()
        assert upstream.minted.fetches == 2, "one refresh after expiry, no loop"

    asyncio.run(scenario())


def test_refusal_forgets_the_minted_token_and_retries_only_when_it_was_not_fresh(ecr, monkeypatch):
    clock = Clock()
    upstream = ecr_upstream(ecr, monkeypatch, clock)

    async def scenario():
        auth = await upstream.authorization("vendor/app")  # Basic challenge from the stand-in
        assert auth.header.startswith("Basic ")
        clock.now += 20
        assert upstream.refused(auth) is True, "stale token refused: retry with a new one"
        await upstream.authorization("vendor/app")
        assert upstream.minted.fetches == 2
        fresh = await upstream.authorization("vendor/app")
        assert upstream.refused(fresh) is False, "a just-minted token refused: the credentials are bad, no retry"
        await upstream.authorization("vendor/app")
        assert upstream.minted.fetches == 3, "and it was forgotten all the same"

    asyncio.run(scenario())


def test_config_check_reports_each_ecr_registry_with_a_hint(ecr_mirror, ecr_env, monkeypatch, capsys):
    for name, value in ecr_env.items():
        monkeypatch.setenv(name, value)
    code = main(["config", "check", "-c", str(ecr_mirror.config_path)])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert any(line.strip().startswith("OK") and "acme/ecr (ecr)" in line for line in lines)
    denied = next(i for i, line in enumerate(lines) if "acme/ecr-denied" in line)
    assert "FAIL" in lines[denied] and "ecr:GetAuthorizationToken" in lines[denied]
    assert lines[denied + 1].strip().startswith("hint:") and "IAM policy" in lines[denied + 1]
    down = next(i for i, line in enumerate(lines) if "acme/ecr-down" in line)
    assert "FAIL" in lines[down] and "ECR API" in lines[down + 1]
    for value in ecr_env.values():
        assert value not in out


def test_registry_add_ecr_by_flags_checks_live_and_saves_references(ecr, tmp_path, monkeypatch, capsys):
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "authmirror.yaml"
    args = [
        "registry", "add", "ecr", "-c", str(config), "--no-input", "--app", "acme", "--name", "vendor-ecr",
        "--url", ecr.registry.url, "--region", aws.REGION, "--registry-id", aws.ACCOUNT, "--endpoint-url", ecr.moto_url,
        "--access-key-id", "env:E2E_AWS_KEY_ID", "--secret-access-key", "env:E2E_AWS_SECRET",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "credentials accepted" in out
    [entry] = yaml.safe_load(config.read_text())["apps"]["acme"]["registries"]
    assert entry == {
        "name": "vendor-ecr", "type": "ecr", "url": ecr.registry.url, "region": aws.REGION,
        "access_key_id": "env:E2E_AWS_KEY_ID", "secret_access_key": "env:E2E_AWS_SECRET",
        "registry_id": aws.ACCOUNT, "endpoint_url": ecr.moto_url,
    }
    assert AWS_ENV["E2E_AWS_SECRET"] not in out
    assert f"arn:aws:ecr:{aws.REGION}:{aws.ACCOUNT}:repository/*" in out, "the policy for this registry, ready to copy"


# Last in the module: it needs the cached token to be older than "fresh" (10 s), so earlier tests pass the time.
def test_upstream_401_invalidates_the_ecr_token_and_the_retry_mints_a_new_one(ecr, ecr_mirror, built, pull_dir):
    # The cached token must be past "fresh" (10 s: a refusal then means bad credentials, no retry)
    # and well within its 54 s cache life (else the pull would mint anew before the 401).
    pulling.pull(ecr_mirror, f"{APP}:1.0", pull_dir / "warm", VALID)
    if ecr.seconds_since_last_mint() > 40:
        time.sleep(56 - ecr.seconds_since_last_mint())
        pulling.pull(ecr_mirror, f"{APP}:1.0", pull_dir / "rewarm", VALID)
    time.sleep(max(0.0, 11.0 - ecr.seconds_since_last_mint()))
    before_mints = ecr.mints()
    ecr.front.add(r"/manifests/1\.0$", status=401, headers={"WWW-Authenticate": 'Basic realm="ecr"'}, body=b'{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}', times=1)
    before_requests = len(ecr.front.requests)
    pulling.pull(ecr_mirror, f"{APP}:1.0", pull_dir / "after-401", VALID)
    assert built.single.manifest_digest.split(":")[1] in pulling.blobs(pull_dir / "after-401")
    manifest_requests = [p for _m, p, _h in ecr.front.requests[before_requests:] if p.endswith("/manifests/1.0")]
    assert len(manifest_requests) >= 2, "refused once, then retried"
    assert ecr.mints() - before_mints == 1, "the refused token was forgotten and exactly one new one minted"
