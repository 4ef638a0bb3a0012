"""AWS plumbing for the `ecr` type: boto3 sessions (static keys, default chain, assumed role) and
AWS errors turned into messages that say what to fix.

Everything here is blocking boto3 code: call it from a worker thread (asyncio.to_thread).
boto3 is imported on first use: it adds ~0.1 s to the start of every mirror, ECR or not.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import boto3
    import botocore.config
    import botocore.exceptions

log = logging.getLogger("authmirror.upstream.aws")

# What the vendor's IAM policy must allow for pulls through the mirror (ECR docs, "Amazon ECR
# managed policies" / AmazonEC2ContainerRegistryPullOnly).
PULL_ACTIONS = (
    "ecr:GetAuthorizationToken",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
)
DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
BAD_KEY_CODES = {
    "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "InvalidSignatureException",
    "IncompleteSignature", "AuthFailure", "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId",
}
THROTTLED_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
_EMBEDDED_CODE = re.compile(r"<Code>([A-Za-z.]+)</Code>")


@dataclass(frozen=True)
class AwsSettings:
    region: str
    access_key_id: str | None = None
    secret_access_key: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    endpoint_url: str | None = None  # the ECR API endpoint (VPC endpoint, or a test server)
    sts_endpoint_url: str | None = None
    timeout: float = 10.0


@dataclass
class AwsFailure(Exception):
    """An AWS call failed. `code` is the mirror's OCI code, `status` the HTTP status for clients."""

    code: str
    status: int
    message: str
    aws_code: str = ""
    network: str = ""  # the AWS API never answered: connect | timeout

    def __str__(self) -> str:
        return self.message


def client_config(settings: AwsSettings) -> "botocore.config.Config":
    import botocore.config

    # Few, short retries: a client is waiting; the next request tries again anyway.
    return botocore.config.Config(
        connect_timeout=min(settings.timeout, 5.0),
        read_timeout=settings.timeout,
        retries={"max_attempts": 2, "mode": "standard"},
    )


def session(settings: AwsSettings) -> "boto3.session.Session":
    """Static keys when configured, else the default chain (env, profile, IRSA web identity, instance role);
    with `role_arn`, the role is assumed with those credentials."""
    import boto3

    keys: dict[str, Any] = {}
    if settings.access_key_id:
        keys = {"aws_access_key_id": settings.access_key_id, "aws_secret_access_key": settings.secret_access_key}
    base = boto3.session.Session(region_name=settings.region, **keys)
    if not settings.role_arn:
        return base
    sts = base.client("sts", endpoint_url=settings.sts_endpoint_url, config=client_config(settings))
    request: dict[str, Any] = {"RoleArn": settings.role_arn, "RoleSessionName": "authmirror", "DurationSeconds": 3600}
    if settings.external_id:
        request["ExternalId"] = settings.external_id
    try:
        assumed = sts.assume_role(**request)["Credentials"]
    except Exception as e:
        raise failure(e, "sts:AssumeRole") from None
    return boto3.session.Session(
        region_name=settings.region,
        aws_access_key_id=assumed["AccessKeyId"],
        aws_secret_access_key=assumed["SecretAccessKey"],
        aws_session_token=assumed["SessionToken"],
    )


def ecr_client(settings: AwsSettings):
    return session(settings).client("ecr", endpoint_url=settings.endpoint_url, config=client_config(settings))


def error_code(error: "botocore.exceptions.ClientError") -> str:
    """The AWS error code; some servers (moto with IAM checks) put it inside the message as XML."""
    err = error.response.get("Error", {})
    code = str(err.get("Code", ""))
    if not code or code.isdigit():
        match = _EMBEDDED_CODE.search(str(err.get("Message", "")))
        if match:
            return match.group(1)
    return code


def failure(error: Exception, action: str) -> AwsFailure:
    """Turn anything boto3 raised during `action` into a message naming what to fix.

    AWS's own message is logged for the vendor, not returned: it names the vendor's account and
    principal, and the returned message reaches customers' clients.
    """
    import botocore.exceptions as exc

    if isinstance(error, AwsFailure):
        return error
    if isinstance(error, (exc.ConnectTimeoutError, exc.ReadTimeoutError)):
        return AwsFailure("UNAVAILABLE", 504, f"the AWS API did not answer in time ({action})", network="timeout")
    if isinstance(error, (exc.EndpointConnectionError, exc.ConnectionClosedError, exc.HTTPClientError)):
        return AwsFailure("UNAVAILABLE", 502, f"could not reach the AWS API ({action}): connection failed", network="connect")
    if isinstance(error, (exc.NoCredentialsError, exc.PartialCredentialsError, exc.CredentialRetrievalError)):
        return AwsFailure(
            "UNAUTHORIZED", 502,
            "no AWS credentials found: set access_key_id and secret_access_key, or give the mirror "
            "an AWS identity (environment, profile, IRSA or instance role)",
        )
    if isinstance(error, exc.NoRegionError):
        return AwsFailure("UNAVAILABLE", 502, "no AWS region: set region")
    if not isinstance(error, exc.ClientError):
        log.warning("AWS %s failed: %s: %s", action, type(error).__name__, error)
        return AwsFailure("UNAVAILABLE", 502, f"the AWS API call {action} failed ({type(error).__name__})")

    code = error_code(error)
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    log.warning("AWS %s failed: %s: %s", action, code, error.response.get("Error", {}).get("Message", ""))
    if code in DENIED_CODES:
        if action == "sts:AssumeRole":
            return AwsFailure(
                "DENIED", 502,
                "AWS refused to let these credentials assume role_arn: the role's trust policy must allow "
                "sts:AssumeRole for them (with the configured external_id, if any)",
                code,
            )
        return AwsFailure(
            "DENIED", 502,
            f"AWS denied {action} to the vendor's credentials: their IAM policy must allow "
            f"{', '.join(PULL_ACTIONS)}",
            code,
        )
    if code in BAD_KEY_CODES:
        return AwsFailure(
            "UNAUTHORIZED", 502,
            f"AWS rejected the access key ({code}): check access_key_id and secret_access_key "
            "(a deleted or deactivated key, or a typo)",
            code,
        )
    if code in THROTTLED_CODES:
        return AwsFailure("UNAVAILABLE", 503, f"AWS is throttling {action}; try again shortly", code)
    if code in ("InvalidParameterException", "ValidationError", "InvalidParameterValue"):
        return AwsFailure("UNAVAILABLE", 502, f"AWS refused the {action} request as invalid ({code}): check registry_id and region", code)
    if status >= 500:
        return AwsFailure("UNAVAILABLE", 503, f"the AWS API failed ({action}, HTTP {status})", code)
    return AwsFailure("UNAVAILABLE", 502, f"AWS answered {action} with {code or 'an error'}", code)
