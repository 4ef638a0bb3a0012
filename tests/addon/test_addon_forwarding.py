import base64
import json

import pytest
from mitmproxy import http
from mitmproxy.proxy import server_hooks
from mitmproxy.test import tflow

from authmirror import mitm_errors
from authmirror.redirects import QUERY_PARAM

from .conftest import UPSTREAM_PASSWORD, VALID, basic, errors_of, events, make_flow, run_request, write_config, loaded_addon

DIGEST = "sha256:" + "b" * 64
VENDOR_BASIC = "Basic " + base64.b64encode(f"vendor:{UPSTREAM_PASSWORD}".encode()).decode()


def upstream_answers(addon, flow, status: int, headers: dict | None = None, body: bytes = b"", chunks: int = 3) -> bytes:
    """Play the upstream's answer through the hooks as mitmproxy does; returns what the client got."""
    flow.response = http.Response.make(status, b"", headers or {})
    if status != 304 and "Content-Length" not in (headers or {}):
        flow.response.headers["Content-Length"] = str(len(body))
    addon.responseheaders(flow)
    stream = flow.response.stream
    if stream:
        sent = b""
        step = max(1, len(body) // chunks)
        for i in range(0, len(body), step):
            piece = body[i : i + step]
            sent += b"".join(as_chunks(stream(piece))) if callable(stream) else piece
        if callable(stream):
            sent += b"".join(as_chunks(stream(b"")))
    else:
        flow.response.content = body
        sent = None
    addon.response(flow)
    return sent if sent is not None else flow.response.content


def as_chunks(result) -> list[bytes]:
    """What mitmproxy sends for a stream callable's result; an empty chunk would end a chunked body."""
    if result == b"":
        return []  # mitmproxy treats a bare b"" as "nothing to send"
    chunks = [result] if isinstance(result, bytes) else list(result)
    assert all(chunks), "a stream callable must not emit empty chunks mid-body"
    return chunks


async def forwarded(addon, path, method="GET", authorization=None, **kwargs):
    flow = make_flow(path, method=method, authorization=authorization or basic(VALID), **kwargs)
    addon.requestheaders(flow)
    await addon.request(flow)
    assert flow.response is None, flow.response and flow.response.content
    return flow


async def test_request_is_rewritten_and_vendor_auth_injected_last(addon_ctx):
    addon, _, _ = addon_ctx
    flow = await forwarded(addon, "/v2/proxy/acme/vendor/team/app/manifests/1.0", headers={"Accept": "application/vnd.oci.image.index.v1+json", "Cookie": "c=1"})
    assert (flow.request.scheme, flow.request.host, flow.request.port) == ("http", "upstream.test", 5001)
    assert flow.request.path == "/v2/team/app/manifests/1.0"
    assert flow.request.host_header == "upstream.test:5001"
    assert flow.request.headers["Accept"] == "application/vnd.oci.image.index.v1+json"
    assert "Cookie" not in flow.request.headers
    # Until the injector (last in the chain) runs, no addon or UI sees a credential.
    assert "Authorization" not in flow.request.headers
    addon.injector.request(flow)
    assert flow.request.headers["Authorization"] == VENDOR_BASIC


async def test_answer_headers_never_name_the_upstream_and_credentials_are_redacted(addon_ctx, config_path):
    addon, _, _ = addon_ctx
    flow = await forwarded(addon, "/v2/proxy/acme/vendor/app/manifests/1.0")
    addon.injector.request(flow)
    manifest = b'{"schemaVersion":2}'
    sent = upstream_answers(
        addon,
        flow,
        200,
        {"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Docker-Content-Digest": DIGEST, "Link": "<http://upstream.test:5001/v2/x>; rel=next", "Set-Cookie": "s=1", "X-Served-By": "upstream.test:5001"},
        manifest,
    )
    assert sent == manifest
    headers = flow.response.headers
    assert headers["Docker-Content-Digest"] == DIGEST
    assert not any(k in headers for k in ("Link", "Set-Cookie", "X-Served-By"))
    assert UPSTREAM_PASSWORD not in str(flow.request.headers) and "redacted" in flow.request.headers["Authorization"]
    [event] = events(config_path)
    assert (event["action"], event["status"], event["bytes"], event["digest"], event["repository"]) == ("manifest", 200, len(manifest), DIGEST, "app")


async def test_blobs_stream_and_count_bytes(addon_ctx, config_path):
    addon, _, _ = addon_ctx
    flow = await forwarded(addon, f"/v2/proxy/acme/vendor/app/blobs/{DIGEST}", headers={"Range": "bytes=0-99"})
    assert flow.request.headers["Range"] == "bytes=0-99"
    body = bytes(range(256)) * 40
    sent = upstream_answers(addon, flow, 206, {"Content-Range": f"bytes 0-{len(body) - 1}/99999"}, body, chunks=7)
    assert callable(flow.response.stream)
    assert sent == body
    assert events(config_path)[0]["bytes"] == len(body)


@pytest.mark.parametrize(
    "status, headers, body, client_status, code, words",
    [
        (401, {"WWW-Authenticate": 'Basic realm="upstream.test"'}, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}', 502, "UNAUTHORIZED", "vendor's registry credentials were refused by upstream registry 'vendor'"),
        (403, {}, b"", 502, "DENIED", "lack pull permission"),
        (404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"9.9"}}]}', 404, "MANIFEST_UNKNOWN", "manifest unknown"),
        (429, {"Retry-After": "60"}, b"slow down", 429, "TOOMANYREQUESTS", "retry after 60 s"),
        (500, {}, b"<html>upstream.test:5001 exploded</html>", 502, "UNAVAILABLE", "failed with HTTP 500"),
    ],
)
async def test_upstream_errors_become_oci_errors(addon_ctx, config_path, status, headers, body, client_status, code, words):
    addon, _, _ = addon_ctx
    flow = await forwarded(addon, "/v2/proxy/acme/vendor/app/manifests/9.9")
    addon.injector.request(flow)
    sent = upstream_answers(addon, flow, status, headers, body)
    assert flow.response.status_code == client_status
    [error] = json.loads(sent)["errors"]
    assert error["code"] == code and words in error["message"], error
    assert error["detail"]["request_id"] == events(config_path)[0]["request_id"]
    assert "upstream.test" not in sent.decode() and UPSTREAM_PASSWORD not in sent.decode()
    assert "WWW-Authenticate" not in flow.response.headers
    if status == 429:
        assert flow.response.headers["Retry-After"] == "60"
    assert events(config_path)[0]["error_code"] == code


