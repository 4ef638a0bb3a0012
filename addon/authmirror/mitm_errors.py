"""mitmproxy's own error answers, rendered as OCI error JSON instead of HTML.

When mitmproxy itself fails a request (upstream refused the connection, protocol errors, a
malformed client request) it answers with an HTML page that names the upstream address. A
registry client wants OCI error JSON, and the upstream host must never reach a client. mitmproxy
offers no hook for that answer, so the renderer it calls is replaced (once, idempotently).

The `error` hook runs right before mitmproxy renders the answer for that flow; it registers the
exact error it wants shown via `expect(flow.error.msg, error)`. mitmproxy hands the renderer the
very same string object it put into `flow.error`, so the key is that object's identity (plus its
text, against address reuse): two flows failing with the same text never swap their answers.
"""

from __future__ import annotations

from collections import OrderedDict

from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.proxy.layers.http import _http1, _http2, _http3

from .errors import RegistryError, render_errors

_expected: OrderedDict[tuple[int, str], RegistryError] = OrderedDict()
_MAX_EXPECTED = 1024
_installed = False


def expect(mitmproxy_message: str, error: RegistryError) -> None:
    """Show `error` when mitmproxy renders its error page for this very message object."""
    _expected[(id(mitmproxy_message), mitmproxy_message)] = error
    while len(_expected) > _MAX_EXPECTED:
        _expected.popitem(last=False)


def error_for(status_code: int, message: str) -> RegistryError:
    expected = _expected.pop((id(message), message), None)
    if expected is not None:
        return expected
    if status_code >= 500:
        # mitmproxy's text for server-side failures names hosts and addresses: say only what happened.
        return RegistryError("UNAVAILABLE", "the upstream request failed", status=status_code)
    if status_code == 413:
        return RegistryError("SIZE_INVALID", "request too large", status=413)
    return RegistryError("UNSUPPORTED", f"malformed request: {message[:200]}", status=status_code)


def _format_error(status_code: int, message: str) -> bytes:
    return render_errors([error_for(status_code, message)])


def _make_error_response(status_code: int, message: str = "") -> bytes:
    error = error_for(status_code, message)
    headers = {
        "Content-Type": "application/json",
        "Docker-Distribution-API-Version": "registry/2.0",
        "Connection": "close",
        **dict(error.headers or {}),
    }
    response = http.Response.make(error.status, render_errors([error]), headers)
    return http1.assemble_response(response)


def install() -> None:
    global _installed
    if _installed:
        return
    _http1.make_error_response = _make_error_response
    _http2.format_error = _format_error
    _http3.format_error = _format_error
    _installed = True
