"""Tag listing with the spec's pagination (`n`, `last`, `Link`), whatever the upstream supports.

NOTE: https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-tags
Distribution 2.8 ignores n/last; GHCR and Docker Hub page with Link headers. The mirror reads the
upstream's whole list (following its Link pages on the same host) and pages it itself.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, quote, urlsplit

from .errors import RegistryError
from .upstreams import Upstream

MAX_UPSTREAM_PAGES = 200
_NEXT_LINK_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def parse_paging(query: str) -> tuple[int | None, str | None]:
    params = parse_qs(query, keep_blank_values=True)
    n_values, last_values = params.get("n"), params.get("last")
    n = None
    if n_values:
        if not n_values[0].isdigit() or len(n_values[0]) > 9:
            raise RegistryError("PAGINATION_NUMBER_INVALID", "n must be a non-negative integer", status=400)
        n = int(n_values[0])
    return n, (last_values[0] if last_values else None)


async def upstream_tags(upstream: Upstream, repository: str) -> list[str]:
    path = f"/v2/{upstream.upstream_repository(repository)}/tags/list"
    tags: list[str] = []
    for _page in range(MAX_UPSTREAM_PAGES):
        response = await upstream.get(repository, path, {"Accept": "application/json"}, kind="tags")
        if response.status != 200:
            raise upstream.translate(response, "tags")
        try:
            page = response.json().get("tags") or []
        except (ValueError, AttributeError):
            raise upstream.error("UNAVAILABLE", "answered the tag list with malformed JSON") from None
        tags.extend(t for t in page if isinstance(t, str))
        link = response.header("Link")
        match = _NEXT_LINK_RE.search(link or "")
        if not match:
            break
        next_url = urlsplit(match.group(1))
        if next_url.netloc and next_url.hostname != upstream.registry.host:
            break  # never follow a page to another host with the vendor's credentials
        path = next_url.path + (f"?{next_url.query}" if next_url.query else "")
    return tags


def page_tags(tags: list[str], n: int | None, last: str | None) -> tuple[list[str], str | None]:
    """One page in lexical order, and the last tag of it when more follow."""
    ordered = sorted(set(tags))
    if last is not None:
        ordered = [t for t in ordered if t > last]
    if n is None or n >= len(ordered):
        return ordered, None
    page = ordered[:n]
    return page, (page[-1] if page else None)


def next_link(client_name: str, n: int, last: str) -> str:
    return f'</v2/{client_name}/tags/list?n={n}&last={quote(last, safe="")}>; rel="next"'
