"""Secrets stay secret at every log level: a mirror run with -v, debug verbosity and whole-flow
dumps (flow_detail=4), saving flows with -w, pulled through htpasswd and token-auth upstreams,
with refusals and upstream failures on the way. (Every other e2e test checks its own answers,
logs and pull events too: tests/support/leakcheck.py.)"""

from __future__ import annotations

import subprocess
import urllib.parse

import pytest

from tests.support import leakcheck, processes
from tests.support.http import basic, request

from .conftest import LICENSES, MIRROR_ENV, SECRETS, license_entries, mirror_apps

pytestmark = pytest.mark.e2e

IMAGE = "proxy/acme/{registry}/vendor/app"


def test_debug_logs_flow_dumps_and_saved_flows_hold_no_secrets(workdir, upstream, token_upstream, built, tmp_path):
    _, token_server = token_upstream
    port = processes.free_port()
    config = processes.write_mirror_config(workdir / "debug-mirror", port, mirror_apps(upstream, token_upstream), license_entries())
    flows = workdir / "debug-mirror" / "flows.mitm"
    mirror = processes.start_mirror(
        workdir / "debug-mirror", config, port, env=MIRROR_ENV,
        extra_args=["-v", "--set", "flow_detail=4", "-w", str(flows)],  # start_mirror sets termlog_verbosity=debug
    )
    leakcheck.allow_mirror_tokens_in(mirror)
    tokens_before = len(token_server.requests)
    try:
        for registry in ("vendor", "tokenreg"):
            processes.clear_skopeo_cache()
            processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"c:{LICENSES['valid']}", f"docker://{mirror.host}/{IMAGE.format(registry=registry)}:1.0", f"oci:{tmp_path}/{registry}:1.0")
        for registry in ("wrongpass", "dead"):
            assert request("GET", f"{mirror.url}/v2/{IMAGE.format(registry=registry)}/manifests/1.0", basic(LICENSES["valid"])).status == 502
        for license in ("no-such-license-123", LICENSES["expired"], LICENSES["revoked"]):
            assert request("GET", f"{mirror.url}/v2/token?scope=repository:{IMAGE.format(registry='vendor')}:pull", basic(license)).status == 401
        form = urllib.parse.urlencode({"grant_type": "password", "username": "u", "password": LICENSES["other"], "scope": f"repository:{IMAGE.format(registry='vendor')}:pull"})
        assert request("POST", f"{mirror.url}/v2/token", {"Content-Type": "application/x-www-form-urlencoded"}, form.encode()).status == 200
    finally:
        mirror.stop()  # -w flushes on exit

    upstream_tokens = [s for s in leakcheck.SECRETS if s.startswith("eyJ")]
    assert len(token_server.requests) > tokens_before and upstream_tokens, "the token upstream really issued tokens"
    log, saved = mirror.log(), flows.read_bytes().decode("latin-1")
    assert "<redacted by authmirror>" in log and "closing transports" in log, "whole flows and debug lines were logged"
    assert "tokenreg" in saved and len(saved) > 10_000, "flows were saved"
    forbidden = {s for value in (*SECRETS, *upstream_tokens) for s in (value, *leakcheck.base64_forms(value))}
    for text, where in ((log, "log"), (saved, "saved flows"), ("\n".join(map(str, mirror.pull_events())), "pull events")):
        leaked = [value[:8] for value in forbidden if value in text]
        assert not leaked, f"secrets in the {where}: {leaked}"


def test_proxy_debug_is_refused_because_it_logs_raw_traffic(tmp_path, workdir, upstream, token_upstream):
    port = processes.free_port()
    config = processes.write_mirror_config(tmp_path, port, mirror_apps(upstream, token_upstream), license_entries())
    result = subprocess.run(
        [processes.mitmdump_binary(), "-s", str(processes.REPO_ROOT / "addon" / "proxy.py"), "--set", f"authmirror_config={config}", "--set", f"confdir={tmp_path}", "--set", "proxy_debug=true"],
        capture_output=True, text=True, timeout=60, env={**__import__("os").environ, **MIRROR_ENV},
    )
    assert result.returncode != 0 and "proxy_debug logs raw traffic" in result.stdout + result.stderr
