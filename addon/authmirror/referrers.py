"""The referrers API, with the spec's fallback for registries that lack it.

NOTE: https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers
When the upstream has no referrers endpoint (404/405, e.g. Distribution 2.8), the answer comes
from the fallback tag `<alg>-<hex>`, or is an empty image index, so clients always get one.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from .errors import parse_error_body
from .upstreams import Upstream

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


def empty_index() -> dict:
    return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}


def filter_artifact_type(index: dict, artifact_type: str | None) -> dict:
    if not artifact_type:
        return index
    manifests = [m for m in index.get("manifests") or [] if isinstance(m, dict) and m.get("artifactType") == artifact_type]
    return {**index, "manifests": manifests}


async def referrers(upstream: Upstream, repository: str, digest: str, query: str) -> tuple[bytes, dict[str, str]]:
    """The referrers index body and the headers that go with it."""
    artifact_type = (parse_qs(query).get("artifactType") or [None])[0]
    upstream_repository = upstream.upstream_repository(repository)
    suffix = f"?{query}" if query else ""
    accept = {"Accept": INDEX_MEDIA_TYPE}
    response = await upstream.get(repository, f"/v2/{upstream_repository}/referrers/{digest}{suffix}", accept, kind="referrers")
    if response.status == 200:
        headers = {"Content-Type": response.header("Content-Type") or INDEX_MEDIA_TYPE}
        if response.header("OCI-Filters-Applied"):
            headers["OCI-Filters-Applied"] = response.header("OCI-Filters-Applied") or ""
        return response.body, headers
    if response.status not in (400, 404, 405):
        raise upstream.translate(response, "referrers")

    fallback_tag = digest.replace(":", "-", 1)
    response = await upstream.get(repository, f"/v2/{upstream_repository}/manifests/{fallback_tag}", accept, kind="referrers")
    if response.status == 200:
        try:
            index = json.loads(response.body)
        except ValueError:
            index = empty_index()
    elif response.status == 404:
        codes = {e.get("code") for e in parse_error_body(response.body)}
        if "NAME_UNKNOWN" in codes:
            raise upstream.translate(response, "referrers")
        index = empty_index()
    else:
        raise upstream.translate(response, "referrers")
    headers = {"Content-Type": INDEX_MEDIA_TYPE}
    if artifact_type:
        headers["OCI-Filters-Applied"] = "artifactType"
    return json.dumps(filter_artifact_type(index, artifact_type), separators=(",", ":")).encode(), headers
