"""Per-request state carried from the `request` hook to `responseheaders`, `response` and `error`.

The rich state (license, upstream objects) lives on a private attribute of the flow: flow.metadata
is deep-copied and serialised by mitmproxy (`-w`, the web UI), so it only gets a plain summary.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mitmproxy import http

from .clientauth import NO_CREDENTIAL, ClientCredential
from .routing import Route

if TYPE_CHECKING:
    from .config import RegistryConfig
    from .licenses import License
    from .upstreams import Upstream, UpstreamAuth

_ATTRIBUTE = "_authmirror_context"
METADATA_KEY = "authmirror"


@dataclass
class RequestContext:
    request_id: str
    started: float
    client_path: str  # the path (with query) as the client sent it
    credential: ClientCredential = field(default=NO_CREDENTIAL, repr=False)
    route: Route | None = None
    action: str = ""  # pull-event action; "" for requests that produce no event
    license: License | None = None
    registry: RegistryConfig | None = None
    upstream: Upstream | None = None
    auth: UpstreamAuth | None = field(default=None, repr=False)
    forwarded: bool = False  # the request went to the upstream (or storage)
    to_storage: bool = False  # ... to blob storage, following a redirect
    streamed: bool = False
    bytes: int = 0
    digest: str | None = None
    error_code: str | None = None
    error_message: str | None = None  # what the client was told, for the pull event
    status: int | None = None  # status the client got, when it differs from flow.response
    cache: str | None = None
    replacement: Any = None  # a ReplacementBody when we answered instead of the upstream
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)


def new_context(flow: http.HTTPFlow) -> RequestContext:
    context = RequestContext(uuid.uuid4().hex[:16], time.monotonic(), flow.request.path)
    setattr(flow, _ATTRIBUTE, context)
    return context


def get_context(flow: http.HTTPFlow) -> RequestContext | None:
    return getattr(flow, _ATTRIBUTE, None)


def summarize(flow: http.HTTPFlow, context: RequestContext) -> None:
    """Plain, secret-free facts for flow.metadata (shown in mitmweb, kept by `-w`)."""
    route = context.route
    flow.metadata[METADATA_KEY] = {
        "request_id": context.request_id,
        "action": context.action,
        "customer": context.license.customer if context.license else None,
        "license": context.license.fingerprint if context.license else None,
        "app": route.app if route else None,
        "registry": context.registry.name if context.registry else None,
        "repository": route.repository if route else None,
        "reference": route.reference if route else None,
        "error_code": context.error_code,
    }