async def test_head_error_has_no_body(addon_ctx):
    addon, _, _ = addon_ctx
    flow = await forwarded(addon, "/v2/proxy/acme/vendor/app/manifests/9.9", method="HEAD")
    flow.request.method = "HEAD"
    sent = upstream_answers(addon, flow, 404, {"Content-Length": "0"}, b"")
    assert flow.response.status_code == 404 and sent == b""


async def test_blob_storage_redirect_is_followed_through_the_mirror(tmp_path):
    config = write_config(tmp_path)
    with loaded_addon(config) as (addon, _, _fake):
        storage = "https://storage.test/bucket/blob?X-Amz-Signature=presigned-secret"
        flow = await forwarded(addon, f"/v2/proxy/acme/vendor/app/blobs/{DIGEST}")
        upstream_answers(addon, flow, 307, {"Location": storage}, b"")
        assert flow.response.status_code == 307
        location = flow.response.headers["Location"]
        assert location.startswith(f"/v2/proxy/acme/vendor/app/blobs/{DIGEST}?{QUERY_PARAM}=")
        assert "storage.test" not in location and "presigned-secret" not in location

        # the client follows; the mirror fetches storage without the vendor's credentials
        follow = make_flow(location, authorization=basic(VALID))
        addon.requestheaders(follow)
        mirror = addon.mirror
        mirror.config.apps["acme"].registries[0].__dict__["redirect_hosts"] = ("storage.test",)  # storage.test does not resolve here
        await addon.request(follow)
        addon.injector.request(follow)
        assert follow.response is None
        assert (follow.request.host, follow.request.port, follow.request.path) == ("storage.test", 443, "/bucket/blob?X-Amz-Signature=presigned-secret")
        assert "Authorization" not in follow.request.headers
        assert mirror.may_connect("storage.test", 443)
        sent = upstream_answers(addon, follow, 200, {"Content-Type": "application/octet-stream", "x-amz-request-id": "abc"}, b"x" * 1000)
        assert sent == b"x" * 1000
        assert "x-amz-request-id" not in follow.response.headers
        assert follow.response.headers["Docker-Content-Digest"] == DIGEST

        # tampered or foreign redirect tokens are refused
        bad = make_flow(location[:-4] + "AAAA", authorization=basic(VALID))
        await run_request(addon, bad)
        assert bad.response.status_code == 403


