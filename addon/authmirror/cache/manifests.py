"""Manifests and the upstream: tags are revalidated on every request, digests are asked about.

A manifest by tag is revalidated upstream each time with a HEAD (Docker Hub does not count HEADs
against its pull rate limit): when the upstream names a digest we hold, the mirror answers from
the cache. When the upstream is down, too slow or rate-limited, the last manifest it named for
that tag may stand in for `stale_if_error` (marked stale in the pull event).

A cached blob or manifest that this repository has no link to yet is only served after the
upstream confirms, with a HEAD and the vendor's credentials, that this repository has it: the
same answer a forwarded GET would get, without fetching the bytes again.
"""

from __future__ import annotations

from dataclasses import dataclass

from mitmproxy import http

from .. import httpclient
from ..errors import RegistryError
from ..upstreams import Upstream
from .store import is_sha256

# Statuses that mean "the upstream cannot answer now", not "the answer is no".
UNAVAILABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# What the mirror accepts when it asks about a manifest by digest itself.
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.oci.artifact.manifest.v1+json",
))


@dataclass(frozen=True)
class Revalidation:
    digest: str | None = None  # what the upstream names for the tag now
    media_type: str = ""
    unavailable: bool = False  # the upstream failed: a stale answer may stand in


def accept_header(request: http.Request) -> str | None:
    values = request.headers.get_all("Accept")
    return ", ".join(values) if values else None


def accepts(accept: str | None, media_type: str) -> bool:
    """Would this client take a manifest of `media_type`? (No Accept at all: don't guess.)"""
    if not accept or not media_type:
        return False
    types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return "*/*" in types or media_type.lower() in types


def media_type_of(headers: http.Headers) -> str:
    return headers.get("Content-Type", "").split(";", 1)[0].strip()


async def head(upstream: Upstream, repository: str, kind: str, reference: str, accept: str | None) -> httpclient.HttpResponse:
    """HEAD /v2/<upstream repository>/<kind>/<reference> with the vendor's credentials; raises
    RegistryError when there is no answer (unreachable, timeout, credentials unobtainable)."""
    path = f"/v2/{upstream.upstream_repository(repository)}/{kind}/{reference}"
    return await upstream.get(repository, path, {"Accept": accept} if accept else {}, kind=kind[:-1], method="HEAD")


async def revalidate(upstream: Upstream, repository: str, tag: str, accept: str | None) -> Revalidation:
    try:
        response = await head(upstream, repository, "manifests", tag, accept)
    except RegistryError as e:
        return Revalidation(unavailable=e.status in UNAVAILABLE_STATUSES and e.code in ("UNAVAILABLE", "TOOMANYREQUESTS"))
    if response.status in UNAVAILABLE_STATUSES:
        return Revalidation(unavailable=True)
    digest = response.header("Docker-Content-Digest") or ""
    if response.status == 200 and is_sha256(digest):
        return Revalidation(digest, (response.header("Content-Type") or "").split(";", 1)[0].strip())
    return Revalidation()


async def upstream_has(upstream: Upstream, repository: str, kind: str, digest: str) -> bool:
    """Does the upstream confirm that this repository has `digest`? (Storage redirects count: the
    registry only redirects for blobs the repository has.)"""
    try:
        response = await head(upstream, repository, kind, digest, MANIFEST_TYPES if kind == "manifests" else None)
    except RegistryError:
        return False
    if response.status == 200:
        return (response.header("Docker-Content-Digest") or digest) == digest
    return kind == "blobs" and response.status in (302, 303, 307, 308)
