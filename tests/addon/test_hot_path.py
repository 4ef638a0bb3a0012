"""The per-request path stays cheap: config and licenses are not parsed again, a client token's
signature is verified once, the upstream's auth is discovered once, and each pull event is one
line written before the answer leaves."""

import json

import jwt
import yaml

from .conftest import VALID, basic, events, make_flow, run_request
from .test_metrics import pull_manifest


def counting(monkeypatch, module, name: str, counts: dict) -> None:
    original = getattr(module, name)

    def counted(*args, **kwargs):
        counts[name] = counts.get(name, 0) + 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)


async def test_repeated_pulls_parse_and_verify_nothing_again(addon_ctx, config_path, monkeypatch):
    addon, _, fake = addon_ctx
    token_flow = make_flow("/v2/token?service=authmirror&scope=repository:proxy/acme/vendor/app:pull", authorization=basic(VALID))
    await run_request(addon, token_flow)
    bearer = "Bearer " + json.loads(token_flow.response.content)["token"]
    await pull_manifest(addon, authorization=bearer)  # first use: discovery, signature check
    discoveries = sum(url.endswith("/v2/") for _, url, _ in fake.calls)

    counts: dict[str, int] = {}
    counting(monkeypatch, yaml, "safe_load", counts)
    counting(monkeypatch, jwt, "decode", counts)
    for _ in range(25):
        await pull_manifest(addon, authorization=bearer)
        await pull_manifest(addon, authorization=basic(VALID))

    assert counts == {}, "config, licenses or token signatures were parsed again per request"
    assert sum(url.endswith("/v2/") for _, url, _ in fake.calls) == discoveries == 1
    manifest_events = [e for e in events(config_path) if e["action"] == "manifest"]
    assert len(manifest_events) == 51 and len({e["request_id"] for e in manifest_events}) == 51
