"""The cache inside the addon: asked only after the license check, filled by passing blobs,
never filled by broken transfers, and a corrupt file never sent complete. The file server is the
real nginx the cache starts."""

import hashlib

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from authmirror.cache.serve import VerifyingStream
from authmirror.context import new_context

from .conftest import VALID, basic, events, loaded_addon, make_flow, run_request, write_config
from .test_addon_forwarding import forwarded

BODY = bytes(range(256)) * 64
DIGEST = f"sha256:{hashlib.sha256(BODY).hexdigest()}"
BLOB = f"/v2/proxy/acme/vendor/app/blobs/{DIGEST}"


@pytest.fixture
def cached(tmp_path):
    config = write_config(tmp_path, cache={"dir": "cache", "max_size": "10MiB"})
    with loaded_addon(config) as (addon, tctx, fake):
        try:
            yield addon, config
        finally:
            addon.mirror.close()  # stops nginx (taddons does not call `done`)


def play_blob(addon, flow: http.HTTPFlow, body: bytes, announced: int, chunks: int = 5) -> bytes:
    """The upstream's 200 answer through the hooks as mitmproxy plays it; returns what the client got."""
    flow.response = http.Response.make(200, b"", {"Docker-Content-Digest": DIGEST})
    flow.response.headers["Content-Length"] = str(announced)  # as it came on the wire
    addon.responseheaders(flow)
    stream = flow.response.stream
    step = max(1, len(body) // chunks)
    sent = [as_list(stream(body[i : i + step])) for i in range(0, len(body), step)] + [as_list(stream(b""))]
    addon.response(flow)
    return b"".join(piece for pieces in sent for piece in pieces)


def as_list(result) -> list[bytes]:
    return [result] if isinstance(result, bytes) else list(result)


async def cold_get(addon, body: bytes = BODY, content_length: int | None = None) -> http.HTTPFlow:
    flow = await forwarded(addon, BLOB)
    addon.injector.request(flow)
    assert play_blob(addon, flow, body, content_length if content_length is not None else len(body)) == body
    return flow


async def test_hits_come_only_after_the_license_check(cached):
    addon, config = cached
    await cold_get(addon)
    assert [e["cache"] for e in events(config)] == ["fill"]
    for authorization, status in ((None, 401), (basic("expired-license-01"), 403), (basic("beta-only-license"), 403), (basic("limited-license-01"), 200)):
        flow = await run_request(addon, make_flow(BLOB, authorization=authorization))
        assert (flow.response.status_code if flow.response else 200) == status, authorization
    # The license allowing this image gets the blob from the cache's file server, without the vendor's credential.
    flow = await run_request(addon, make_flow(BLOB, authorization=basic(VALID)))
    host, port = addon.mirror.cache.file_server.internal_address
    assert flow.response is None and (flow.request.host, flow.request.port) == (host, port)
    assert flow.request.path.startswith(f"/sha256/{DIGEST[7:9]}/{DIGEST[7:]}?expires=")
    assert "Authorization" not in flow.request.headers
    assert addon.mirror.may_connect(host, port)


async def test_head_of_a_cached_blob_is_answered_locally(cached):
    addon, config = cached
    await cold_get(addon)
    flow = await run_request(addon, make_flow(BLOB, method="HEAD", authorization=basic(VALID)))
    assert flow.response.status_code == 200 and flow.response.headers["Content-Length"] == str(len(BODY))
    assert flow.response.headers["Docker-Content-Digest"] == DIGEST and flow.response.raw_content == b""


@pytest.mark.parametrize("announced", [len(BODY) + 100, None])
async def test_broken_transfers_fill_nothing(cached, announced):
    addon, config = cached
    if announced is not None:  # the upstream's body ends short of its Content-Length
        await cold_get(addon, BODY, content_length=announced)
    else:  # the connection breaks mid-body
        flow = await forwarded(addon, BLOB)
        flow.response = http.Response.make(200, b"", {"Content-Length": str(len(BODY)), "Docker-Content-Digest": DIGEST})
        addon.responseheaders(flow)
        flow.response.stream(BODY[:1000])
        flow.error = tflow.flow.Error("connection reset")
        addon.error(flow)
    store = addon.mirror.cache.store
    assert store.entry(DIGEST) is None and not list(store.tmp.iterdir())
    assert events(config)[-1]["cache"] == "miss"
    assert addon.mirror.cache.snapshot()["fills_dropped"] == 1


def test_a_corrupt_blob_is_never_sent_complete():
    flow = tflow.tflow(resp=True, live=True)
    context = new_context(flow)
    dropped = []
    corrupt = BODY[:-1] + b"\x00"
    stream = VerifyingStream(flow, context, DIGEST, len(BODY), lambda: dropped.append(True))
    sent = b"".join(b"".join(as_list(stream(corrupt[i : i + 4096]))) for i in range(0, len(corrupt), 4096))
    sent += b"".join(as_list(stream(b"")))
    assert len(sent) == len(BODY) - 4096, "the last chunk is held back"
    assert dropped and flow.error is not None and flow.error.msg == flow.error.KILLED_MESSAGE

    good = tflow.tflow(resp=True, live=True)
    stream = VerifyingStream(good, new_context(good), DIGEST, len(BODY), lambda: dropped.append(False))
    sent = b"".join(b"".join(as_list(stream(BODY[i : i + 4096]))) for i in range(0, len(BODY), 4096)) + b"".join(as_list(stream(b"")))
    assert sent == BODY and good.error is None and dropped == [True]


async def test_if_nginx_dies_blobs_come_from_upstream(cached, caplog):
    addon, config = cached
    await cold_get(addon)
    server = addon.mirror.cache.file_server
    server.process.kill()
    server.process.wait()
    flow = await forwarded(addon, BLOB)  # not re-pointed at a dead file server: sent upstream
    assert (flow.request.host, flow.request.port) == ("upstream.test", 5001)
    assert "the file server (nginx) exited" in caplog.text
