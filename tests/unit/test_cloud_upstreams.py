"""Registry types: config validation, naming quirks, AWS error messages, hints, rate-limit parsing."""

from __future__ import annotations

from pathlib import Path

import botocore.exceptions
import pytest
import yaml

from authmirror.config import load_config, parse_registry_entry
from authmirror.errors import ConfigError, RegistryError, UpstreamDiagnostics, UpstreamError, translate_upstream_error
from authmirror.onboarding.guides import GUIDES, ecr_policy
from authmirror.pulllog import PullEvent
from authmirror.upstreams import PROVIDERS, make_upstream
from authmirror.upstreams.aws import PULL_ACTIONS, failure
from authmirror.upstreams.ecr import parse_ecr_host
from authmirror.hints import KINDS, config_hint, failure_kind, hint_for
from authmirror.upstreams.ratelimit import parse_rate_limit

ECR_URL = "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def registry(entry: dict, tmp_path: Path = Path("/nonexistent")):
    return parse_registry_entry("acme", 0, {"name": "r", **entry}, tmp_path)


def test_every_type_has_a_guide_and_the_cloud_types_have_their_own_hints():
    assert set(GUIDES) == set(PROVIDERS)
    for registry_type in ("ecr", "gcr", "gar", "ghcr", "dockerhub", "quay", "acr"):
        assert hint_for(registry_type, "credentials_refused") != hint_for("default", "credentials_refused"), registry_type
    mirror_only = ("realm_unreachable", "license_refused", "license_denied")
    assert all(hint_for("basic", kind) for kind in KINDS if kind not in mirror_only)


def test_ecr_region_and_registry_id_come_from_the_host():
    assert parse_ecr_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com") == ("123456789012", "eu-west-1")
    assert parse_ecr_host("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com") == ("123456789012", "us-east-1")
    assert parse_ecr_host("registry.example.com") is None
    upstream = make_upstream(registry({"type": "ecr", "url": ECR_URL}))
    assert upstream.registry_id == "123456789012" and upstream.aws_settings().region == "eu-west-1"
    assert upstream.aws_settings().access_key_id is None, "no keys: the default AWS chain"


@pytest.mark.parametrize(
    "entry, key, words",
    [
        ({"url": "https://registry.example.com"}, "region", "required unless the url is an ECR host"),
        ({"url": ECR_URL, "access_key_id": "AKIA0000"}, "secret_access_key", "go together"),
        ({"url": ECR_URL, "username": "AWS", "password": "x"}, "username", "mints its own credentials"),
        ({"url": ECR_URL, "role_arn": "my-role"}, "role_arn", "IAM role ARN"),
        ({"url": ECR_URL, "external_id": "x"}, "external_id", "only used with role_arn"),
        ({"url": ECR_URL, "registry_id": "12"}, "registry_id", "12-digit"),
        ({"url": ECR_URL, "endpoint_url": "localhost:4566"}, "endpoint_url", "http:// or https://"),
        ({"url": ECR_URL, "region": 5}, "region", "must be a string"),
    ],
)
def test_ecr_config_errors_name_the_key(entry, key, words):
    with pytest.raises(ConfigError, match=words) as raised:
        registry({"type": "ecr", **entry})
    assert raised.value.key == f"apps.acme.registries[0].{key}"


@pytest.mark.parametrize("registry_type", ["gcr", "gar"])
def test_google_types_take_a_service_account_not_a_password(registry_type):
    with pytest.raises(ConfigError, match="service_account_json") as raised:
        registry({"type": registry_type, "url": "https://gcr.io/p", "service_account_json": "{}", "password": "x"})
    assert raised.value.key.endswith(".password")
    with pytest.raises(ConfigError, match="required"):
        registry({"type": registry_type, "url": "https://gcr.io/p"})


