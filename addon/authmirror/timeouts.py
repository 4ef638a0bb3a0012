"""Upstream timeouts for forwarded flows: a deadline for the answer's headers, a limit on body stalls.

mitmproxy 11 has no upstream read timeout of its own (only a 600 s idle timeout per client
connection), so a registry that accepts the connection and then says nothing would hold a client
for ten minutes. This addon watches every flow the mirror forwards:

- headers: connect, TLS and the upstream's status line and headers must arrive within
  `timeouts.headers`; otherwise the client gets a 504 OCI error naming the registry.
- body_stall: once the answer started, the body may pause at most `timeouts.body_stall`. A
  streamed body (blobs) is then cut: the client sees a broken transfer, never a complete-looking
  one. A small buffered answer (manifests) must arrive whole within that time; nothing has
  reached the client yet, so it gets the 504.

NOTE: mitmproxy 11.0.2 has no API to abort a flow in transit (`Flow.kill()` only works between
hooks, mitmproxy#4711). Closing the server connection through the proxy core's connection handler
is exactly what mitmproxy's own `CloseConnection` command does; the HTTP layer then fails the
flow, the `error` hook runs, and `handling.handle_error` renders the error stored here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

from mitmproxy import ctx, http

from .context import RequestContext, get_context
from .errors import UpstreamError
from .hardening_config import TimeoutsConfig

log = logging.getLogger("authmirror.timeouts")

RETRY_ABORT_SECONDS = 0.25  # the flow may still be in other addons' hooks, without a connection
ABORTED_KEY = "aborted"  # context.extra: the error the client gets for an aborted flow


class ActivityStream:
    """Wraps a response's stream callable and remembers when the last chunk passed."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.last = time.monotonic()

    def __call__(self, chunk: bytes):
        self.last = time.monotonic()
        return self.inner(chunk) if callable(self.inner) else chunk


def abort_upstream(flow: http.HTTPFlow) -> bool:
    """Close the flow's upstream connection now. False when it has none (yet)."""
    proxyserver = ctx.master.addons.get("proxyserver") if ctx.master else None
    handler = proxyserver.connections.get(flow.client_conn.id) if proxyserver else None
    if handler is None or flow.server_conn not in handler.transports:
        return False
    handler.close_connection(flow.server_conn)
    return True


def timeout_error(context: RequestContext, what: str) -> UpstreamError:
    name = context.registry.name if context.registry else "upstream"
    where = f"blob storage of upstream registry '{name}'" if context.to_storage else f"upstream registry '{name}'"
    return UpstreamError("UNAVAILABLE", f"{where} {what}", status=504, detail={"registry": name})


class UpstreamTimeouts:
    """Addon, added after the main addon: one watchdog task per forwarded flow."""

    def __init__(self, settings: Callable[[], TimeoutsConfig | None]):
        self.settings = settings
        self._watchdogs: dict[str, asyncio.Task] = {}

    def request(self, flow: http.HTTPFlow) -> None:
        context = get_context(flow)
        settings = self.settings()
        if context is None or settings is None or not context.forwarded or flow.response is not None:
            return
        self._watch(flow, self._headers_deadline(flow, context, settings.headers))

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._stop(flow)
        context = get_context(flow)
        settings = self.settings()
        response = flow.response
        if context is None or settings is None or not context.forwarded or response is None:
            return
        activity = ActivityStream(response.stream)
        if response.stream:
            response.stream = activity  # buffered answers keep stream=False: their deadline is fixed
        self._watch(flow, self._stall_watch(flow, context, activity, settings.body_stall))

    def response(self, flow: http.HTTPFlow) -> None:
        self._stop(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._stop(flow)

    def done(self) -> None:
        for task in self._watchdogs.values():
            task.cancel()
        self._watchdogs.clear()

    def _watch(self, flow: http.HTTPFlow, watchdog) -> None:
        self._stop(flow)
        task = asyncio.get_running_loop().create_task(watchdog, name=f"authmirror timeout {flow.id}")
        self._watchdogs[flow.id] = task
        task.add_done_callback(lambda finished: self._forget(flow.id, finished))

    def _forget(self, flow_id: str, task: asyncio.Task) -> None:
        if self._watchdogs.get(flow_id) is task:
            del self._watchdogs[flow_id]

    def _stop(self, flow: http.HTTPFlow) -> None:
        task = self._watchdogs.pop(flow.id, None)
        if task is not None:
            task.cancel()

    async def _headers_deadline(self, flow: http.HTTPFlow, context: RequestContext, seconds: float) -> None:
        await asyncio.sleep(seconds)
        error = timeout_error(context, f"did not answer within {seconds:g} s")
        await self._abort(flow, context, error, lambda: flow.response is None)

    async def _stall_watch(self, flow: http.HTTPFlow, context: RequestContext, activity: ActivityStream, seconds: float) -> None:
        while (idle := time.monotonic() - activity.last) < seconds:
            await asyncio.sleep(seconds - idle)
        error = timeout_error(context, f"stopped sending the answer for {seconds:g} s")
        await self._abort(flow, context, error, lambda: True)

    async def _abort(self, flow: http.HTTPFlow, context: RequestContext, error: UpstreamError, still: Callable[[], bool]) -> None:
        while flow.live and flow.error is None and still():
            context.extra[ABORTED_KEY] = error  # set first: the error hook may run as soon as we close
            if abort_upstream(flow):
                log.warning("%s: %s; aborting the upstream connection", context.request_id, error.message)
                return
            del context.extra[ABORTED_KEY]
            await asyncio.sleep(RETRY_ABORT_SECONDS)
