"""The OCI error table and the exceptions authmirror raises.

Exception tree:

    AuthMirrorError
    ├── ConfigError          bad configuration; carries the key path ("apps.acme.registries[0].url")
    └── RegistryError        an answer for the client, rendered once as OCI error JSON
        └── UpstreamError    the upstream registry (or its credential provider) failed us

NOTE: codes and their meaning come from the distribution spec,
https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
(plus Distribution's UNAVAILABLE/UNKNOWN for server-side failures).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

# code -> (default HTTP status, default message). Each code is defined here and only here.
OCI_CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (404, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "TAG_INVALID": (400, "manifest tag did not match URI"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
    "UNAVAILABLE": (503, "service unavailable"),
    "UNKNOWN": (500, "unknown error"),
}


class AuthMirrorError(Exception):
    """Base of every error authmirror raises on purpose."""


class ConfigError(AuthMirrorError):
    """Invalid configuration. `key` names the offending key path so users can find it."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


@dataclass(frozen=True)
class UpstreamDiagnostics:
    """What the upstream itself said (its status, OCI code and own words, secrets redacted), or why
    it said nothing (`network`). For the vendor's tools (`registry test`, `config check`) and logs;
    never rendered to clients: it may name upstream hosts."""

    status: int | None = None
    code: str = ""
    message: str = ""
    retry_after: str | None = None
    network: str = ""  # no answer: dns | connect | tls | timeout | protocol (httpclient.HttpFailure.kind)

    @classmethod
    def from_answer(cls, status: int, body: bytes, retry_after: str | None = None, secrets: tuple[str, ...] = ()) -> "UpstreamDiagnostics":
        """An error answer's status, its first OCI error (or the start of a non-OCI body)."""
        errors = parse_error_body(body)
        if errors:
            code, said = str(errors[0].get("code", "")).upper(), str(errors[0].get("message", ""))
        else:
            code, said = "", body[:200].decode("utf-8", "replace")
        return cls(status, code, redact_secrets(said, secrets), retry_after)

    def describe(self) -> str:
        """`HTTP 401 UNAUTHORIZED: its message`, or the network failure."""
        if self.status is None:
            return self.message
        return f"HTTP {self.status}{' ' + self.code if self.code else ''}{': ' + self.message if self.message else ''}"


@dataclass
class RegistryError(AuthMirrorError):
    """An error answer for the client: an OCI code, an HTTP status and a human message."""

    code: str
    message: str = ""
    status: int = 0
    detail: Any = None
    headers: Mapping[str, str] | None = None
    # NOTE: never rendered (render_errors leaves it out): the message above is what clients see.
    diagnostics: UpstreamDiagnostics | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        default_status, default_message = OCI_CODES[self.code]
        self.status = self.status or default_status
        self.message = self.message or default_message
        super().__init__(self.message)

    def body(self, request_id: str | None = None) -> bytes:
        return render_errors([self], request_id)


class UpstreamError(RegistryError):
    """The vendor's upstream (or a cloud credential API) failed; status is 502/503/504 or 429."""


def render_errors(errors: list[RegistryError], request_id: str | None = None) -> bytes:
    """Render errors as the spec's `{"errors": [...]}` JSON."""
    rendered = []
    for error in errors:
        entry: dict[str, Any] = {"code": error.code, "message": error.message}
        detail = error.detail
        if request_id:
            detail = dict(detail or {}) if isinstance(detail, dict) or detail is None else {"detail": detail}
            detail["request_id"] = request_id
        if detail is not None:
            entry["detail"] = detail
        rendered.append(entry)
    return json.dumps({"errors": rendered}, separators=(",", ":")).encode()


def parse_error_body(body: bytes) -> list[dict[str, Any]]:
    """Extract `errors` from an upstream error body; [] when it is not OCI error JSON."""
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return []
    if not isinstance(parsed, dict) or not isinstance(parsed.get("errors"), list):
        return []
    return [e for e in parsed["errors"] if isinstance(e, dict) and isinstance(e.get("code"), str)]


_URL_RE = re.compile(r"\b(?:https?://)?[A-Za-z0-9.-]+\.[A-Za-z]{2,}(?::\d+)?(?:/[^\s\"']*)?")


