"""Google plumbing for the `gcr` and `gar` types: a service-account key, and access tokens minted
from it with google-auth (or, with `json_key: true`, the key itself sent as `_json_key`).

Quirks (both types):
- Registries answer `Bearer realm=".../v2/token"` on their own host; the realm takes Basic auth as
  `oauth2accesstoken:<access token>` or `_json_key:<the key file's JSON>`.
- Access tokens last an hour (`expires_in` 3599): cached and refreshed ahead of expiry.
- The token exchange goes to the key's own `token_uri` (normally https://oauth2.googleapis.com/token)
  with an RS256-signed JWT assertion; it is the only other host the mirror contacts for these types.
- google-auth's refresh is blocking: it runs in a worker thread, over the mirror's own HTTP client
  (no redirects, no proxy variables).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import ClassVar

import google.auth.exceptions
import google.auth.transport
from google.oauth2 import service_account

from .. import httpclient
from ..config import RegistryConfig
from ..errors import ConfigError, UpstreamDiagnostics, sanitize_upstream_text
from .minted import MintedUpstream

log = logging.getLogger("authmirror.upstream.google")

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
ACCESS_TOKEN_USER = "oauth2accesstoken"
JSON_KEY_USER = "_json_key"
REQUIRED_FIELDS = ("client_email", "private_key", "token_uri")


class _Response(google.auth.transport.Response):
    def __init__(self, answer: httpclient.HttpResponse):
        self._answer = answer

    @property
    def status(self) -> int:
        return self._answer.status

    @property
    def headers(self):
        return dict(self._answer.headers.items())

    @property
    def data(self) -> bytes:
        return self._answer.body


class HttpTransport(google.auth.transport.Request):
    """google-auth's transport interface over the mirror's HTTP client (blocking; call from a thread)."""

    def __init__(self, timeout: float):
        self.timeout = timeout

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        if isinstance(body, str):
            body = body.encode()
        try:
            answer = httpclient.request_sync(method, url, headers or {}, body, timeout=timeout or self.timeout)
        except httpclient.HttpFailure as e:
            error = google.auth.exceptions.TransportError(str(e))
            error.kind = e.kind  # type: ignore[attr-defined]
            raise error from None
        return _Response(answer)


def parse_service_account(text: str, key: str) -> dict:
    """The key file's JSON, checked well enough to fail at load time with a useful message."""
    try:
        info = json.loads(text)
    except ValueError as e:
        raise ConfigError(key, f"is not valid JSON ({e}); download the key again: IAM > Service accounts > Keys > Add key > JSON") from None
    if not isinstance(info, dict):
        raise ConfigError(key, "is not a service account key file (expected a JSON object)")
    if info.get("type") != "service_account":
        raise ConfigError(key, f"is a {info.get('type')!r} credential, not a service account key (\"type\": \"service_account\")")
    missing = [f for f in REQUIRED_FIELDS if not info.get(f)]
    if missing:
        raise ConfigError(key, f"service account key lacks {', '.join(missing)}")
    try:
        service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
    except (ValueError, TypeError) as e:
        raise ConfigError(key, f"service account key is unusable: {type(e).__name__}: the private_key could not be read") from None
    return info


class GoogleUpstream(MintedUpstream):
    LABEL = "Google registry"
    SETTINGS: ClassVar[dict[str, tuple[str, bool]]] = {
        "service_account_json": ("secret", True),
        "json_key": ("bool", False),
    }

    @classmethod
    def validate(cls, registry: RegistryConfig) -> None:
        for field_name in ("username", "password"):
            if getattr(registry, field_name) is not None:
                raise ConfigError(
                    f"{registry.key}.{field_name}",
                    f"{registry.type} authenticates with service_account_json (set json_key: true to send it as _json_key)",
                )
        text = registry.settings["service_account_json"].value
        if text:  # empty when the config was read without resolving secrets
            parse_service_account(text, f"{registry.key}.service_account_json")

    def __init__(self, registry: RegistryConfig, **kwargs):
        super().__init__(registry, **kwargs)
        self.key_json = registry.settings["service_account_json"].value
        self._google_credentials = None

    @property
    def mints(self) -> bool:
        return not self.registry.settings.get("json_key", False)

    @property
    def client_email(self) -> str:
        try:
            return str(json.loads(self.key_json).get("client_email", ""))
        except ValueError:
            return ""

    async def credentials(self) -> tuple[str, str] | None:
        if not self.mints:
            return JSON_KEY_USER, self.key_json
        return await super().credentials()

    async def mint(self) -> tuple[str, str, float | None]:
        token, expiry = await asyncio.to_thread(self._refresh)
        lifetime = None
        if expiry is not None:
            lifetime = expiry.replace(tzinfo=dt.timezone.utc).timestamp() - self.clock()
        return ACCESS_TOKEN_USER, token, lifetime if lifetime and lifetime > 0 else None

    def _refresh(self) -> tuple[str, dt.datetime | None]:
        """Blocking: exchange a signed JWT assertion for an access token at the key's token_uri."""
        if self._google_credentials is None:
            info = json.loads(self.key_json)
            self._google_credentials = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
        credentials = self._google_credentials
        try:
            credentials.refresh(HttpTransport(min(self.timeout, 15.0)))
        except google.auth.exceptions.TransportError as e:
            network = getattr(e, "kind", "") or "connect"
            raise self.error(
                "UNAVAILABLE",
                f"could not reach Google's token endpoint: {'timed out' if network == 'timeout' else 'connection failed'}",
                status=504 if network == "timeout" else 502,
                diagnostics=UpstreamDiagnostics(network=network, message=f"Google's token endpoint: {e}"),
            ) from None
        except google.auth.exceptions.RefreshError as e:
            raise self._refresh_error(e) from None
        if not credentials.token:
            raise self.error("UNAVAILABLE", "Google's token endpoint answered without an access token")
        return credentials.token, credentials.expiry

    def _refresh_error(self, error: google.auth.exceptions.RefreshError):
        said = str(error.args[0]) if error.args else str(error)
        log.warning("registry '%s': Google token refresh for %s failed: %s", self.name, self.client_email, said)
        said = sanitize_upstream_text(said, self.secret_values())
        if getattr(error, "retryable", False) or "500" in said or "503" in said:
            return self.error("UNAVAILABLE", f"Google's token endpoint failed ({said}); try again shortly", status=503)
        return self.error(
            "UNAUTHORIZED",
            f"Google refused the service account key ({said}): the key may be deleted or disabled, or the "
            "service account removed; create a new JSON key",
        )
