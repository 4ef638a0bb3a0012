"""The request pipeline: what the addon's hooks do, as plain functions of (mirror, flow, context).

request:          route -> local answer | authenticate -> authorize -> resolve upstream -> forward
responseheaders:  redact, then pass/stream the upstream's answer or replace it (errors, redirects)
response / error: one pull event per request, and a note on the flow for mitmweb
"""

from __future__ import annotations

import logging
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from mitmproxy import http

from . import answers, metrics, mitm_errors
from .clientauth import ClientCredential, parse_authorization
from .context import RequestContext, new_context, summarize
from .errors import RegistryError, UpstreamError
from .forwarding import (
    MAX_STORAGE_HOPS,
    REDACTED,
    redirect_loop_error,
    point_at,
    redact_request,
    redirect_client,
    replace_response,
    replace_with_error,
    scrub_response_headers,
    sealed_redirect_url,
    storage_location,
    stream_or_buffer,
    upstream_path,
)
from .hints import log_refusal
from .mirror import Mirror
from .pulllog import PullEvent, utc_timestamp
from .ratelimit import client_address, presents_license
from .redirects import QUERY_PARAM, check_storage_url, same_origin
from .referrers import referrers
from .routing import Route, parse_route, request_domain, split_name, split_path, validate_name
from .tags import next_link, page_tags, parse_paging, upstream_tags
from .timeouts import ABORTED_KEY
from .tokens import bearer_challenge, parse_scope
from .upstreams.ratelimit import parse_rate_limit

log = logging.getLogger("authmirror")

READ_METHODS = ("GET", "HEAD")
ACTIONS = {"token": "token", "catalog": "catalog", "manifest": "manifest", "blob": "blob", "tags": "tags", "referrers": "referrers", "upload": "blob"}
# Storage answers carry provider headers (x-amz-*, x-goog-*): only these reach the client.
STORAGE_HEADERS = ("Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified", "Cache-Control")

Inject = Callable[[http.HTTPFlow, str], None]


# -- requestheaders ---------------------------------------------------------------------------


def capture_credentials(flow: http.HTTPFlow) -> RequestContext:
    """Take the client's Authorization off the flow before any other addon or UI sees it."""
    context = new_context(flow)
    raw = flow.request.headers.get("Authorization")
    if raw is not None:
        try:
            context.credential = parse_authorization(raw)
        except RegistryError as e:
            context.extra["credential_error"] = e
        flow.request.headers["Authorization"] = f"{raw.split(' ', 1)[0][:20]} {REDACTED}"
    return context


# -- request ----------------------------------------------------------------------------------


async def handle_request(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext, inject: Inject) -> None:
    """Answer locally (flow.response set) or point the flow at the upstream."""
    request = flow.request
    path, query = split_path(request.path)
    domains = mirror.config.domains
    domain = request_domain(request.host_header or "", domains)
    route = parse_route(path, request.host_header or "", domains)
    context.route = route
    context.action = ACTIONS.get(route.kind, "")
    if presents_license(context.credential.scheme, route.kind):
        mirror.limiter.check(client_address(flow))

    if route.kind == "health":
        return answer(flow, context, {"status": "ok"})
    if route.kind == "ready":
        return answer_ready(mirror, flow, context)
    if route.kind == "metrics":
        return metrics.answer(mirror, flow, context)
    if route.kind == "token":
        return answer_token(mirror, flow, context, query, domain)
    if request.method not in READ_METHODS or route.kind == "upload":
        raise RegistryError("UNSUPPORTED", "authmirror is a read-only mirror: push and delete are not supported", status=405)
    if route.kind == "blob" and QUERY_PARAM in parse_qs(query):
        return await follow_storage(mirror, flow, context, query)

    identity = authenticate(mirror, context, domain, route.name if route.is_image else None)
    context.license = identity.license
    if route.kind == "base":
        return answer(flow, context, {})
    if route.kind == "catalog":
        return answer_catalog(mirror, flow, context)

    mirror.authenticator.authorize(identity, route.app, route.repository, route.name)
    registry, upstream = mirror.registry_for(route)
    context.registry, context.upstream = registry, upstream
    # The cache is asked only now: after the license check and entitlement, for this repository.
    if mirror.cache is not None and await mirror.cache.lookup(flow, context):
        return None

    if route.kind == "tags":
        return await answer_tags(flow, context, query)
    if route.kind == "referrers":
        body, headers = await referrers(upstream, route.repository, route.reference, query)
        flow.response = answers.make(request, 200, body, context.request_id, headers, headers["Content-Type"])
        return None

    auth = await upstream.authorization(route.repository)
    context.auth = auth
    url = registry.origin + upstream_path(upstream.upstream_repository(route.repository), route.kind, route.reference)
    point_at(request, url)
    if auth.header:
        inject(flow, auth.header)
    context.forwarded = True
    return None


