"""`ecr`: Amazon Elastic Container Registry, with credentials minted by `ecr:GetAuthorizationToken`.

Quirks:
- The registry takes Basic auth with user `AWS` and a token from GetAuthorizationToken (base64
  `AWS:<password>` in `authorizationToken`); its `/v2/` answers `Basic realm=...`, not Bearer.
- Tokens last 12 hours (less with temporary credentials): cached and refreshed well ahead of
  `expiresAt`. A missing or past `expiresAt` (moto answers 2015-01-01) means "refresh next time",
  never a fetch loop (the token cache's 60 s floor).
- boto3 is blocking: every AWS call runs in a worker thread.
- The registry id is the account number in the host (`<account>.dkr.ecr.<region>.amazonaws.com`);
  region too. Both can be set explicitly (`registry_id`, `region`) for other hosts.
- Blob GETs answer 307 to presigned S3 URLs (`prod-<region>-starport-layer-bucket`): followed or
  passed by the redirect handling like any storage redirect.
- `tags/list` additionally needs `ecr:ListImages`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from typing import ClassVar

from ..config import RegistryConfig
from ..errors import ConfigError, UpstreamDiagnostics
from . import aws
from .minted import MintedUpstream

log = logging.getLogger("authmirror.upstream.ecr")

ECR_HOST_RE = re.compile(r"^(\d{12})\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")


def parse_ecr_host(host: str) -> tuple[str, str] | None:
    """(registry id, region) from an ECR registry host, or None for any other host."""
    match = ECR_HOST_RE.match(host.lower())
    return (match.group(1), match.group(2)) if match else None


class EcrUpstream(MintedUpstream):
    TYPE = "ecr"
    LABEL = "AWS ECR"
    SETTINGS: ClassVar[dict[str, tuple[str, bool]]] = {
        "region": ("str", False),
        "access_key_id": ("secret", False),
        "secret_access_key": ("secret", False),
        "role_arn": ("str", False),
        "external_id": ("str", False),
        "registry_id": ("str", False),
        "endpoint_url": ("str", False),
        "sts_endpoint_url": ("str", False),
    }

    @classmethod
    def validate(cls, registry: RegistryConfig) -> None:
        key, settings = registry.key, registry.settings
        for field_name in ("username", "password"):
            if getattr(registry, field_name) is not None:
                raise ConfigError(f"{key}.{field_name}", "ecr mints its own credentials: use access_key_id/secret_access_key, role_arn or the default AWS chain")
        from_host = parse_ecr_host(registry.host)
        if "region" not in settings and from_host is None:
            raise ConfigError(f"{key}.region", "required unless the url is an ECR host (<account>.dkr.ecr.<region>.amazonaws.com)")
        if ("access_key_id" in settings) != ("secret_access_key" in settings):
            missing = "secret_access_key" if "access_key_id" in settings else "access_key_id"
            raise ConfigError(f"{key}.{missing}", "access_key_id and secret_access_key go together (or leave both out for the default AWS chain)")
        if "role_arn" in settings and not ROLE_ARN_RE.match(settings["role_arn"]):
            raise ConfigError(f"{key}.role_arn", "must be an IAM role ARN: arn:aws:iam::<account>:role/<name>")
        if "external_id" in settings and "role_arn" not in settings:
            raise ConfigError(f"{key}.external_id", "only used with role_arn")
        if "registry_id" in settings and not re.fullmatch(r"\d{12}", settings["registry_id"]):
            raise ConfigError(f"{key}.registry_id", "must be the 12-digit AWS account number of the registry")
        for url_key in ("endpoint_url", "sts_endpoint_url"):
            value = settings.get(url_key)
            if value is not None and not re.match(r"^https?://[^/\s]+", value):
                raise ConfigError(f"{key}.{url_key}", "must be an http:// or https:// URL")

    @property
    def registry_id(self) -> str | None:
        from_host = parse_ecr_host(self.registry.host)
        return self.registry.settings.get("registry_id") or (from_host[0] if from_host else None)

    def aws_settings(self) -> aws.AwsSettings:
        settings = self.registry.settings
        from_host = parse_ecr_host(self.registry.host)
        secret = lambda name: settings[name].value if name in settings else None  # noqa: E731
        return aws.AwsSettings(
            region=settings.get("region") or (from_host[1] if from_host else ""),
            access_key_id=secret("access_key_id"),
            secret_access_key=secret("secret_access_key"),
            role_arn=settings.get("role_arn"),
            external_id=settings.get("external_id"),
            endpoint_url=settings.get("endpoint_url"),
            sts_endpoint_url=settings.get("sts_endpoint_url"),
            timeout=min(self.timeout, 10.0),
        )

    async def mint(self) -> tuple[str, str, float | None]:
        try:
            username, password, expires_at = await asyncio.to_thread(self._authorization_token)
        except aws.AwsFailure as e:
            said = UpstreamDiagnostics(network=e.network, message=e.message) if e.network else None
            raise self.error(e.code, e.message, status=e.status, diagnostics=said) from None
        lifetime = expires_at - self.clock() if expires_at is not None else None
        if lifetime is None or lifetime <= 0:
            # NOTE: moto answers expiresAt 2015-01-01; real ECR says 12 h. Use the cache's floor, refetch then.
            log.info("registry '%s': ECR token has no future expiresAt; refreshing it on next use after a minute", self.name)
            lifetime = None
        return username, password, lifetime

    def _authorization_token(self) -> tuple[str, str, float | None]:
        """Blocking: one GetAuthorizationToken call (plus AssumeRole with role_arn)."""
        settings = self.aws_settings()
        try:
            client = aws.ecr_client(settings)
            request = {"registryIds": [self.registry_id]} if self.registry_id else {}
            answer = client.get_authorization_token(**request)
        except Exception as e:
            raise aws.failure(e, "ecr:GetAuthorizationToken") from None
        data = (answer.get("authorizationData") or [{}])[0]
        try:
            decoded = base64.b64decode(data["authorizationToken"]).decode()
        except (KeyError, ValueError, TypeError):
            raise aws.AwsFailure("UNAVAILABLE", 502, "ecr:GetAuthorizationToken answered without a usable token") from None
        username, sep, password = decoded.partition(":")
        if not sep or not password:
            raise aws.AwsFailure("UNAVAILABLE", 502, "ecr:GetAuthorizationToken answered a token that is not user:password")
        expires = data.get("expiresAt")
        return username, password, expires.timestamp() if expires is not None else None