async def test_blob_redirect_to_private_address_is_refused_unless_allowed(tmp_path):
    config = write_config(tmp_path)
    with loaded_addon(config) as (addon, _, _fake):
        flow = await forwarded(addon, f"/v2/proxy/acme/vendor/app/blobs/{DIGEST}")
        upstream_answers(addon, flow, 307, {"Location": "https://127.0.0.1:8443/internal"}, b"")
        follow = make_flow(flow.response.headers["Location"], authorization=basic(VALID))
        await run_request(addon, follow)
        assert follow.response.status_code == 502 and "not allowed" in errors_of(follow)[0]["message"]
        assert not addon.mirror.may_connect("127.0.0.1", 8443)


async def test_blob_redirects_pass_hands_storage_url_to_client(tmp_path):
    config = write_config(tmp_path, blob_redirects="pass")
    with loaded_addon(config) as (addon, _, _fake):
        storage = "https://storage.test/bucket/blob?sig=1"
        flow = await forwarded(addon, f"/v2/proxy/acme/vendor/app/blobs/{DIGEST}")
        upstream_answers(addon, flow, 307, {"Location": storage}, b"")
        assert flow.response.status_code == 307 and flow.response.headers["Location"] == storage


async def test_stale_cached_token_makes_the_client_retry(addon_ctx):
    addon, _, fake = addon_ctx
    fake.routes["/v2/"] = (401, {"WWW-Authenticate": 'Bearer realm="http://upstream.test:5001/token",service="reg"'}, b"")
    fake.routes["/token"] = (200, {}, b'{"token":"upstream-token-1","expires_in":300}')
    flow = await forwarded(addon, "/v2/proxy/acme/vendor/app/manifests/1.0")
    addon.injector.request(flow)
    assert flow.request.headers["Authorization"] == "Bearer upstream-token-1"
    token_calls = [c for c in fake.calls if "/token" in c[1]]
    assert len(token_calls) == 1 and token_calls[0][2]["Authorization"] == VENDOR_BASIC
    assert "scope=repository%3Aapp%3Apull" in token_calls[0][1]
    upstream = addon.mirror.upstreams[("acme", "vendor")]
    upstream.tokens._tokens[next(iter(upstream.tokens._tokens))] = upstream.tokens._tokens[next(iter(upstream.tokens._tokens))].__class__("upstream-token-1", 0.0, 1e12)  # make it old
    flow2 = await forwarded(addon, "/v2/proxy/acme/vendor/app/manifests/1.0")
    upstream_answers(addon, flow2, 401, {}, b"")
    assert flow2.response.status_code == 307 and flow2.response.headers["Location"] == "/v2/proxy/acme/vendor/app/manifests/1.0"
    fake.routes["/token"] = (200, {}, b'{"token":"upstream-token-2","expires_in":300}')
    flow3 = await forwarded(addon, "/v2/proxy/acme/vendor/app/manifests/1.0")
    addon.injector.request(flow3)
    assert flow3.request.headers["Authorization"] == "Bearer upstream-token-2"
    # a fresh token refused too: the vendor's credentials are wrong
    upstream_answers(addon, flow3, 401, {}, b"")
    assert flow3.response.status_code == 502


async def test_token_realm_on_foreign_host_gets_no_credentials(addon_ctx):
    addon, _, fake = addon_ctx
    fake.routes["/v2/"] = (401, {"WWW-Authenticate": 'Bearer realm="https://evil.test/token",service="reg"'}, b"")
    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/app/manifests/1.0", authorization=basic(VALID)))
    assert flow.response.status_code == 502
    assert "auth_hosts" in errors_of(flow)[0]["message"]
    assert not any("evil.test" in c[1] for c in fake.calls)


async def test_wrong_vendor_password_at_token_service(addon_ctx):
    addon, _, fake = addon_ctx
    fake.routes["/v2/"] = (401, {"WWW-Authenticate": 'Bearer realm="http://upstream.test:5001/token",service="reg"'}, b"")
    fake.routes["/token"] = (401, {}, b'{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}')
    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/app/manifests/1.0", authorization=basic(VALID)))
    assert flow.response.status_code == 502
    message = errors_of(flow)[0]["message"]
    assert "vendor's registry credentials were refused by upstream registry 'vendor'" in message and "incorrect username or password" in message