def _without_secrets(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def redact_secrets(text: str, secrets: tuple[str, ...] = ()) -> str:
    """An upstream's message safe for the vendor's eyes and logs: no secrets, one line, bounded length."""
    return " ".join(_without_secrets(text, secrets).split())[:300]


def sanitize_upstream_text(text: str, secrets: tuple[str, ...] = (), hosts: tuple[str, ...] = ()) -> str:
    """Make an upstream's message safe to show a customer: no hosts, URLs or secrets, bounded length."""
    text = _without_secrets(text, secrets)
    for host in hosts:
        if host:
            text = text.replace(host, "[upstream]")
    text = _URL_RE.sub(lambda m: "[upstream]" if ("/" in m.group(0) or ":" in m.group(0)) else m.group(0), text)
    text = " ".join(text.split())
    return text[:300]


def translate_upstream_error(
    status: int,
    body: bytes,
    *,
    registry: str,
    kind: str,
    retry_after: str | None = None,
    hosts: tuple[str, ...] = (),
    secrets: tuple[str, ...] = (),
) -> RegistryError:
    """Turn an upstream error answer into the error the client should see.

    `kind` is the request's action (manifest, blob, tags, referrers). The upstream's own
    OCI code is kept when it is meaningful to a client (404s, 400s); auth failures become
    a 502 that says plainly the *vendor's* credentials were refused. What the upstream said,
    unsanitized but for secrets, stays in `diagnostics` for the vendor's tools.
    """
    error = _client_error(status, body, registry, kind, retry_after, hosts, secrets)
    error.diagnostics = UpstreamDiagnostics.from_answer(status, body, retry_after, secrets)
    return error


def _client_error(
    status: int, body: bytes, registry: str, kind: str, retry_after: str | None, hosts: tuple[str, ...], secrets: tuple[str, ...]
) -> RegistryError:
    upstream_errors = parse_error_body(body)
    first = upstream_errors[0] if upstream_errors else {}
    upstream_code = str(first.get("code", "")).upper()
    upstream_message = sanitize_upstream_text(str(first.get("message", "")), secrets, hosts)
    detail = {"registry": registry, "upstream_status": status}
    if upstream_code:
        detail["upstream_code"] = upstream_code
    said = f": {upstream_message}" if upstream_message else ""

    if status == 401:
        return UpstreamError(
            "UNAUTHORIZED",
            f"the vendor's registry credentials were refused by upstream registry '{registry}'{said} "
            "(this is a mirror configuration problem for the vendor, not a problem with your license)",
            status=502,
            detail=detail,
        )
    if status == 403:
        return UpstreamError(
            "DENIED",
            f"upstream registry '{registry}' denied the vendor's credentials access to this image{said} "
            "(the vendor's registry credentials lack pull permission)",
            status=502,
            detail=detail,
        )
    if status == 404:
        default = {"blob": "BLOB_UNKNOWN", "manifest": "MANIFEST_UNKNOWN"}.get(kind, "NAME_UNKNOWN")
        code = upstream_code if upstream_code in ("BLOB_UNKNOWN", "MANIFEST_UNKNOWN", "NAME_UNKNOWN") else default
        return RegistryError(code, f"{OCI_CODES[code][1]}{said}", status=404, detail=detail)
    if status == 429:
        wait = f", retry after {retry_after} s" if retry_after and retry_after.isdigit() else ""
        headers = {"Retry-After": retry_after} if retry_after else None
        return UpstreamError(
            "TOOMANYREQUESTS",
            f"upstream registry '{registry}' is rate limiting the mirror{wait}{said}",
            status=429,
            detail=detail,
            headers=headers,
        )
    if 400 <= status < 500:
        # Status decides the client's status (it is sent before the body is read); the body picks the code.
        if upstream_code in OCI_CODES and OCI_CODES[upstream_code][0] < 500:
            return RegistryError(upstream_code, upstream_message or OCI_CODES[upstream_code][1], status=status, detail=detail)
        return RegistryError("UNKNOWN", f"upstream registry '{registry}' answered {status}{said}", status=status, detail=detail)
    headers = {"Retry-After": retry_after} if retry_after and status == 503 else None
    return UpstreamError(
        "UNAVAILABLE",
        f"upstream registry '{registry}' failed with HTTP {status}{said}",
        status=503 if status == 503 else 502,
        detail=detail,
        headers=headers,
    )
