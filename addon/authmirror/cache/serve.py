"""What a cache hit looks like to the client.

Blobs: a HEAD is answered from the index. A GET is either sent through the mirror (`serve: proxy`:
the flow is re-pointed at the local file server, so mitmproxy streams nginx's answer; the bytes
are hashed on the way and the last chunk is held back until the whole body matched its digest) or
answered with a 307 to a signed file server URL (`serve: redirect`: the bytes bypass the mirror).
Manifests are small: the mirror reads, checks and answers them itself.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from mitmproxy import http

from .. import answers
from ..context import RequestContext
from ..forwarding import ByteCounter

BLOB_CONTENT_TYPE = "application/octet-stream"
# Headers of the file server's answer the client may see; everything else is ours.
FILE_SERVER_HEADERS = ("Content-Length", "Content-Range", "Accept-Ranges")
# Conditional headers would be judged by nginx's own ETag/mtime, which mean nothing to the client.
CONDITIONAL_HEADERS = ("If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range")


def blob_headers(digest: str) -> dict[str, str]:
    return {"Docker-Content-Digest": digest, "Etag": f'"{digest}"', "Accept-Ranges": "bytes"}


def head_answer(request: http.Request, request_id: str, digest: str, size: int) -> http.Response:
    """HEAD of a cached blob: its size, no body."""
    response = answers.make(request, 200, b"", request_id, blob_headers(digest), BLOB_CONTENT_TYPE)
    response.headers["Content-Length"] = str(size)
    return response


def redirect_answer(request: http.Request, request_id: str, url: str, digest: str) -> http.Response:
    headers = {"Location": url, "Docker-Content-Digest": digest, "Cache-Control": "no-store"}
    return answers.make(request, 307, b"", request_id, headers)


def manifest_answer(request: http.Request, request_id: str, digest: str, media_type: str, body: bytes, stale: bool) -> http.Response:
    headers = {"Docker-Content-Digest": digest, "Etag": f'"{digest}"'}
    if stale:
        headers["Warning"] = '110 authmirror "Response is Stale"'  # RFC 7234 5.5.1
    return answers.make(request, 200, body, request_id, headers, media_type)


def shape_file_server_answer(response: http.Response, context: RequestContext, digest: str) -> None:
    """The file server's answer, dressed as the registry's: nothing of nginx reaches the client."""
    kept = {name: response.headers[name] for name in FILE_SERVER_HEADERS if name in response.headers}
    response.headers.clear()
    response.headers.update(answers.base_headers(context.request_id, BLOB_CONTENT_TYPE))
    response.headers.update(blob_headers(digest))
    response.headers.update(kept)


class VerifyingStream:
    """Stream callable for a cached blob sent through the mirror.

    Hashes the body on its way and holds the last chunk back until the whole body matched its
    digest and size. A file that rotted on disk without its stat changing is thereby never
    received complete: the transfer is cut short (the flow killed, so the client's connection
    closes before the announced Content-Length) and `on_corrupt` drops the file.
    """

    def __init__(self, flow: http.HTTPFlow, context: RequestContext, digest: str, size: int, on_corrupt: Callable[[], None]):
        self.flow = flow
        self.counter = ByteCounter(context)
        self.digest = digest
        self.size = size
        self.on_corrupt = on_corrupt
        self.seen = 0
        self.held = b""
        self._sha = hashlib.sha256()

    def __call__(self, chunk: bytes) -> list[bytes]:
        # NOTE: return [] rather than b"" when there is nothing to send (see ReplacementBody).
        if chunk:
            self._sha.update(chunk)
            self.seen += len(chunk)
            out, self.held = self.held, chunk
            return [self.counter(out)] if out else []
        out, self.held = self.held, b""
        if self.seen == self.size and f"sha256:{self._sha.hexdigest()}" == self.digest:
            return [self.counter(out)] if out else []
        self.on_corrupt()
        if self.flow.killable:
            self.flow.kill()
        return []