async def test_connection_failure_renders_oci_json_without_the_host(addon_ctx, config_path):
    addon, _, _ = addon_ctx
    flow = await forwarded(addon, "/v2/proxy/acme/vendor/app/manifests/1.0")
    addon.injector.request(flow)
    flow.error = tflow.flow.Error("[Errno 111] Connect call failed ('upstream.test', 5001)")
    addon.error(flow)
    raw = mitm_errors._make_error_response(502, flow.error.msg)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"application/json" in head and b"upstream.test" not in raw
    [error] = json.loads(body)["errors"]
    assert error["code"] == "UNAVAILABLE" and "upstream registry 'vendor' is unreachable: connection refused" in error["message"]
    assert events(config_path)[0]["error_code"] == "UNAVAILABLE"
    assert "redacted" in flow.request.headers["Authorization"]


def test_server_connect_refuses_unconfigured_destinations(addon_ctx):
    addon, _, _ = addon_ctx
    for address, allowed in ((("upstream.test", 5001), True), (("upstream.test", 22), False), (("169.254.169.254", 80), False), (("127.0.0.1", 9), False)):
        server = tflow.tserver_conn()
        server.address = address
        server.error = None
        addon.server_connect(server_hooks.ServerConnectionHookData(server, tflow.tclient_conn()))
        assert (server.error is None) == allowed, address


async def test_tags_are_paged_by_the_mirror(addon_ctx):
    addon, _, fake = addon_ctx
    fake.routes["/v2/app/tags/list"] = (200, {}, json.dumps({"name": "app", "tags": ["2.0", "1.0", "latest", "1.1"]}).encode())
    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/app/tags/list?n=2", authorization=basic(VALID)))
    assert json.loads(flow.response.content) == {"name": "proxy/acme/vendor/app", "tags": ["1.0", "1.1"]}
    assert flow.response.headers["Link"] == '</v2/proxy/acme/vendor/app/tags/list?n=2&last=1.1>; rel="next"'
    flow = await run_request(addon, make_flow("/v2/proxy/acme/vendor/app/tags/list?n=2&last=1.1", authorization=basic(VALID)))
    assert json.loads(flow.response.content)["tags"] == ["2.0", "latest"] and "Link" not in flow.response.headers


async def test_referrers_fall_back_to_the_tag_schema(addon_ctx):
    addon, _, fake = addon_ctx
    fallback = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{"digest": DIGEST, "artifactType": "application/spdx+json"}, {"digest": DIGEST, "artifactType": "other"}]}
    fake.routes[f"/v2/app/manifests/sha256-{'b' * 64}"] = (200, {}, json.dumps(fallback).encode())
    flow = await run_request(addon, make_flow(f"/v2/proxy/acme/vendor/app/referrers/{DIGEST}?artifactType=application/spdx%2Bjson", authorization=basic(VALID)))
    index = json.loads(flow.response.content)
    assert [m["artifactType"] for m in index["manifests"]] == ["application/spdx+json"]
    assert flow.response.headers["OCI-Filters-Applied"] == "artifactType"
    fake.routes[f"/v2/app/manifests/sha256-{'c' * 64}"] = (404, {}, b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}')
    flow = await run_request(addon, make_flow(f"/v2/proxy/acme/vendor/app/referrers/sha256:{'c' * 64}", authorization=basic(VALID)))
    assert flow.response.status_code == 200 and json.loads(flow.response.content)["manifests"] == []
    # an unknown repository stays an error
    flow = await run_request(addon, make_flow(f"/v2/proxy/acme/vendor/ghost/referrers/sha256:{'c' * 64}", authorization=basic(VALID)))
    assert flow.response.status_code == 404 and errors_of(flow)[0]["code"] == "NAME_UNKNOWN"


def test_same_failure_text_on_two_flows_keeps_each_flows_error():
    """mitmproxy passes the same message object to the error hook and to the renderer."""
    from authmirror.errors import RegistryError

    first, second = "server closed connection", "".join(["server closed ", "connection"])  # equal text, two objects
    assert first == second and first is not second
    mitm_errors.expect(first, RegistryError("UNAVAILABLE", "registry 'one' failed", status=502))
    mitm_errors.expect(second, RegistryError("UNAVAILABLE", "registry 'two' failed", status=502))
    assert "'two'" in mitm_errors.error_for(502, second).message
    assert "'one'" in mitm_errors.error_for(502, first).message


def test_tls_clienthello_is_refused_without_a_listener_certificate(addon_ctx):
    from mitmproxy.tls import ClientHelloData

    addon, _, _ = addon_ctx
    data = ClientHelloData(context=None, client_hello=None)
    addon.tls_clienthello(data)
    assert data.ignore_connection is True
