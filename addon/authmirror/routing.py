"""Request path and Host to a Route: which app, registry, repository and action. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from .errors import RegistryError

# NOTE: grammar from the distribution spec, https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
NAME_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{NAME_COMPONENT}(?:/{NAME_COMPONENT})*$")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
DIGEST_LIKE_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:")
MAX_NAME_LENGTH = 255

_ENDPOINT_RE = re.compile(
    r"^/v2/(?P<name>.+?)/(?:"
    r"(?P<manifests>manifests)/(?P<mref>[^/]+)"
    r"|(?P<uploads>blobs/uploads)(?:/.*)?"
    r"|(?P<blobs>blobs)/(?P<bref>[^/]+)"
    r"|(?P<tags>tags/list)"
    r"|(?P<referrers>referrers)/(?P<rref>[^/]+)"
    r")$"
)

LOCAL_PATHS = {
    "/healthz": "health",
    "/readyz": "ready",
    "/metrics": "metrics",
    "/v2": "base",
    "/v2/": "base",
    "/v2/token": "token",
    "/v2/_catalog": "catalog",
}


@dataclass(frozen=True)
class Route:
    """What a request asks for. For image endpoints, app/registry/repository are set."""

    kind: str  # health ready metrics base token catalog manifest blob tags referrers upload
    name: str = ""  # repository name as the client sees it (used in token scopes)
    app: str = ""
    registry: str = ""  # registry reference from the path: a configured name or a port-less host
    repository: str = ""  # repository inside that registry
    reference: str = ""  # tag or digest
    domain: str = ""  # custom domain the request came in on, if any

    @property
    def is_image(self) -> bool:
        return bool(self.repository)

    @property
    def is_digest(self) -> bool:
        return bool(DIGEST_RE.match(self.reference))


def split_path(path: str) -> tuple[str, str]:
    """Split a request target into path and query."""
    path, _, query = path.partition("?")
    return path, query


def request_domain(host_header: str, domains: Mapping[str, str]) -> str:
    """The configured custom domain a Host header names ("" when none)."""
    host = (host_header or "").strip().lower()
    if host.startswith("["):
        host = host.split("]")[0] + "]"
    else:
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host if host in domains else ""


def parse_route(path: str, host_header: str, domains: Mapping[str, str]) -> Route:
    """Parse a request path (without query) into a Route, validating names and references.

    Raises RegistryError with the spec's 400/404 codes for malformed or unknown paths, before
    anything could be forwarded.
    """
    kind = LOCAL_PATHS.get(path)
    if kind:
        return Route(kind)
    if not path.startswith("/v2/"):
        raise RegistryError("NAME_UNKNOWN", "not a registry API path; images are pulled through /v2/", status=404)
    match = _ENDPOINT_RE.match(path)
    if not match:
        raise RegistryError("UNSUPPORTED", "unknown registry API endpoint", status=404)
    name = match["name"]
    validate_name(name)
    domain = request_domain(host_header, domains)
    app, registry, repository = split_name(name, domains.get(domain, ""))

    if match["uploads"]:
        return Route("upload", name, app, registry, repository, "", domain)
    if match["manifests"]:
        reference = match["mref"]
        validate_manifest_reference(reference)
        return Route("manifest", name, app, registry, repository, reference, domain)
    if match["blobs"]:
        reference = match["bref"]
        validate_digest(reference)
        return Route("blob", name, app, registry, repository, reference, domain)
    if match["referrers"]:
        reference = match["rref"]
        validate_digest(reference)
        return Route("referrers", name, app, registry, repository, reference, domain)
    return Route("tags", name, app, registry, repository, "", domain)


def split_name(name: str, domain_app: str) -> tuple[str, str, str]:
    """`proxy/<app>/<registry>/<repo>`, or on a custom domain `<registry>/<repo>`."""
    parts = name.split("/")
    if parts[0] == "proxy" and len(parts) >= 4 and (not domain_app or parts[1] == domain_app):
        return parts[1], parts[2], "/".join(parts[3:])
    if domain_app and len(parts) >= 2:
        return domain_app, parts[0], "/".join(parts[1:])
    raise RegistryError(
        "NAME_UNKNOWN",
        "image paths have the form proxy/<app>/<registry>/<repository>",
        status=404,
        detail={"name": name},
    )


def validate_name(name: str) -> None:
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.match(name):
        raise RegistryError(
            "NAME_INVALID",
            "invalid repository name: lowercase letters, digits, separators . _ __ - and / only",
            detail={"name": name[:MAX_NAME_LENGTH]},
        )


def validate_digest(reference: str) -> None:
    if not DIGEST_RE.match(reference):
        raise RegistryError(
            "DIGEST_INVALID",
            "invalid digest: expected sha256:<64 hex> or sha512:<128 hex>",
            detail={"digest": reference[:200]},
        )


def validate_manifest_reference(reference: str) -> None:
    if DIGEST_LIKE_RE.match(reference):
        validate_digest(reference)
    elif not TAG_RE.match(reference):
        raise RegistryError(
            "TAG_INVALID",
            "invalid tag: up to 128 of letters, digits, _ . - (not starting with . or -)",
            detail={"tag": reference[:200]},
        )
