"""The timeouts addon inside mitmproxy's test context: which flows it watches, what it records when a
deadline passes, and how the error hook then answers (the real abort is proven in tests/e2e/test_faults.py)."""

import asyncio
import json

from mitmproxy import flow as mflow
from mitmproxy import http

from authmirror import mitm_errors
from authmirror.context import get_context
from authmirror.timeouts import ABORTED_KEY, ActivityStream

from .conftest import basic, loaded_addon, make_flow, write_config, VALID


async def forwarded_flow(addon, path="/v2/proxy/acme/vendor/app/manifests/1.0"):
    flow = make_flow(path, authorization=basic(VALID))
    addon.requestheaders(flow)
    await addon.request(flow)
    assert flow.response is None
    addon.timeouts.request(flow)
    return flow


class ConnectionHandlerStandIn:
    """Stands in for mitmproxy's connection handler of a live client connection (no sockets here)."""

    def __init__(self, server_conn):
        self.transports = {server_conn: None}
        self.closed = []

    def close_connection(self, connection, half_close=False):
        self.closed.append(connection)


async def test_headers_deadline_records_a_504_and_the_error_hook_renders_it(tmp_path):
    with loaded_addon(write_config(tmp_path, timeouts={"headers": "100ms"})) as (addon, tctx, _):
        flow = await forwarded_flow(addon)
        assert flow.id in addon.timeouts._watchdogs
        await asyncio.sleep(0.2)
        assert ABORTED_KEY not in get_context(flow).extra, "no upstream connection yet: nothing to abort, keep trying"
        handler = ConnectionHandlerStandIn(flow.server_conn)
        tctx.master.addons.get("proxyserver").connections[flow.client_conn.id] = handler
        await asyncio.sleep(0.3)
        assert handler.closed == [flow.server_conn]
        error = get_context(flow).extra[ABORTED_KEY]
        assert error.status == 504 and error.message == "upstream registry 'vendor' did not answer within 0.1 s"
        flow.error = mflow.Error("server closed connection")  # what mitmproxy reports once the connection is closed
        addon.timeouts.error(flow)
        addon.error(flow)
        rendered = json.loads(mitm_errors._format_error(502, "server closed connection"))
        assert rendered["errors"][0]["message"] == error.message
        assert flow.id not in addon.timeouts._watchdogs
        event = json.loads((tmp_path / "pulls.jsonl").read_text().splitlines()[-1])
        assert event["status"] == 504 and event["error_code"] == "UNAVAILABLE"


async def test_answer_in_time_stops_the_watchdog_and_streams_are_watched(tmp_path):
    with loaded_addon(write_config(tmp_path, timeouts={"headers": "100ms", "body_stall": "5s"})) as (addon, _, _):
        flow = await forwarded_flow(addon, "/v2/proxy/acme/vendor/app/blobs/sha256:" + "a" * 64)
        flow.response = http.Response.make(200, b"", {"Content-Length": "1000000"})
        addon.responseheaders(flow)
        addon.timeouts.responseheaders(flow)
        stream = flow.response.stream
        assert isinstance(stream, ActivityStream) and callable(stream.inner)
        before = stream.last
        await asyncio.sleep(0.2)
        assert stream(b"x" * 10) == b"x" * 10 and stream.last > before
        assert ABORTED_KEY not in get_context(flow).extra, "headers came in time; the body is still flowing"
        addon.timeouts.response(flow)
        assert flow.id not in addon.timeouts._watchdogs


async def test_local_answers_are_not_watched(tmp_path):
    with loaded_addon(write_config(tmp_path)) as (addon, _, _):
        flow = make_flow("/v2/", authorization=basic(VALID))
        addon.requestheaders(flow)
        await addon.request(flow)
        addon.timeouts.request(flow)
        assert flow.response.status_code == 200 and not addon.timeouts._watchdogs
