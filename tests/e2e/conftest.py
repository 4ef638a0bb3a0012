"""End-to-end fixtures: a real docker-registry upstream (htpasswd, and token auth), real images
pushed with skopeo, and `mitmdump -s addon/proxy.py` in front. Nothing is skipped: a missing
program fails the run with a message saying how to install it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import images, leakcheck, processes
from tests.support.leakcheck import no_leaks  # noqa: F401 - autouse: every e2e test checks for leaks
from tests.support.tokenserver import TokenServer

VENDOR_PASSWORD = "vendor-secret-Pa55"
TOKEN_VENDOR_PASSWORD = "token-vendor-secret-Pa55"
LICENSES = {
    "valid": "e2e-license-globex-7Hq2",
    "other": "e2e-license-initech-3Kd9",
    "expired": "e2e-license-hooli-0Zx1",
    "revoked": "e2e-license-umbrella-5Rt6",
    "beta": "e2e-license-soylent-8Yu4",
    "limited": "e2e-license-stark-2Wp7",
}


def license_entries() -> list[dict]:
    return [
        {"id": LICENSES["valid"], "customer": "Globex Corp", "apps": ["acme", "beta"]},
        {"id": LICENSES["other"], "customer": "Initech", "apps": ["acme"]},
        {"id": LICENSES["expired"], "customer": "Hooli", "apps": ["acme"], "expires": "2024-01-31"},
        {"id": LICENSES["revoked"], "customer": "Umbrella", "apps": ["acme"], "revoked": True},
        {"id": LICENSES["beta"], "customer": "Soylent", "apps": ["beta"]},
        {"id": LICENSES["limited"], "customer": "Stark", "apps": ["acme"], "images": ["vendor/app"]},
    ]


@dataclass
class Images:
    single: images.BuiltImage
    multi: images.BuiltImage
    other: images.BuiltImage


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    for program in ("docker-registry", "skopeo", "htpasswd"):
        processes.require_binary(program)
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def built(workdir) -> Images:
    layout = workdir / "oci"
    return Images(
        single=images.build_image(layout, "1.0", [300_000, 120_000, 4_000], seed=11),
        multi=images.build_index(layout, "multi", [90_000, 2_000], seed=12),
        other=images.build_image(layout, "other", [50_000], seed=13),
    )


@pytest.fixture(scope="session")
def upstream(workdir, built):
    registry = processes.start_registry(workdir / "upstream", users={"vendor": VENDOR_PASSWORD})
    processes.push(built.single.layout, "1.0", registry, "vendor/app")
    processes.push(built.multi.layout, "multi", registry, "vendor/app", all_platforms=True)
    processes.push(built.other.layout, "other", registry, "vendor/other")
    creds = f"vendor:{VENDOR_PASSWORD}"
    for tag in ("1.1", "1.2", "1.3", "2.0", "latest"):
        processes.skopeo("copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", creds, "--dest-creds", creds, f"docker://{registry.host}/vendor/app:1.0", f"docker://{registry.host}/vendor/app:{tag}")
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def token_upstream(workdir, built):
    server = TokenServer({"tokenvendor": TOKEN_VENDOR_PASSWORD}).start()
    cert = server.write_cert(workdir / "token-cert.pem")
    registry = processes.start_registry(workdir / "token-upstream", users={}, token_auth=server.registry_auth(cert))
    registry.users = {"tokenvendor": TOKEN_VENDOR_PASSWORD}
    processes.push(built.single.layout, "1.0", registry, "vendor/app")
    yield registry, server
    registry.stop()
    server.stop()


def mirror_apps(upstream, token_upstream) -> dict:
    token_registry, _ = token_upstream
    return {
        "acme": {
            "registries": [
                {"name": "vendor", "type": "basic", "url": upstream.url, "username": "vendor", "password": "env:E2E_VENDOR_PASS"},
                {"name": "tokenreg", "type": "basic", "url": token_registry.url, "username": "tokenvendor", "password": "env:E2E_TOKEN_VENDOR_PASS"},
                {"name": "wrongpass", "type": "basic", "url": upstream.url, "username": "vendor", "password": "env:E2E_WRONG_PASS"},
                {"name": "dead", "type": "basic", "url": f"http://127.0.0.1:{processes.free_port()}", "username": "vendor", "password": "env:E2E_VENDOR_PASS"},
            ]
        },
        "beta": {"registries": [{"name": "vendor", "type": "basic", "url": upstream.url, "username": "vendor", "password": "env:E2E_VENDOR_PASS"}]},
    }


MIRROR_ENV = {"E2E_VENDOR_PASS": VENDOR_PASSWORD, "E2E_TOKEN_VENDOR_PASS": TOKEN_VENDOR_PASSWORD, "E2E_WRONG_PASS": "not-the-password"}
SECRETS = (VENDOR_PASSWORD, TOKEN_VENDOR_PASSWORD, "not-the-password", *LICENSES.values())
leakcheck.forbid_everywhere(*SECRETS)


def start_mirror(workdir: Path, upstream, token_upstream, name: str = "mirror", **overrides) -> processes.MirrorProcess:
    port = processes.free_port()
    config = processes.write_mirror_config(
        workdir / name, port, mirror_apps(upstream, token_upstream), license_entries(), domains={"localhost": "acme"}, **overrides
    )
    return processes.start_mirror(workdir / name, config, port, env=MIRROR_ENV)


@pytest.fixture(scope="session")
def mirror(workdir, upstream, token_upstream):
    process = start_mirror(workdir, upstream, token_upstream)
    yield process
    process.stop()


@pytest.fixture
def pull_dir(tmp_path):
    processes.clear_skopeo_cache()
    return tmp_path


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked: {secret[:6]}..."
