"""Forwarding a pull upstream and shaping the upstream's answer for the client.

Request: host and path rewritten to the upstream, the client's credentials removed, everything
else (Accept, Range, If-None-Match, User-Agent) sent verbatim.
Answer: 2xx bodies pass byte-identical (blobs streamed, never buffered); upstream errors become
the mirror's OCI errors; storage redirects are sealed (follow) or passed (pass); nothing that
names the upstream host or carries its credentials reaches the client.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import urljoin, urlsplit

from mitmproxy import http

from .answers import base_headers
from .context import RequestContext
from .errors import RegistryError, translate_upstream_error
from .redirects import QUERY_PARAM

# Headers never forwarded upstream: the client's credentials and hop-by-hop proxies' additions.
CLIENT_ONLY_HEADERS = ("Authorization", "Proxy-Authorization", "Cookie", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip")
# Upstream answer headers never shown to the client.
# Rate-limit headers describe the vendor's account quota: they go to pull events, not to customers.
UPSTREAM_ONLY_HEADERS = (
    "WWW-Authenticate", "Set-Cookie", "Link", "Location", "Strict-Transport-Security", "Alt-Svc",
    "Docker-Ratelimit-Source", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
)
_CLIENT_ONLY = frozenset(name.lower().encode() for name in CLIENT_ONLY_HEADERS)
_UPSTREAM_ONLY = frozenset(name.lower().encode() for name in (*UPSTREAM_ONLY_HEADERS, "X-Request-Id"))
MAX_BUFFERED_MANIFEST = 4 * 1024 * 1024  # the spec's manifest size limit; larger answers are streamed
ERROR_BODY_LIMIT = 64 * 1024
MAX_STORAGE_HOPS = 3
REDACTED = "<redacted by authmirror>"


def upstream_path(upstream_repository: str, route_kind: str, reference: str) -> str:
    segment = {"manifest": "manifests", "blob": "blobs"}[route_kind]
    return f"/v2/{upstream_repository}/{segment}/{reference}"


def point_at(request: http.Request, url: str) -> None:
    """Send this request to `url` (scheme, host, port, path and query), Host header included."""
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    host = parts.hostname or ""
    port = parts.port or default_port
    host_header = host if port == default_port else f"{host}:{port}"
    # NOTE: one pass over the header fields, and host/port set on the request's data: mitmproxy's
    # host/port setters and each headers.pop rewrite the headers again (~0.1 ms per request).
    fields = [(name, host_header.encode()) if name.lower() == b"host" else (name, value) for name, value in request.headers.fields if name.lower() not in _CLIENT_ONLY]
    if not any(name.lower() == b"host" for name, _ in fields) and not (request.is_http2 or request.is_http3):
        fields.insert(0, (b"Host", host_header.encode()))
    request.headers.fields = tuple(fields)
    request.scheme = parts.scheme
    request.data.host = host
    request.data.port = port
    if request.data.authority:  # HTTP/2 and HTTP/3: the authority is the host header
        request.authority = host_header
    request.path = parts.path + (f"?{parts.query}" if parts.query else "")


def redact_request(request: http.Request) -> None:
    """After the request left for upstream: keep no credential in the flow (mitmweb, -w, dumps)."""
    if "Authorization" in request.headers:
        scheme = request.headers["Authorization"].split(" ", 1)[0]
        request.headers["Authorization"] = f"{scheme} {REDACTED}"


def scrub_response_headers(response: http.Response, context: RequestContext) -> None:
    hosts = tuple(h.encode() for h in _upstream_hosts(context))
    # One pass over the fields (each headers.pop would rewrite them all).
    kept = tuple(
        (name, value)
        for name, value in response.headers.fields
        if name.lower() not in _UPSTREAM_ONLY and not any(host in value.lower() for host in hosts)
    )
    response.headers.fields = kept + ((b"X-Request-Id", context.request_id.encode()),)


def _upstream_hosts(context: RequestContext) -> tuple[str, ...]:
    registry = context.registry
    if registry is None:
        return ()
    return tuple(h for h in (registry.host, *registry.auth_hosts) if h)


class ReplacementBody:
    """Stream callable for an upstream answer we replaced: swallows the upstream body (keeping a
    bounded prefix to learn from) and emits our own body, rendered from that prefix, at the end."""

    def __init__(self, render: Callable[[bytes], bytes], send_body: bool):
        self.render = render
        self.send_body = send_body
        self.prefix = bytearray()
        self.emitted: bytes | None = None

    def __call__(self, chunk: bytes) -> list[bytes]:
        # NOTE: swallowed chunks must be [] and not b"": mitmproxy would send an empty chunk, which
        # in chunked transfer coding ends the body before ours is sent.
        if chunk:
            if len(self.prefix) < ERROR_BODY_LIMIT:
                self.prefix += chunk[: ERROR_BODY_LIMIT - len(self.prefix)]
            return []
        body = self.finish()
        return [body] if body else []

    def finish(self) -> bytes:
        if self.emitted is None:
            self.emitted = self.render(bytes(self.prefix))
        return self.emitted if self.send_body else b""


class ByteCounter:
    """Stream callable for bodies we pass through: counts bytes on their way to the client."""

    def __init__(self, context: RequestContext):
        self.context = context

    def __call__(self, chunk: bytes) -> bytes:
        self.context.bytes += len(chunk)
        return chunk


def replace_response(flow: http.HTTPFlow, context: RequestContext, status: int, headers: dict[str, str], render: Callable[[bytes], bytes]) -> None:
    """Answer the client ourselves in `responseheaders`, while the upstream body is drained.

    The body is only known once the upstream's body has been seen, so it goes out chunked
    (HTTP/1.1) or unsized (HTTP/2); HEAD answers have none.
    """
    request = flow.request
    send_body = request.method != "HEAD"
    response = http.Response.make(status, b"", {**base_headers(context.request_id), **headers})
    del response.headers["Content-Length"]
    if send_body and request.http_version == "HTTP/1.1":
        response.headers["Transfer-Encoding"] = "chunked"
    elif not send_body:
        response.headers["Content-Length"] = "0"
    replacement = ReplacementBody(render, send_body)
    response.stream = replacement
    flow.response = response
    context.replacement = replacement
    context.status = status


def replace_with_error(flow: http.HTTPFlow, context: RequestContext, upstream_status: int, retry_after: str | None) -> None:
    registry = context.registry
    assert registry is not None and context.upstream is not None
    kind = context.action
    secrets = context.upstream.secret_values()

    def translate(body: bytes) -> RegistryError:
        return translate_upstream_error(
            upstream_status, body, registry=registry.name, kind=kind, retry_after=retry_after,
            hosts=_upstream_hosts(context), secrets=secrets,
        )

    preview = translate(b"")  # status and headers depend on the upstream status only
    context.error_code = preview.code

    def render(body: bytes) -> bytes:
        error = translate(body)
        context.error_code, context.error_message = error.code, error.message
        return error.body(context.request_id)

    replace_response(flow, context, preview.status, dict(preview.headers or {}), render)


def redirect_client(flow: http.HTTPFlow, context: RequestContext, location: str) -> None:
    """A 307 to `location`, built by us (the client follows it with the same method)."""
    replace_response(flow, context, 307, {"Location": location}, lambda _: b"")


def storage_location(response: http.Response, request_url: str) -> str | None:
    location = response.headers.get("Location")
    if not location:
        return None
    return urljoin(request_url, location)


def sealed_redirect_url(context: RequestContext, token: str) -> str:
    path = context.client_path.split("?", 1)[0]
    return f"{path}?{QUERY_PARAM}={token}"


def stream_or_buffer(flow: http.HTTPFlow, context: RequestContext) -> None:
    """Blobs always stream; small manifests are buffered (so mitmweb can show them)."""
    response = flow.response
    assert response is not None
    length = response.headers.get("Content-Length", "")
    small = length.isdigit() and int(length) <= MAX_BUFFERED_MANIFEST
    if context.action == "manifest" and small and not context.to_storage:
        response.stream = False
        return
    response.stream = ByteCounter(context)
    context.streamed = True


def redirect_loop_error(registry_name: str) -> RegistryError:
    return RegistryError(
        "UNAVAILABLE",
        f"upstream registry '{registry_name}' redirected the blob too many times",
        status=502,
        detail={"registry": registry_name},
    )
