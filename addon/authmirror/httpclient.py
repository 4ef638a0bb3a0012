"""A small HTTP client for the mirror's own calls upstream (auth discovery, tokens, tag lists).

Blocking urllib run in a worker thread so the event loop never waits. It never follows redirects
(credentials must not travel to another host) and never uses proxy environment variables (only
configured upstreams are contacted). Bodies are read up to a limit: nothing here holds a blob.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Callable, Iterator, Mapping

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_BYTES = 4 * 1024 * 1024


class HttpFailure(Exception):
    """The request did not produce an HTTP answer: DNS, connect, TLS or timeout."""

    def __init__(self, kind: str, message: str):
        self.kind = kind  # dns | connect | tls | timeout | protocol
        super().__init__(message)


@dataclass
class HttpResponse:
    status: int
    headers: Message = field(repr=False)
    body: bytes = field(repr=False)
    truncated: bool = False

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def header_all(self, name: str) -> list[str]:
        return self.headers.get_all(name) or []

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib API
        return None


@functools.lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    # Loading the system CA bundle costs tens of milliseconds: once per process, not per request.
    return ssl.create_default_context()


def _opener(ssl_context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}),
        _NoRedirect(),
        urllib.request.HTTPSHandler(context=ssl_context or _default_ssl_context()),
    )


def _open(method: str, url: str, headers: Mapping[str, str] | None, body: bytes | None, timeout: float, ssl_context: ssl.SSLContext | None):
    """Send the request; the answer (any status) to read from, or HttpFailure."""
    req = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        return _opener(ssl_context).open(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        return e  # an HTTP answer all the same (4xx/5xx/3xx)
    except urllib.error.URLError as e:
        raise _failure(e.reason) from None
    except (TimeoutError, socket.timeout) as e:
        raise HttpFailure("timeout", f"timed out after {timeout:g} s") from e
    except (ConnectionError, OSError) as e:
        raise _failure(e) from None


def request_sync(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpResponse:
    response = _open(method, url, headers, body, timeout, ssl_context)
    with _reading(response, timeout):
        data = response.read(max_bytes + 1) if method != "HEAD" else b""
    return HttpResponse(response.status, response.headers, data[:max_bytes], truncated=len(data) > max_bytes)


def stream_sync(
    method: str,
    url: str,
    headers: Mapping[str, str] | None,
    on_chunk: Callable[[bytes], None],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    chunk_size: int = 1 << 20,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpResponse:
    """Like request_sync, but a 2xx body is handed to `on_chunk` piece by piece and never held
    whole (blob digest checks); any other answer's body is read up to the usual limit."""
    response = _open(method, url, headers, None, timeout, ssl_context)
    if not 200 <= response.status < 300:
        try:
            data = response.read(DEFAULT_MAX_BYTES)
        except OSError:
            data = b""
        finally:
            response.close()
        return HttpResponse(response.status, response.headers, data)
    with _reading(response, timeout):
        while chunk := response.read(chunk_size):
            on_chunk(chunk)
    return HttpResponse(response.status, response.headers, b"")


@contextlib.contextmanager
def _reading(response, timeout: float) -> Iterator[None]:
    """Reading an answer's body: failures become HttpFailure, and the answer is closed."""
    try:
        yield
    except (TimeoutError, socket.timeout):
        raise HttpFailure("timeout", f"timed out reading the answer after {timeout:g} s") from None
    except (ConnectionError, OSError) as e:
        raise HttpFailure("protocol", f"connection broke while reading the answer: {e}") from None
    finally:
        response.close()


def _failure(reason: Any) -> HttpFailure:
    if isinstance(reason, socket.gaierror):
        return HttpFailure("dns", f"host name not found ({reason.strerror})")
    if isinstance(reason, ssl.SSLError):
        return HttpFailure("tls", f"TLS handshake failed ({reason.reason or reason})")
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return HttpFailure("timeout", "timed out")
    if isinstance(reason, ConnectionRefusedError):
        return HttpFailure("connect", "connection refused")
    if isinstance(reason, OSError):
        return HttpFailure("connect", f"connection failed ({reason.strerror or reason})")
    return HttpFailure("connect", str(reason))


async def request(
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    **kwargs: Any,
) -> HttpResponse:
    return await asyncio.to_thread(request_sync, method, url, headers, body, **kwargs)


async def stream(
    method: str,
    url: str,
    headers: Mapping[str, str] | None,
    on_chunk: Callable[[bytes], None],
    **kwargs: Any,
) -> HttpResponse:
    return await asyncio.to_thread(stream_sync, method, url, headers, on_chunk, **kwargs)
