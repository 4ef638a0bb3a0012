"""TLS for real: a docker-registry serving https with a certificate from a private CA.

Upstream verification is on by default, for the mirror's own calls (auth discovery) and for flows
mitmproxy forwards (a blob redirected to https storage); `tls.upstream_ca_bundle` makes both
trust the CA. The listener serves https with `tls.certificate`/`tls.key`; skopeo pulls over it.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request

import pytest

from tests.support import leakcheck, processes
from tests.support.certs import TestCA
from tests.support.faultserver import FaultServer
from tests.support.http import basic, request

from .conftest import LICENSES, MIRROR_ENV, license_entries

pytestmark = pytest.mark.e2e

AUTH = basic(LICENSES["valid"])


class Setup:
    pass


@pytest.fixture(scope="module")
def tls_setup(workdir, upstream, built):
    setup = Setup()
    setup.ca = TestCA(workdir / "tls-ca")
    server = setup.ca.issue("registry")
    setup.registry = processes.start_registry(workdir / "tls-upstream", users={}, tls=(server.certificate, server.key))
    processes.push(built.single.layout, "1.0", setup.registry, "vendor/app")
    setup.redirector = FaultServer(upstream.url).start()
    setup.plain = start_tls_mirror(workdir, setup, "tls-default-mirror", processes.free_port())  # no tls section
    listener = setup.ca.issue("mirror")
    port = processes.free_port()
    setup.trusting = start_tls_mirror(
        workdir, setup, "tls-ca-mirror", port,
        public_url=f"https://127.0.0.1:{port}",
        tls={"certificate": str(listener.certificate), "key": str(listener.key), "upstream_ca_bundle": str(setup.ca.path)},
    )
    setup.client_context = ssl.create_default_context(cafile=str(setup.ca.path))
    yield setup
    for process in (setup.plain, setup.trusting, setup.registry):
        process.stop()
    setup.redirector.stop()


def start_tls_mirror(workdir, setup, name: str, port: int, **overrides):
    apps = {"acme": {"registries": [
        {"name": "secure", "type": "anonymous", "url": setup.registry.url},
        # blobs redirected to https storage on loopback (explicitly allowed): mitmproxy's own TLS checks
        {"name": "redir", "type": "basic", "url": setup.redirector.url, "username": "vendor", "password": "env:E2E_VENDOR_PASS", "redirect_hosts": ["127.0.0.1"]},
    ]}}
    config = processes.write_mirror_config(workdir / name, port, apps, license_entries(), **overrides)
    return processes.start_mirror(workdir / name, config, port, env=MIRROR_ENV)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def https_get(setup, path: str, headers: dict) -> tuple[int, dict, bytes]:
    """GET over https from the mirror, trusting the test CA, following nothing."""
    req = urllib.request.Request(f"https://127.0.0.1:{setup.trusting.port}{path}", headers=headers)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=setup.client_context), _NoRedirect())
    try:
        with opener.open(req, timeout=30) as response:
            status, headers, body = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        status, headers, body = e.code, dict(e.headers), e.read()
    leakcheck.record_answer(req.full_url, status, headers, body)
    return status, headers, body


def test_untrusted_upstream_certificate_is_refused_by_default(tls_setup):
    before = len(tls_setup.plain.pull_events())
    answer = request("GET", f"{tls_setup.plain.url}/v2/proxy/acme/secure/vendor/app/manifests/1.0", AUTH)
    assert answer.status == 502
    [error] = answer.errors()
    assert error["code"] == "UNAVAILABLE" and "upstream registry 'secure'" in error["message"] and "TLS" in error["message"]
    assert str(tls_setup.registry.port) not in answer.body.decode()
    assert tls_setup.plain.pull_events()[before:][-1]["status"] == 502


def test_forwarded_flow_to_untrusted_https_storage_is_refused(tls_setup, built):
    digest = built.single.layers[2].digest
    tls_setup.redirector.clear()
    tls_setup.redirector.add(r"/blobs/", status=307, headers={"Location": f"{tls_setup.registry.url}/v2/vendor/app/blobs/{digest}"})
    first = request("GET", f"{tls_setup.plain.url}/v2/proxy/acme/redir/vendor/app/blobs/{digest}", AUTH)
    assert first.status == 307
    second = request("GET", f"{tls_setup.plain.url}{first.headers['Location']}", AUTH)
    assert second.status == 502
    [error] = second.errors()
    assert "blob storage of upstream registry 'redir'" in error["message"] and "TLS" in error["message"]
    assert str(tls_setup.registry.port) not in second.body.decode()


def test_with_the_ca_bundle_both_paths_work_and_the_listener_serves_https(tls_setup, built, tmp_path):
    digest = built.single.layers[2].digest
    tls_setup.redirector.clear()
    tls_setup.redirector.add(r"/blobs/", status=307, headers={"Location": f"{tls_setup.registry.url}/v2/vendor/app/blobs/{digest}"})
    status, headers, _ = https_get(tls_setup, f"/v2/proxy/acme/redir/vendor/app/blobs/{digest}", AUTH)
    assert status == 307
    status, _, body = https_get(tls_setup, headers["Location"], AUTH)
    expected = (built.single.layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    assert status == 200 and body == expected, "mitmproxy trusted the CA for the forwarded flow"
    tls_setup.redirector.clear()

    # skopeo over https, verifying the mirror's certificate with the CA (no --src-tls-verify=false)
    processes.clear_skopeo_cache()
    processes.skopeo(
        "copy", "--src-cert-dir", str(tls_setup.ca.trust_dir), "--src-creds", f"c:{LICENSES['valid']}",
        f"docker://127.0.0.1:{tls_setup.trusting.port}/proxy/acme/secure/vendor/app:1.0", f"oci:{tmp_path}/out:1.0",
    )
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["manifests"][0]["digest"] == built.single.manifest_digest
    assert {l.digest.split(":")[1] for l in built.single.layers} <= {p.name for p in (tmp_path / "out" / "blobs" / "sha256").iterdir()}
    # the token realm the client was sent to is the https one
    status, headers, _ = https_get(tls_setup, "/v2/", {})
    assert status == 401 and headers["WWW-Authenticate"].startswith(f'Bearer realm="https://127.0.0.1:{tls_setup.trusting.port}/v2/token"')


def test_tls_listener_refuses_plain_http_but_answers_health_checks(tls_setup):
    answer = request("GET", f"http://127.0.0.1:{tls_setup.trusting.port}/v2/proxy/acme/secure/vendor/app/manifests/1.0", AUTH)
    assert answer.status == 400 and "only accepts https" in answer.errors()[0]["message"]
    assert request("GET", f"http://127.0.0.1:{tls_setup.trusting.port}/healthz").status == 200


def test_tls_listener_certificate_is_the_configured_one(tls_setup):
    with pytest.raises(urllib.error.URLError):  # a client without the CA does not trust it
        urllib.request.urlopen(f"https://127.0.0.1:{tls_setup.trusting.port}/healthz", context=ssl.create_default_context(), timeout=10)
    status, _, body = https_get(tls_setup, "/healthz", {})
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_listener_without_certificate_speaks_plain_http_only(tls_setup):
    """No tls.certificate: a TLS handshake fails at once (no certificate from mitmproxy's own CA),
    so clients that try https first fall back to http, where the mirror answers."""
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(f"https://127.0.0.1:{tls_setup.plain.port}/healthz", context=insecure, timeout=10)
    assert request("GET", f"{tls_setup.plain.url}/healthz").status == 200
    assert "plain http" in tls_setup.plain.log()
