"""Responses the mirror makes itself: OCI errors, JSON answers, challenges."""

from __future__ import annotations

import json
from typing import Any, Mapping

from mitmproxy import http

from .errors import RegistryError

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")


def base_headers(request_id: str, content_type: str = "application/json") -> dict[str, str]:
    return {
        "Content-Type": content_type,
        API_VERSION_HEADER[0]: API_VERSION_HEADER[1],
        "X-Request-Id": request_id,
    }


def make(
    request: http.Request,
    status: int,
    body: bytes,
    request_id: str,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> http.Response:
    """A local answer. HEAD answers carry no body (containerd reuses the connection: a stray body corrupts it)."""
    all_headers = base_headers(request_id, content_type)
    all_headers.update(headers or {})
    if request.method == "HEAD":
        response = http.Response.make(status, b"", all_headers)
        response.headers["Content-Length"] = str(len(body))
        return response
    return http.Response.make(status, body, all_headers)


def json_answer(request: http.Request, data: Any, request_id: str, status: int = 200, headers: Mapping[str, str] | None = None, content_type: str = "application/json") -> http.Response:
    return make(request, status, json.dumps(data, separators=(",", ":")).encode(), request_id, headers, content_type)


def error_answer(request: http.Request, error: RegistryError, request_id: str, extra_headers: Mapping[str, str] | None = None) -> http.Response:
    headers = dict(error.headers or {})
    headers.update(extra_headers or {})
    return make(request, error.status, error.body(request_id), request_id, headers)