def answer(flow: http.HTTPFlow, context: RequestContext, data: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
    flow.response = answers.json_answer(flow.request, data, context.request_id, status, headers)


def answer_ready(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext) -> None:
    answer(
        flow,
        context,
        {
            "status": "ready",
            "licenses": len(mirror.licenses.licenses),
            "licenses_error": mirror.licenses.last_error,
            "registries": len(mirror.upstreams),
        },
    )


def authenticate(mirror: Mirror, context: RequestContext, domain: str, scope_name: str | None):
    """The client's identity, or a 401 that tells the client where to get a token."""
    scope = f"repository:{scope_name}:pull" if scope_name else None
    challenge = {"WWW-Authenticate": bearer_challenge(mirror.realm(domain), scope)}
    credential_error = context.extra.get("credential_error")
    try:
        if credential_error is not None:
            raise credential_error
        identity = mirror.authenticator.identify(context.credential)
    except RegistryError as e:
        if e.status == 401:
            e.headers = {**(e.headers or {}), **challenge}
        raise
    if identity is None:
        raise RegistryError("UNAUTHORIZED", "authentication required: log in with your license ID as password", headers=challenge)
    return identity


def answer_token(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext, query: str, domain: str) -> None:
    request = flow.request
    oauth = request.method == "POST"
    if oauth:
        form = request.urlencoded_form
        grant_type = form.get("grant_type", "")
        scopes = " ".join(form.get_all("scope")).split()
        if grant_type != "password":
            error = RegistryError("UNSUPPORTED", f"grant_type {grant_type[:40]!r} is not supported; use password", status=400)
            error.detail = {"error": "unsupported_grant_type"}
            raise error
        credential = ClientCredential("basic", form.get("username", ""), form.get("password", ""))
        # The license travelled in the form: keep it out of the flow from here on.
        if "password" in form:
            form["password"] = REDACTED
            request.urlencoded_form = form
        if not credential.secret:
            raise RegistryError("UNAUTHORIZED", "token requests need a password: your license ID")
    elif request.method == "GET":
        params = parse_qs(query)
        scopes = [s for value in params.get("scope", []) for s in value.split()]
        credential = context.credential
        if "credential_error" in context.extra:
            raise context.extra["credential_error"]
    else:
        raise RegistryError("UNSUPPORTED", "the token endpoint takes GET or POST", status=405)
    domain_app = mirror.config.domains.get(domain, "")
    context.route = token_route(scopes, domain_app, domain)
    try:
        token, context.license = mirror.authenticator.issue_token(credential, scopes, domain_app)
    except RegistryError as e:
        if oauth:
            e.detail = {**(e.detail or {}), "error": "invalid_grant"}
        raise
    if oauth:
        token["scope"] = " ".join(scopes)
    answer(flow, context, token, headers={"Cache-Control": "no-store"})


def token_route(scopes: list[str], domain_app: str, domain: str) -> Route:
    """For the pull event: which image a token request was about (its first repository scope)."""
    for text in scopes:
        scope = parse_scope(text)
        if scope and scope.type == "repository":
            try:
                validate_name(scope.name)
                app, registry, repository = split_name(scope.name, domain_app)
            except RegistryError:
                break
            return Route("token", scope.name, app, registry, repository, "", domain)
    return Route("token")


def answer_catalog(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext) -> None:
    """The images this license names literally (the upstream's catalog would show other apps' images)."""
    license = context.license
    assert license is not None
    repositories = []
    for app_name in sorted(license.apps):
        app = mirror.config.apps.get(app_name)
        for registry in app.registries if app else ():
            for pattern in license.images:
                if not any(c in pattern for c in "*?["):
                    repositories.append(f"proxy/{app_name}/{registry.name}/{pattern}")
    answer(flow, context, {"repositories": sorted(repositories)})


async def answer_tags(flow: http.HTTPFlow, context: RequestContext, query: str) -> None:
    route, upstream = context.route, context.upstream
    assert route is not None and upstream is not None
    n, last = parse_paging(query)
    page, more_after = page_tags(await upstream_tags(upstream, route.repository), n, last)
    headers = {}
    if more_after is not None and n is not None:
        headers["Link"] = next_link(route.name, n, more_after)
    answer(flow, context, {"name": route.name, "tags": page}, headers=headers)


async def follow_storage(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext, query: str) -> None:
    """Second leg of `blob_redirects: follow`: fetch the sealed storage URL, without vendor credentials."""
    route = context.route
    assert route is not None
    url, sealed = mirror.sealer.unseal(parse_qs(query)[QUERY_PARAM][0])
    if sealed.get("name") != route.name or sealed.get("ref") != route.reference:
        raise RegistryError("DENIED", "blob redirect does not match this blob")
    registry, upstream = mirror.registry_for(route)
    context.registry, context.upstream = registry, upstream
    context.extra.update(license=sealed.get("lic"), customer=sealed.get("cust"), hops=sealed.get("hops", 1))
    await check_storage_url(url, registry)
    point_at(flow.request, url)
    mirror.allow_storage(flow.request.host, flow.request.port)
    context.forwarded = True
    context.to_storage = True


# -- responseheaders --------------------------------------------------------------------------


def handle_responseheaders(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext) -> None:
    if not context.forwarded:
        return
    if mirror.cache is not None and mirror.cache.answer_headers(flow, context):
        return
    metrics.upstream_answered(context)
    redact_request(flow.request)
    response = flow.response
    assert response is not None and context.upstream is not None and context.registry is not None
    status = response.status_code
    if context.to_storage:
        return storage_answer(mirror, flow, context)
    context.extra["ratelimit"] = parse_rate_limit(response.headers)
    if status == 401 and context.auth is not None and context.upstream.refused(context.auth):
        # A cached upstream token went stale: the client retries the same URL and we fetch a new one.
        return redirect_client(flow, context, context.client_path)
    if status in (401, 403):
        repository = context.upstream.upstream_repository(context.route.repository) if context.route else ""
        log_refusal(context.registry, repository, status, context.request_id)
    if 300 <= status < 400 and status != 304 and "Location" in response.headers:
        return redirect_blob(mirror, flow, context, storage_location(response, flow.request.url) or "")
    if status >= 300 and status != 304:
        return replace_with_error(flow, context, status, response.headers.get("Retry-After"))
    context.digest = response.headers.get("Docker-Content-Digest")
    scrub_response_headers(response, context)
    stream_or_buffer(flow, context)
    if mirror.cache is not None:
        mirror.cache.tee(flow, context)


def redirect_blob(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext, location: str) -> None:
    """The upstream sent the blob elsewhere: seal it for the mirror (follow), or pass it (pass)."""
    registry = context.registry
    assert registry is not None and context.route is not None
    hops = int(context.extra.get("hops", 0))
    if hops >= MAX_STORAGE_HOPS:
        return replace_error(flow, context, redirect_loop_error(registry.name))
    if mirror.config.blob_redirects == "pass" and urlsplit(location).hostname and not same_origin(location, registry):
        # Bytes bypass the mirror; the client goes to storage with the presigned URL.
        return redirect_client(flow, context, location)
    license = context.license
    sealed = {
        "name": context.route.name,
        "ref": context.route.reference,
        "hops": hops + 1,
        "lic": license.fingerprint if license else context.extra.get("license"),
        "cust": license.customer if license else context.extra.get("customer"),
    }
    redirect_client(flow, context, sealed_redirect_url(context, mirror.sealer.seal(location, sealed)))


def storage_answer(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext) -> None:
    response = flow.response
    assert response is not None and context.registry is not None and context.route is not None
    status = response.status_code
    if 300 <= status < 400 and "Location" in response.headers:
        return redirect_blob(mirror, flow, context, storage_location(response, flow.request.url) or "")
    if status >= 300:
        error = UpstreamError(
            "UNAVAILABLE",
            f"blob storage of upstream registry '{context.registry.name}' answered {status}",
            status=502,
            detail={"registry": context.registry.name, "upstream_status": status},
        )
        return replace_error(flow, context, error)
    kept = {name: response.headers[name] for name in STORAGE_HEADERS if name in response.headers}
    response.headers.clear()
    response.headers.update(kept)
    response.headers["Docker-Content-Digest"] = context.route.reference
    response.headers["X-Request-Id"] = context.request_id
    context.digest = context.route.reference
    stream_or_buffer(flow, context)
    if mirror.cache is not None:
        mirror.cache.tee(flow, context)


def replace_error(flow: http.HTTPFlow, context: RequestContext, error: RegistryError) -> None:
    context.error_code, context.error_message = error.code, error.message
    replace_response(flow, context, error.status, dict(error.headers or {}), lambda _: error.body(context.request_id))


# -- response / error -------------------------------------------------------------------------


def handle_response(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext) -> None:
    response = flow.response
    assert response is not None
    replacement = context.replacement
    if replacement is not None:
        body = replacement.finish()
        if replacement.send_body and not context.streamed and not response.raw_content:
            # The upstream answer had no body, so the stream never ran: send ours now.
            response.content = body
        context.bytes = len(body) if replacement.send_body else 0
    elif not context.streamed and flow.request.method != "HEAD":
        context.bytes = len(response.raw_content or b"")
    if mirror.cache is not None:
        mirror.cache.response(flow, context)
    finish(mirror, flow, context, context.status or response.status_code)


def handle_error(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext) -> None:
    if context.forwarded:
        redact_request(flow.request)
    message = flow.error.msg if flow.error else ""
    registry_name = context.registry.name if context.registry else "upstream"
    if context.forwarded and (flow.response is None or not flow.response.stream):
        # Nothing reached the client yet (no answer, or a buffered one): it gets an OCI error.
        error = context.extra.get(ABORTED_KEY) or connection_error(registry_name, message, context.to_storage)
        mitm_errors.expect(message, error)
        context.error_code, context.error_message, context.status = error.code, error.message, error.status
    elif context.forwarded:
        # The answer had started: the client sees a broken transfer, never a complete-looking one.
        context.error_code = "UNAVAILABLE"
        context.status = context.status or (flow.response.status_code if flow.response else 502)
        log.warning("%s: transfer from upstream registry '%s' broke after %d bytes: %s", context.request_id, registry_name, context.bytes, message)
    else:
        context.error_code = context.error_code or "CANCELLED"
        context.status = context.status or 499
    if mirror.cache is not None:
        mirror.cache.error(flow, context)
    finish(mirror, flow, context, context.status or 502)


def connection_error(registry_name: str, message: str, storage: bool) -> RegistryError:
    """mitmproxy could not get an answer from upstream: say what happened, never where."""
    lowered = message.lower()
    what = f"blob storage of upstream registry '{registry_name}'" if storage else f"upstream registry '{registry_name}'"
    if "timed out" in lowered or "timeout" in lowered:
        return UpstreamError("UNAVAILABLE", f"{what} did not answer in time", status=504, detail={"registry": registry_name})
    if "refused" in lowered or "errno 111" in lowered:
        reason = "connection refused"
    elif "name or service not known" in lowered or "getaddrinfo" in lowered or "nodename" in lowered:
        reason = "host name not found"
    elif "certificate" in lowered or "tls" in lowered or "ssl" in lowered:
        reason = "TLS handshake failed (certificate not trusted?)"
    elif "disconnect" in lowered or "closed" in lowered or "reset" in lowered:
        reason = "connection closed before an answer"
    else:
        reason = "connection failed"
    return UpstreamError("UNAVAILABLE", f"{what} is unreachable: {reason}", status=502, detail={"registry": registry_name})


def finish(mirror: Mirror, flow: http.HTTPFlow, context: RequestContext, status: int) -> None:
    summarize(flow, context)
    annotate(flow, context, status)
    metrics.request_finished(context, flow.request.method, status)
    if context.action:
        mirror.pull_log.write(pull_event(flow, context, status))


def annotate(flow: http.HTTPFlow, context: RequestContext, status: int) -> None:
    """A one-line note per flow so a vendor watching mitmweb sees who pulls what."""
    route = context.route
    license = context.license
    who = license.customer if license else context.extra.get("customer") or "anonymous"
    what = context.action or (route.kind if route else "request")
    if route and route.is_image:
        what += f" {route.app}/{route.registry}/{route.repository}"
        if route.reference:
            what += f"@{route.reference}" if route.is_digest else f":{route.reference}"
    via = f" via {context.registry.name}" + (" storage" if context.to_storage else "") if context.registry else ""
    result = f" -> {status}" + (f" {context.error_code}" if context.error_code else "")
    flow.comment = f"{who}: {what}{via}{result}"
    if context.error_code and context.error_code not in ("UNAUTHORIZED",):
        flow.marked = ":warning:"


def pull_event(flow: http.HTTPFlow, context: RequestContext, status: int) -> PullEvent:
    route = context.route
    license = context.license
    registry = context.registry
    peer = flow.client_conn.peername
    return PullEvent(
        ts=utc_timestamp(flow.request.timestamp_start),
        request_id=context.request_id,
        license=license.fingerprint if license else context.extra.get("license"),
        customer=license.customer if license else context.extra.get("customer"),
        app=(route.app or None) if route else None,
        registry=registry.name if registry else ((route.registry or None) if route else None),
        upstream=registry.netloc if registry else None,
        repository=(route.repository or None) if route else None,
        reference=(route.reference or None) if route else None,
        digest=context.digest or (route.reference if route and route.is_digest else None),
        action=context.action,
        method=flow.request.method,
        status=status,
        error_code=context.error_code,
        error=context.error_message,
        bytes=context.bytes,
        duration_ms=context.elapsed_ms,
        client_ip=peer[0] if peer else None,
        user_agent=flow.request.headers.get("User-Agent"),
        cache=context.cache,
        ratelimit=context.extra.get("ratelimit"),
    )
