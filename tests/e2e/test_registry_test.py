"""`authmirror registry test` and `authmirror images` against real docker-registry upstreams and a
running mirror: one test per failure mode, each asserting its own diagnosis and exit code."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from authmirror.cli.main import main
from tests.e2e.conftest import LICENSES, TOKEN_VENDOR_PASSWORD, VENDOR_PASSWORD, assert_no_secrets
from tests.support import processes
from tests.support.faultserver import FaultServer
from tests.support.helmcli import write_chart

pytestmark = pytest.mark.e2e

STEPS = ["resolve", "connect", "credentials", "v2", "manifest", "platforms", "blobs"]
NEVER_SET = "AUTHMIRROR_TEST_NEVER_EXPORTED"
PROXY_STEPS = ["resolve", "connect", "v2", "token", "manifest", "platforms", "blobs"]


@pytest.fixture(scope="module")
def faults(upstream, built):
    """Misbehaving upstreams in front of the real registry: 429s, slow manifests, a lost blob."""
    limited = FaultServer(upstream.url).start()
    limited.add(r"/manifests/", status=429, headers={"Retry-After": "60"}, body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"pull rate limit exceeded"}]}')
    slow = FaultServer(upstream.url).start()
    slow.add(r"/manifests/", delay_headers=3)
    lost = FaultServer(upstream.url).start()
    lost_layer = built.single.layers[1].digest
    lost.add(rf"/blobs/{lost_layer}", status=404, body=b'{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}')
    yield {"limited": limited, "slow": slow, "lost": lost, "lost_layer": lost_layer}
    for server in (limited, slow, lost):
        server.stop()


@pytest.fixture(scope="module")
def config(workdir, upstream, token_upstream, faults) -> Path:
    """A config for direct checks: one registry per failure mode, secrets in files."""
    directory = workdir / "registry-test"
    directory.mkdir(exist_ok=True)
    (directory / "vendor-pass").write_text(VENDOR_PASSWORD)
    (directory / "token-pass").write_text(TOKEN_VENDOR_PASSWORD)
    (directory / "wrong-pass").write_text("not-the-password")
    token_registry, _ = token_upstream

    def basic(name, url, password="file:vendor-pass", user="vendor"):
        return {"name": name, "type": "basic", "url": url, "username": user, "password": password}

    apps = {
        "acme": {
            "registries": [
                basic("vendor", upstream.url),
                basic("tokenreg", token_registry.url, "file:token-pass", "tokenvendor"),
                basic("wrongpass", upstream.url, "file:wrong-pass"),
                basic("tokenwrong", token_registry.url, "file:wrong-pass", "tokenvendor"),
                {"name": "anon", "type": "anonymous", "url": upstream.url},
                basic("dead", f"http://127.0.0.1:{processes.free_port()}"),
                basic("limited", faults["limited"].url),
                basic("slow", faults["slow"].url),
                basic("lost", faults["lost"].url),
                basic("tls", f"https://{upstream.host}"),
                basic("unset", upstream.url, f"env:{NEVER_SET}"),  # every test here runs with this one broken
            ]
        }
    }
    return processes.write_mirror_config(directory, processes.free_port(), apps, [], public_url="https://mirror.example.com")


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    assert_no_secrets(captured.out, captured.err)
    return code, captured.out


def run_json(capsys, *args: str) -> tuple[int, dict]:
    code, out = run(capsys, *args, "--json")
    return code, json.loads(out)


def single_failure(report: dict) -> dict:
    [image] = report["images"]
    assert image["ok"] is False
    return image["failure"]


def test_pullable_image_step_by_step(capsys, config, upstream):
    code, out = run(capsys, "registry", "test", "-c", str(config), "--image", f"{upstream.host}/vendor/app:1.0")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == f"{upstream.host}/vendor/app:1.0"
    for label in ("resolve", "connect", "credentials", "/v2/", "manifest", "platforms", "blobs"):
        assert any(line.startswith(f"  ✓ {label} ") for line in lines), (label, out)
    assert "password from file:" in out and "Basic auth accepted" in out and "4 blobs present" in out
    assert "PULLABLE: sha256:" in out
    assert "customers pull: mirror.example.com/proxy/acme/vendor/vendor/app:1.0" in out


def test_multi_platform_deep_check_reads_and_verifies_every_blob(capsys, config, built):
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--registry", "acme/vendor", "--image", "vendor/app:multi", "--deep")
    assert code == 0
    [image] = report["images"]
    assert image["platforms"] == ["linux/amd64", "linux/arm64"]
    assert image["digest"] == built.multi.manifest_digest
    blobs_step = next(s for s in image["steps"] if s["name"] == "blobs")
    assert "read in full, digests verified" in blobs_step["detail"]
    assert image["blobs"]["count"] == 6 and image["blobs"]["bytes"] > 180_000


def test_token_auth_registry(capsys, config, token_upstream):
    token_registry, _ = token_upstream
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--registry", "tokenreg", "--image", "vendor/app:1.0")
    assert code == 0
    v2 = report["images"][0]["steps"][3]
    assert v2["name"] == "v2" and v2["detail"].startswith("Bearer token from http://127.0.0.1:")


@pytest.mark.parametrize("registry, auth", [("wrongpass", "Basic"), ("tokenwrong", "Bearer")])
def test_wrong_password(capsys, config, registry, auth):
    code, out = run(capsys, "registry", "test", "-c", str(config), "--registry", registry, "--image", "vendor/app:1.0")
    assert code == 2
    assert "✗ /v2/" in out and "FAILED at /v2/: credentials refused (credential/config problem)" in out
    assert "registry said: HTTP 401 UNAUTHORIZED" in out
    index = 2 if registry == "wrongpass" else 3
    assert f"check apps.acme.registries[{index}].username and apps.acme.registries[{index}].password" in out
    assert "wrong-pass" in out  # where the password comes from, never the password
    assert "· manifest" in out and "not run" in out


def test_a_registry_without_its_secret_fails_only_its_own_images(capsys, config, upstream, monkeypatch):
    monkeypatch.delenv(NEVER_SET, raising=False)
    images = [f"{upstream.host}/vendor/app:1.0", "mirror.example.com/proxy/acme/unset/vendor/app:1.0"]
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--image", images[0], "--image", images[1])
    assert code == 2
    good, unset = report["images"]
    assert good["ok"] and good["registry"]["name"] == "vendor"
    assert unset["registry"]["name"] == "unset" and [s["ok"] for s in unset["steps"]] == [False, None, None, None, None, None, None]
    failure = unset["failure"]
    assert (failure["step"], failure["kind"], failure["category"]) == ("resolve", "config", "credentials")
    assert failure["message"] == f"apps.acme.registries[10].password: environment variable {NEVER_SET} is not set"
    assert "export that variable" in failure["hint"]


def test_anonymous_against_a_registry_that_wants_credentials(capsys, config):
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--registry", "anon", "--image", "vendor/app:1.0")
    failure = single_failure(report)
    assert code == 2 and failure["kind"] == "credentials_refused"
    assert "type anonymous sends none" in failure["hint"]


def test_missing_repository_lists_similar_ones(capsys, config, upstream):
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--image", f"{upstream.host}/vendor/apq:1.0")
    failure = single_failure(report)
    assert code == 1
    assert (failure["step"], failure["kind"], failure["category"], failure["status"]) == ("manifest", "repository_not_found", "image", 404)
    assert "repository vendor/apq does not exist" in failure["hint"] and "similar repositories: vendor/app" in failure["hint"]


def test_missing_tag_lists_close_tags(capsys, config, upstream):
    code, out = run(capsys, "registry", "test", "-c", str(config), "--image", f"{upstream.host}/vendor/app:1.4")
    assert code == 1
    assert "FAILED at manifest: tag not found (image problem)" in out
    assert "registry said: HTTP 404 MANIFEST_UNKNOWN" in out
    assert "hint: tag 1.4 does not exist in vendor/app; existing tags close to '1.4': 1.3, " in out
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--image", f"{upstream.host}/vendor/app:1.4")
    close = single_failure(report)["close_tags"]
    assert close[0] == "1.3" and {"1.0", "1.1", "1.2"} <= set(close)


def test_dead_host(capsys, config):
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--registry", "dead", "--image", "vendor/app:1.0")
    failure = single_failure(report)
    assert code == 3
    assert (failure["step"], failure["kind"], failure["category"]) == ("connect", "connect", "network")
    assert "refused" in failure["message"] and "apps.acme.registries[5]" in failure["hint"]


def test_rate_limited_upstream_says_when_to_retry(capsys, config):
    code, out = run(capsys, "registry", "test", "-c", str(config), "--registry", "limited", "--image", "vendor/app:1.0")
    assert code == 3
    assert "FAILED at manifest: rate limited (network problem)" in out
    assert "HTTP 429 TOOMANYREQUESTS: pull rate limit exceeded" in out and "retry after 60 s" in out


def test_timeout(capsys, config):
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--registry", "slow", "--image", "vendor/app:1.0", "--timeout", "1")
    failure = single_failure(report)
    assert code == 3 and (failure["step"], failure["kind"]) == ("manifest", "timeout")
    assert "did not answer within 1 s" in failure["hint"]


def test_tls_to_a_plain_http_registry(capsys, config):
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--registry", "tls", "--image", "vendor/app:1.0")
    failure = single_failure(report)
    assert code == 3 and (failure["step"], failure["kind"]) == ("connect", "tls")
    assert "does not speak TLS" in failure["hint"] and "http://" in failure["hint"]


def test_missing_blob(capsys, config, faults):
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--registry", "lost", "--image", "vendor/app:1.0")
    failure = single_failure(report)
    assert code == 1 and (failure["step"], failure["kind"], failure["code"]) == ("blobs", "blob_missing", "BLOB_UNKNOWN")
    assert f"layer 2 {faults['lost_layer']}" in failure["message"] and "re-push" in failure["hint"]


def test_deep_check_catches_corrupted_storage(capsys, tmp_path, built):
    """A registry whose stored layer bytes went bad: HEAD still says present, --deep finds the digest mismatch."""
    registry = processes.start_registry(tmp_path / "registry", users={"vendor": VENDOR_PASSWORD})
    try:
        processes.push(built.other.layout, "other", registry, "vendor/other")
        layer = built.other.layers[0].digest.split(":")[1]
        data = tmp_path / "registry" / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / layer[:2] / layer / "data"
        corrupted = bytearray(data.read_bytes())
        corrupted[100] ^= 0xFF
        data.write_bytes(bytes(corrupted))
        (tmp_path / "pass").write_text(VENDOR_PASSWORD)
        apps = {"acme": {"registries": [{"name": "vendor", "type": "basic", "url": registry.url, "username": "vendor", "password": "file:pass"}]}}
        config = processes.write_mirror_config(tmp_path, processes.free_port(), apps, [])
        image = f"{registry.host}/vendor/other:other"
        assert run(capsys, "registry", "test", "-c", str(config), "--image", image)[0] == 0
        code, report = run_json(capsys, "registry", "test", "-c", str(config), "--image", image, "--deep")
        failure = single_failure(report)
        assert code == 1 and (failure["step"], failure["kind"]) == ("blobs", "digest_mismatch")
        assert f"expected {built.other.layers[0].digest}" in failure["message"]
    finally:
        registry.stop()


def test_many_images_json_schema_and_exit_code_precedence(capsys, config, upstream):
    images = [f"{upstream.host}/vendor/app:1.0", f"{upstream.host}/vendor/app:9.9", "mirror.example.com/proxy/acme/wrongpass/vendor/app:1.0"]
    args = ["registry", "test", "-c", str(config)]
    for image in images:
        args += ["--image", image]
    code, report = run_json(capsys, *args)
    assert code == 2  # a credential problem outranks an image problem
    assert set(report) == {"schema", "ok", "exit_code", "mode", "summary", "images"}
    assert (report["schema"], report["ok"], report["exit_code"], report["mode"]) == (1, False, 2, "direct")
    assert report["summary"] == {"total": 3, "pullable": 1, "failed": 2, "by_category": {"image": 1, "credentials": 1, "network": 0}}
    assert [i["image"] for i in report["images"]] == images
    keys = {"image", "ok", "mode", "registry", "repository", "reference", "mirror_ref", "digest", "media_type", "platforms", "blobs", "ms", "steps", "failure"}
    for image in report["images"]:
        assert set(image) == keys
        assert [s["name"] for s in image["steps"]] == STEPS
        for step in image["steps"]:
            assert set(step) == {"name", "ok", "ms", "detail"} and step["ok"] in (True, False, None)
        assert isinstance(image["ms"], float) and set(image["blobs"]) == {"count", "bytes"}
    ok, missing, wrong = report["images"]
    assert ok["failure"] is None and ok["registry"] == {"app": "acme", "name": "vendor", "type": "basic", "url": upstream.url}
    assert ok["mirror_ref"] == "mirror.example.com/proxy/acme/vendor/vendor/app:1.0" and ok["digest"].startswith("sha256:")
    assert set(missing["failure"]) == {"step", "kind", "category", "status", "code", "message", "hint", "close_tags"}
    assert wrong["registry"]["name"] == "wrongpass" and wrong["failure"]["kind"] == "credentials_refused"
    assert [s["ok"] for s in wrong["steps"]] == [True, True, True, False, None, None, None]

    code, out = run(capsys, *args)
    assert "SUMMARY" in out and "3 images: 1 pullable, 2 not pullable (credential/config problems: 1, image problems: 1)" in out
    assert "exit code 2: credential/config problems" in out
    assert f"✓ {images[0]}  pullable" in out


def manifests_with_every_kind(images: list[str]) -> str:
    init, app, other, multi = images
    pod = lambda key, image: {key: [{"name": "c", "image": image}]}  # noqa: E731
    docs = [
        {"kind": "Pod", "metadata": {"name": "p"}, "spec": {**pod("initContainers", init), **pod("containers", app), **pod("ephemeralContainers", other)}},
        {"kind": "Deployment", "metadata": {"name": "d"}, "spec": {"template": {"spec": pod("containers", app)}}},
        {"kind": "StatefulSet", "metadata": {"name": "s"}, "spec": {"template": {"spec": pod("containers", multi)}}},
        {"kind": "DaemonSet", "metadata": {"name": "ds"}, "spec": {"template": {"spec": pod("containers", other)}}},
        {"kind": "ReplicaSet", "metadata": {"name": "rs"}, "spec": {"template": {"spec": pod("containers", app)}}},
        {"kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": pod("initContainers", init)}}},
        {"kind": "CronJob", "metadata": {"name": "cj"}, "spec": {"jobTemplate": {"spec": {"template": {"spec": pod("containers", multi)}}}}},
        {"kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "lp"}, "spec": pod("containers", app)}]},
    ]
    return "---\n".join(json.dumps(d) + "\n" for d in docs)


def test_from_manifests_checks_every_image_of_every_workload(capsys, config, upstream, tmp_path):
    images = [f"{upstream.host}/vendor/app:1.1", f"{upstream.host}/vendor/app:1.0", f"{upstream.host}/vendor/other:other", "mirror.example.com/proxy/acme/vendor/vendor/app:multi"]
    manifests = tmp_path / "release.yaml"
    manifests.write_text(manifests_with_every_kind(images))
    code, report = run_json(capsys, "registry", "test", "-c", str(config), "--from-manifests", str(manifests))
    assert code == 0, report
    assert [i["image"] for i in report["images"]] == images and all(i["ok"] for i in report["images"])

    code, out = run(capsys, "images", "--from-manifests", str(manifests))
    assert code == 0 and out.split() == images
    code, out = run(capsys, "images", "--from-manifests", str(manifests), "--proxy-refs", "-c", str(config))
    assert code == 0 and out.split() == [
        "mirror.example.com/proxy/acme/vendor/vendor/app:1.1",
        "mirror.example.com/proxy/acme/vendor/vendor/app:1.0",
        "mirror.example.com/proxy/acme/vendor/vendor/other:other",
        "mirror.example.com/proxy/acme/vendor/vendor/app:multi",
    ]


def test_images_from_stdin_and_unmapped_images(config, upstream):
    text = manifests_with_every_kind([f"{upstream.host}/vendor/app:1.0", "quay.io/elsewhere/app:1", "nginx:1.25", f"{upstream.host}/vendor/app:1.0"])
    done = subprocess.run(
        [str(processes.REPO_ROOT / ".venv" / "bin" / "authmirror"), "images", "--from-manifests", "-", "--proxy-refs", "-c", str(config)],
        input=text, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout.split() == ["mirror.example.com/proxy/acme/vendor/vendor/app:1.0"]
    assert "quay.io/elsewhere/app:1: no configured registry serves" in done.stderr and "nginx:1.25" in done.stderr


# -- through a running mirror, as a customer ---------------------------------------------------


def proxy_ref(mirror, tag: str, registry: str = "vendor", repository: str = "vendor/app") -> str:
    return f"{mirror.host}/proxy/acme/{registry}/{repository}:{tag}"


def test_via_proxy_valid_license_pulls_the_whole_path(capsys, mirror, built):
    code, out = run(capsys, "registry", "test", "--via-proxy", mirror.url, "--license", LICENSES["valid"], "--image", proxy_ref(mirror, "multi"), "--deep")
    assert code == 0, out
    assert f"401 with Bearer challenge, realm {mirror.url}/v2/token" in out
    assert "grants pull on proxy/acme/vendor/vendor/app" in out
    assert "linux/amd64, linux/arm64" in out and "6 blobs read in full, digests verified" in out
    assert f"PULLABLE: {built.multi.manifest_digest}" in out
    events = [e for e in mirror.pull_events() if (e.get("user_agent") or "").startswith("authmirror-registry-test/") and e["customer"] == "Globex Corp"]
    assert {"token", "manifest", "blob"} <= {e["action"] for e in events}


def test_via_proxy_revoked_license(capsys, mirror, monkeypatch):
    monkeypatch.setenv("TEST_LICENSE", LICENSES["revoked"])
    code, report = run_json(capsys, "registry", "test", "--via-proxy", mirror.url, "--license", "env:TEST_LICENSE", "--image", proxy_ref(mirror, "1.0"))
    failure = single_failure(report)
    assert code == 2 and report["mode"] == "via-proxy"
    assert (failure["step"], failure["kind"], failure["status"]) == ("token", "license_refused", 401)
    assert "revoked" in failure["message"] and "licenses file" in failure["hint"]
    assert [s["name"] for s in report["images"][0]["steps"]] == PROXY_STEPS


def test_via_proxy_license_for_another_app(capsys, mirror):
    code, out = run(capsys, "registry", "test", "--via-proxy", mirror.url, "--license", LICENSES["beta"], "--image", proxy_ref(mirror, "1.0"))
    assert code == 2
    assert "grants no access to this repository" in out
    assert "FAILED at manifest: license not entitled to this image" in out
    assert "mirror said: HTTP 403 DENIED: license for Soylent does not include app 'acme'" in out


def test_via_proxy_upstream_problems_keep_their_diagnosis(capsys, mirror):
    args = ["registry", "test", "--via-proxy", mirror.url, "--license", LICENSES["valid"]]
    code, report = run_json(capsys, *args, "--image", proxy_ref(mirror, "1.4"))
    failure = single_failure(report)
    assert code == 1 and failure["kind"] == "tag_not_found" and failure["close_tags"][0] == "1.3"
    code, report = run_json(capsys, *args, "--image", proxy_ref(mirror, "1.0", registry="wrongpass"))
    failure = single_failure(report)
    assert code == 2 and (failure["kind"], failure["status"], failure["code"]) == ("credentials_refused", 502, "UNAUTHORIZED")
    assert "authmirror registry test" in failure["hint"]
    code, report = run_json(capsys, *args, "--image", proxy_ref(mirror, "1.0", registry="dead"))
    assert code == 3 and single_failure(report)["kind"] == "upstream_error"


def test_via_proxy_needs_a_license(capsys, mirror, monkeypatch):
    monkeypatch.delenv("AUTHMIRROR_LICENSE", raising=False)
    assert main(["registry", "test", "--via-proxy", mirror.url, "--image", proxy_ref(mirror, "1.0")]) == 2
    assert "--via-proxy needs --license" in capsys.readouterr().err


# -- the CI loop --------------------------------------------------------------------------------


def test_ci_script_renders_the_chart_and_fails_the_build_readably(tmp_path, config, mirror, upstream):
    chart = write_chart(tmp_path / "chart", {
        "init": f"{upstream.host}/vendor/other:other",
        "app": f"{upstream.host}/vendor/app:1.0",
        "backup": f"{upstream.host}/vendor/app:1.2",
    })
    # The direct checks use the test config; the mirror pass maps images with the running mirror's config.
    env = {
        **os.environ,
        "PATH": f"{processes.REPO_ROOT / '.venv' / 'bin'}:/usr/bin:/bin",  # no helm program: Helm's engine renders
        "AUTHMIRROR_CONFIG": str(config),
        "AUTHMIRROR_REPORT": str(tmp_path / "report"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
    }
    script = str(processes.REPO_ROOT / "scripts" / "ci-test-images.sh")
    done = subprocess.run([script, "--from-helm", str(chart)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== images in the release" in done.stdout and "3 images: 3 pullable, 0 not pullable" in done.stdout
    assert "OK: every image is pullable" in done.stdout
    assert json.loads((tmp_path / "report-direct.json").read_text())["ok"] is True

    broken = tmp_path / "broken.yaml"
    broken.write_text(f"images: {{backup: {upstream.host}/vendor/app:1.9}}\n")
    proxy_env = {
        **env,
        "AUTHMIRROR_CONFIG": str(mirror.config_path),
        "AUTHMIRROR_PROXY_URL": mirror.url,
        "AUTHMIRROR_LICENSE": LICENSES["valid"],
        "E2E_VENDOR_PASS": VENDOR_PASSWORD, "E2E_TOKEN_VENDOR_PASS": TOKEN_VENDOR_PASSWORD, "E2E_WRONG_PASS": "not-the-password",
    }
    done = subprocess.run([script, "--from-helm", str(chart), "--values", str(broken)], env=proxy_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert f"== pullable through the mirror at {mirror.url}, as a customer" in out
    assert out.count("FAILED at manifest: tag not found (image problem)") == 2  # direct, and through the mirror
    assert "existing tags close to '1.9'" in out and "FAILED (exit 1)" in out
    assert "### authmirror: release images" in (tmp_path / "summary.md").read_text()
    assert json.loads((tmp_path / "report-proxy.json").read_text())["summary"]["failed"] == 1
    assert_no_secrets(done.stdout, done.stderr, (tmp_path / "summary.md").read_text())