@pytest.mark.parametrize(
    "registry_type, default_url",
    [("ghcr", "https://ghcr.io"), ("dockerhub", "https://registry-1.docker.io"), ("quay", "https://quay.io"), ("gcr", "https://gcr.io")],
)
def test_default_urls(registry_type, default_url, tmp_path):
    extra = {"service_account_json": "env:KEY"} if registry_type == "gcr" else {"username": "u", "password": "env:P"}
    config = {"licenses": {"file": "l.yaml"}, "apps": {"acme": {"registries": [{"name": "r", "type": registry_type, **extra}]}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    [loaded] = load_config(tmp_path / "c.yaml", resolve_secrets=False).registries()
    assert loaded.url == default_url


@pytest.mark.parametrize("registry_type", ["acr", "gar"])
def test_types_without_a_default_url_require_one(registry_type):
    extra = {"service_account_json": "{}"} if registry_type == "gar" else {"username": "u", "password": "p"}
    with pytest.raises(ConfigError, match="required for type") as raised:
        registry({"type": registry_type, **extra})
    assert raised.value.key.endswith(".url")


@pytest.mark.parametrize(
    "url, repository, upstream",
    [
        ("https://registry-1.docker.io", "nginx", "library/nginx"),
        ("https://registry-1.docker.io", "acme/app", "acme/app"),
        ("https://registry-1.docker.io/acme", "app", "acme/app"),
    ],
)
def test_docker_hub_official_images_live_under_library(url, repository, upstream):
    hub = make_upstream(registry({"type": "dockerhub", "url": url, "username": "u", "password": "p"}))
    assert hub.upstream_repository(repository) == upstream


@pytest.mark.parametrize(
    "headers, parsed",
    [
        ({"ratelimit-limit": "100;w=21600", "ratelimit-remaining": "76;w=21600"}, {"limit": 100, "remaining": 76, "window_s": 21600}),
        ({"RateLimit-Remaining": "0"}, {"remaining": 0}),
        ({"ratelimit-limit": "garbage"}, None),
        ({}, None),
    ],
)
def test_parse_rate_limit(headers, parsed):
    from email.message import Message

    message = Message()
    for k, v in headers.items():
        message[k] = v
    assert parse_rate_limit(message) == parsed


def test_pull_event_rate_limit_is_optional():
    assert "ratelimit" not in PullEvent().to_json()
    assert '"ratelimit":{"limit":100}' in PullEvent(ratelimit={"limit": 100}).to_json()


def client_error(code: str, status: int, message: str = "msg") -> botocore.exceptions.ClientError:
    """The exception boto3 raises for an AWS error answer (a real botocore class, built as boto3 does)."""
    response = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, "GetAuthorizationToken")


@pytest.mark.parametrize(
    "error, code, status, words",
    [
        (client_error("AccessDeniedException", 400, "User: arn:aws:iam::123456789012:user/x is not authorized"), "DENIED", 502, "ecr:BatchCheckLayerAvailability"),
        (client_error("403", 403, "<ErrorResponse><Errors><Error><Code>AccessDenied</Code></Error></Errors></ErrorResponse>"), "DENIED", 502, "IAM policy must allow"),
        (client_error("UnrecognizedClientException", 400), "UNAUTHORIZED", 502, "rejected the access key"),
        (client_error("ThrottlingException", 400), "UNAVAILABLE", 503, "throttling"),
        (client_error("ServerException", 500), "UNAVAILABLE", 503, "HTTP 500"),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="https://api.ecr.eu-west-1.amazonaws.com"), "UNAVAILABLE", 502, "could not reach the AWS API"),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="https://api.ecr.eu-west-1.amazonaws.com"), "UNAVAILABLE", 504, "did not answer in time"),
        (botocore.exceptions.NoCredentialsError(), "UNAUTHORIZED", 502, "no AWS credentials found"),
    ],
)
def test_aws_errors_become_messages_that_say_what_to_fix(error, code, status, words):
    mapped = failure(error, "ecr:GetAuthorizationToken")
    assert (mapped.code, mapped.status) == (code, status)
    assert words in mapped.message
    assert "arn:aws" not in mapped.message and "amazonaws.com" not in mapped.message
    if code == "DENIED":
        assert all(action in mapped.message for action in PULL_ACTIONS)


