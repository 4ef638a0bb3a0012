"""Addon tests: the real addon in mitmproxy's test context, an injected transport as upstream."""

from __future__ import annotations

import base64
import contextlib
import json
from email.message import Message
from pathlib import Path

import pytest
import yaml
from mitmproxy import http
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons, tflow, tutils

from authmirror.addon import AuthMirror
from authmirror.httpclient import HttpResponse

LICENSES = [
    {"id": "valid-license-0001", "customer": "Globex", "apps": ["acme"]},
    {"id": "expired-license-01", "customer": "Hooli", "apps": ["acme"], "expires": "2020-01-31"},
    {"id": "revoked-license-01", "customer": "Umbrella", "apps": ["acme"], "revoked": True},
    {"id": "beta-only-license", "customer": "Soylent", "apps": ["beta"]},
    {"id": "limited-license-01", "customer": "Stark", "apps": ["acme"], "images": ["app", "tools/*"]},
]
VALID = "valid-license-0001"
UPSTREAM_PASSWORD = "vendor-upstream-secret"


def write_config(tmp_path: Path, **overrides) -> Path:
    (tmp_path / "licenses.yaml").write_text(yaml.safe_dump({"licenses": LICENSES}))
    config = {
        "listen": "127.0.0.1:5999",
        "public_url": "http://mirror.test:5999",
        "licenses": {"file": "licenses.yaml"},
        "pull_log": "pulls.jsonl",
        "domains": {"registry.acme.example": "acme"},
        "apps": {
            "acme": {"registries": [{"name": "vendor", "type": "basic", "url": "http://upstream.test:5001", "username": "vendor", "password": UPSTREAM_PASSWORD}]},
            "beta": {"registries": [{"name": "pub", "type": "anonymous", "url": "https://public.test"}]},
        },
        **overrides,
    }
    path = tmp_path / "authmirror.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def basic(password: str, user: str = "customer") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def make_flow(path: str, method: str = "GET", authorization: str | None = None, host: str = "mirror.test:5999", content: bytes = b"", headers: dict | None = None) -> http.HTTPFlow:
    all_headers = http.Headers(host=host, **(headers or {}))
    if authorization:
        all_headers["Authorization"] = authorization
    request = tutils.treq(method=method.encode(), path=path.encode(), host="127.0.0.1", port=9, headers=all_headers, content=content)
    return tflow.tflow(req=request)


class FakeUpstream:
    """An injected transport standing in for the upstream registry's own-client calls."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict]] = []
        self.routes: dict[str, tuple[int, dict, bytes]] = {"/v2/": (401, {"WWW-Authenticate": 'Basic realm="x"'}, b"")}

    async def __call__(self, method, url, headers=None, body=None, **kwargs):
        self.calls.append((method, url, dict(headers or {})))
        path = "/" + url.split("/", 3)[3]
        route = self.routes.get(path) or self.routes.get(path.split("?", 1)[0])
        status, response_headers, response_body = route or self.routes.get(path, (404, {}, b'{"errors":[{"code":"NAME_UNKNOWN","message":"nope"}]}'))
        message = Message()
        for k, v in response_headers.items():
            message[k] = v
        return HttpResponse(status, message, response_body)


@contextlib.contextmanager
def loaded_addon(config_path: Path):
    """The addon in mitmproxy's test context, configured with `config_path`."""
    addon = AuthMirror()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, authmirror_config=str(config_path))
        fake = FakeUpstream()
        for upstream in addon.mirror.upstreams.values():
            upstream.http = fake
        yield addon, tctx, fake


@pytest.fixture
def config_path(tmp_path):
    return write_config(tmp_path)


@pytest.fixture
def addon_ctx(config_path):
    with loaded_addon(config_path) as loaded:
        yield loaded


async def run_request(addon: AuthMirror, flow: http.HTTPFlow) -> http.HTTPFlow:
    """requestheaders, request, then the injector, as mitmproxy would run them."""
    addon.requestheaders(flow)
    await addon.request(flow)
    addon.injector.request(flow)
    return flow


def errors_of(flow: http.HTTPFlow) -> list[dict]:
    return json.loads(flow.response.content)["errors"]


def events(config_path: Path) -> list[dict]:
    log = config_path.parent / "pulls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
