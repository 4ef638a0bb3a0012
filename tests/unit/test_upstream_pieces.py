import asyncio
import json

import pytest

from authmirror.config import parse_registry_entry
from authmirror.errors import sanitize_upstream_text, translate_upstream_error
from authmirror.upstreams import make_upstream
from authmirror.tags import page_tags, parse_paging
from authmirror.upstreams.challenge import parse_challenges, pick_challenge
from authmirror.upstreams.tokencache import MIN_LIFETIME, TokenCache
from tests.support.processes import free_port


def test_parse_challenges():
    [c] = parse_challenges(['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"'])
    assert (c.scheme, c.realm, c.service) == ("bearer", "https://auth.docker.io/token", "registry.docker.io")
    both = parse_challenges(['Basic realm="x", Bearer realm="https://r/token",service=s'])
    assert [c.scheme for c in both] == ["basic", "bearer"]
    assert pick_challenge(['Basic realm="x", Bearer realm="https://r/token"']).scheme == "bearer"
    assert pick_challenge(["garbage ==="]) is None or pick_challenge(["garbage ==="]).scheme == "garbage"


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


async def test_token_cache_single_flight_floor_and_refresh():
    clock = Clock()
    cache = TokenCache(clock)
    calls = []

    async def fetch():
        calls.append(1)
        await asyncio.sleep(0.01)
        return f"t{len(calls)}", -5.0  # a past expiry, as moto's ECR gives: must not loop

    results = await asyncio.gather(*[cache.get("k", fetch) for _ in range(20)])
    assert {r.value for r in results} == {"t1"} and len(calls) == 1
    clock.now += MIN_LIFETIME * 0.5
    assert (await cache.get("k", fetch)).value == "t1"
    clock.now += MIN_LIFETIME
    assert (await cache.get("k", fetch)).value == "t2"
    cache.invalidate("k", "stale-value")  # only forgets the token it names
    assert (await cache.get("k", fetch)).value == "t2"
    cache.invalidate("k")
    assert (await cache.get("k", fetch)).value == "t3"


async def test_token_cache_failure_is_shared_and_not_cached():
    cache = TokenCache(Clock())

    async def failing():
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")

    results = await asyncio.gather(*[cache.get("k", failing) for _ in range(3)], return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)

    async def ok():
        return "fine", 300

    assert (await cache.get("k", ok)).value == "fine"


def body(code, message):
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


@pytest.mark.parametrize(
    "status, upstream_body, kind, code, client_status, words",
    [
        (401, body("UNAUTHORIZED", "authentication required"), "manifest", "UNAUTHORIZED", 502, "vendor's registry credentials were refused"),
        (403, b"", "blob", "DENIED", 502, "lack pull permission"),
        (404, body("MANIFEST_UNKNOWN", "manifest unknown"), "manifest", "MANIFEST_UNKNOWN", 404, "manifest unknown"),
        (404, body("NAME_UNKNOWN", "repository name not known to registry"), "manifest", "NAME_UNKNOWN", 404, "repository"),
        (404, b"404 page not found", "blob", "BLOB_UNKNOWN", 404, "blob unknown"),
        (429, b"", "manifest", "TOOMANYREQUESTS", 429, "retry after 60 s"),
        (500, b"<html>oops</html>", "blob", "UNAVAILABLE", 502, "failed with HTTP 500"),
        (503, b"", "blob", "UNAVAILABLE", 503, "failed with HTTP 503"),
    ],
)
def test_translate_upstream_error(status, upstream_body, kind, code, client_status, words):
    error = translate_upstream_error(status, upstream_body, registry="vendor", kind=kind, retry_after="60")
    assert (error.code, error.status) == (code, client_status)
    assert words in error.message
    if status == 429:
        assert error.headers == {"Retry-After": "60"}


def test_the_upstreams_own_answer_stays_for_diagnostics_and_never_reaches_clients():
    said = "token for registry.internal:5000/v2/app refused for user vendor with password hunter22"
    error = translate_upstream_error(401, body("UNAUTHORIZED", said), registry="vendor", kind="manifest",
                                     hosts=("registry.internal",), secrets=("hunter22",))
    diagnostics = error.diagnostics
    assert (diagnostics.status, diagnostics.code) == (401, "UNAUTHORIZED")
    assert "registry.internal:5000" in diagnostics.message and "hunter22" not in diagnostics.message
    assert diagnostics.describe().startswith("HTTP 401 UNAUTHORIZED: token for registry.internal:5000")
    rendered = error.body("req1").decode()
    assert "registry.internal" not in rendered and "hunter22" not in rendered and "diagnostics" not in rendered
    assert "registry.internal" not in repr(error)
    plain = translate_upstream_error(502, b"<html>bad gateway at lb.internal</html>", registry="vendor", kind="blob")
    assert plain.diagnostics.message == "<html>bad gateway at lb.internal</html>" and plain.diagnostics.code == ""


def test_an_upstream_that_never_answers_says_why_in_its_diagnostics(tmp_path):
    registry = parse_registry_entry("acme", 0, {"name": "dead", "type": "anonymous", "url": f"http://127.0.0.1:{free_port()}"}, tmp_path)
    upstream = make_upstream(registry, timeout=2)
    with pytest.raises(Exception) as caught:
        asyncio.run(upstream.challenge())
    error = caught.value
    assert (error.code, error.status) == ("UNAVAILABLE", 502) and "could not reach it" in error.message
    assert (error.diagnostics.network, error.diagnostics.status) == ("connect", None)


def test_upstream_text_is_scrubbed_of_hosts_urls_and_secrets():
    text = "token for https://123.dkr.ecr.us-east-1.amazonaws.com/v2/app failed at registry.internal:5000 with key hunter22"
    clean = sanitize_upstream_text(text, secrets=("hunter22",), hosts=("registry.internal",))
    assert "amazonaws" not in clean and "registry.internal" not in clean and "hunter22" not in clean


@pytest.mark.parametrize(
    "n, last, page, more",
    [
        (None, None, ["1.0", "1.1", "2.0", "latest"], None),
        (2, None, ["1.0", "1.1"], "1.1"),
        (2, "1.1", ["2.0", "latest"], None),
        (10, "2.0", ["latest"], None),
        (0, None, [], None),
    ],
)
def test_page_tags(n, last, page, more):
    assert page_tags(["latest", "1.1", "2.0", "1.0", "1.0"], n, last) == (page, more)


def test_paging_parameters():
    assert parse_paging("n=5&last=1.0") == (5, "1.0")
    with pytest.raises(Exception):
        parse_paging("n=-1")