def test_assume_role_denial_points_at_the_trust_policy():
    assert "trust policy" in failure(client_error("AccessDenied", 403), "sts:AssumeRole").message


def test_ecr_policy_is_valid_json_with_every_pull_action():
    import json

    policy = json.loads(ecr_policy("eu-west-1", "123456789012"))
    actions = [a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert set(PULL_ACTIONS) <= set(actions)
    assert policy["Statement"][1]["Resource"] == "arn:aws:ecr:eu-west-1:123456789012:repository/*"


@pytest.mark.parametrize(
    "error, kind",
    [
        # What the registry said (kept in the error's diagnostics) decides.
        (translate_upstream_error(401, b"", registry="r", kind="manifest"), "credentials_refused"),
        (translate_upstream_error(403, b"", registry="r", kind="manifest"), "permission_denied"),
        (translate_upstream_error(429, b"", registry="r", kind="manifest", retry_after="9"), "rate_limited"),
        (translate_upstream_error(500, b"", registry="r", kind="manifest"), "upstream_error"),
        (translate_upstream_error(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', registry="r", kind="manifest"), "repository_not_found"),
        (UpstreamError("UNAVAILABLE", "could not reach it: connection refused", status=502,
                       diagnostics=UpstreamDiagnostics(network="connect", message="connection refused")), "connect"),
        (UpstreamError("UNAVAILABLE", "could not reach it: host name not found", status=502,
                       diagnostics=UpstreamDiagnostics(network="dns", message="host name not found")), "dns"),
        # No answer from the registry: the mirror's own refusals and the credential providers.
        (UpstreamError("UNAUTHORIZED", "Google refused the service account key", status=502), "credentials_unavailable"),
        (UpstreamError("DENIED", "AWS denied ecr:GetAuthorizationToken", status=502), "permission_denied"),
        (UpstreamError("UNAVAILABLE", "upstream registry 'r': could not reach it: timed out", status=504), "timeout"),
        (UpstreamError("UNAVAILABLE", "token realm is on host 'x', which is not allowed", status=502), "realm_not_allowed"),
        (UpstreamError("TOOMANYREQUESTS", "rate limiting", status=429), "rate_limited"),
        (RegistryError("NAME_UNKNOWN"), "repository_not_found"),
        (UpstreamError("UNAVAILABLE", "failed with HTTP 500", status=502), "upstream_error"),
        (ConfigError("apps.a.registries[0].password", "environment variable X is not set"), "config"),
    ],
)
def test_failure_kinds(error, kind):
    assert failure_kind(error) == kind


def test_hints_are_type_specific_where_it_matters():
    assert "ecr:GetAuthorizationToken" in hint_for("ecr", "permission_denied")
    assert "roles/artifactregistry.reader" in hint_for("gar", "permission_denied")
    assert "read:packages" in hint_for("ghcr", "credentials_refused")
    assert "<organization>+<robot>" in hint_for("quay", "credentials_refused")
    assert "AcrPull" in hint_for("acr", "permission_denied")
    assert "personal access token" in hint_for("dockerhub", "credentials_refused")
    assert hint_for("quay", "connect", host="h:1") == hint_for("default", "connect", host="h:1")


def test_config_hints():
    assert "export" in config_hint(ConfigError("apps.a.registries[0].password", "environment variable VENDOR_PASS is not set"))
    assert "relative to the config" in config_hint(ConfigError("apps.a.registries[0].password", "cannot read /x: No such file"))
    assert "JSON" in config_hint(ConfigError("apps.a.registries[0].service_account_json", "is not valid JSON"))
