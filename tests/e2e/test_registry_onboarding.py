"""`authmirror registry add|ls|rm` against real registries: interactive (answers on stdin) and by
flags; the live check decides whether anything is saved; secrets never reach the output."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest
import yaml

from authmirror.cli.main import main
from authmirror.config import load_config
from tests.support import processes

from .conftest import TOKEN_VENDOR_PASSWORD, VENDOR_PASSWORD

pytestmark = pytest.mark.e2e

EXISTING = """\
# the vendor's own notes: kept by registry add/rm
listen: 127.0.0.1:5000
licenses:
  file: licenses.yaml   # customers
apps:
  acme:
    registries:
      - name: legacy
        type: basic
        url: http://127.0.0.1:9
        username: vendor
        password: a-literal-password-in-the-file
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "authmirror.yaml"
    path.write_text(EXISTING)
    (tmp_path / "licenses.yaml").write_text("licenses: []\n")
    return path


def run(argv: list[str], capsys, stdin: str | None = None, monkeypatch=None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def registries(path) -> dict[str, dict]:
    data = yaml.safe_load(path.read_text())
    return {r["name"]: r for r in data["apps"]["acme"]["registries"]}


def test_interactive_add_explains_first_asks_checks_and_stores_the_token_in_a_0600_file(config, token_upstream, capsys, monkeypatch):
    token_registry, token_server = token_upstream
    answers = ["acme", "", token_registry.url, "tokenvendor", TOKEN_VENDOR_PASSWORD]
    before = len(token_server.requests)
    code, out, err = run(["registry", "add", "ghcr", "-c", str(config)], capsys, "\n".join(answers) + "\n", monkeypatch)
    assert code == 0, out + err
    assert out.index("read:packages") < out.index("GitHub username"), "the guide comes before the questions"
    assert "credentials accepted (Bearer token auth)" in out
    assert token_server.requests[before:] and token_server.requests[-1]["account"] == "tokenvendor", "checked live"
    assert TOKEN_VENDOR_PASSWORD not in out + err
    entry = registries(config)["ghcr"]
    assert entry == {"name": "ghcr", "type": "ghcr", "url": token_registry.url, "username": "tokenvendor", "password": "file:secrets/acme-ghcr-password"}
    secret = config.parent / "secrets" / "acme-ghcr-password"
    assert secret.read_text() == TOKEN_VENDOR_PASSWORD
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    text = config.read_text()
    assert "# the vendor's own notes" in text and "# customers" in text, "comments survive"
    monkeypatch.setenv("UNUSED", "x")
    assert load_config(config).apps["acme"].registry("ghcr").password.value == TOKEN_VENDOR_PASSWORD, "the mirror reads it back"


def test_flags_only_with_env_reference(config, upstream, capsys, monkeypatch):
    monkeypatch.setenv("VENDOR_QUAY_TOKEN", VENDOR_PASSWORD)
    code, out, err = run(
        ["registry", "add", "basic", "-c", str(config), "--no-input", "--app", "beta", "--name", "mirrored",
         "--url", upstream.url, "--username", "vendor", "--password", "env:VENDOR_QUAY_TOKEN", "--json"],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["saved"] and result["check"]["ok"] and result["image_prefix"] == "proxy/beta/mirrored/"
    data = yaml.safe_load(config.read_text())
    assert data["apps"]["beta"]["registries"] == [{"name": "mirrored", "type": "basic", "url": upstream.url, "username": "vendor", "password": "env:VENDOR_QUAY_TOKEN"}]
    assert not (config.parent / "secrets").exists(), "nothing typed in, nothing stored"
    assert VENDOR_PASSWORD not in out + err


def test_failing_live_check_saves_nothing_unless_forced(config, upstream, capsys, monkeypatch):
    original = config.read_text()
    args = ["registry", "add", "basic", "-c", str(config), "--no-input", "--app", "acme", "--name", "wrong",
            "--url", upstream.url, "--username", "vendor", "--password-stdin"]
    code, out, err = run(args, capsys, "not-the-password\n", monkeypatch)
    assert code == 1
    assert "FAILED" in out and "credentials were refused" in out and "hint:" in out and "Not saved" in out
    assert config.read_text() == original and not (config.parent / "secrets").exists()
    assert "not-the-password" not in out + err

    code, out, err = run([*args, "--force"], capsys, "not-the-password\n", monkeypatch)
    assert code == 0 and "Saved despite the failed check" in out
    assert registries(config)["wrong"]["password"] == "file:secrets/acme-wrong-password"
    assert (config.parent / "secrets" / "acme-wrong-password").read_text() == "not-the-password"
    assert "not-the-password" not in out + err


def test_unreachable_registry_fails_the_check_with_a_hint(config, capsys, monkeypatch):
    dead = f"http://127.0.0.1:{processes.free_port()}"
    code, out, _ = run(["registry", "add", "anonymous", "-c", str(config), "--no-input", "--app", "acme", "--url", dead], capsys)
    assert code == 1 and "connection refused" in out and "hint: check the url" in out


def test_wrong_flags_are_config_errors(config, capsys):
    code, _, err = run(["registry", "add", "ghcr", "-c", str(config), "--no-input", "--region", "us-east-1"], capsys)
    assert code == 2 and "--region: does not apply to type ghcr" in err
    code, _, err = run(["registry", "add", "quay", "-c", str(config), "--no-input", "--app", "acme"], capsys)
    assert code == 2 and "--username: required for type quay" in err
    code, _, err = run(["registry", "add", "basic", "-c", str(config), "--no-input", "--app", "acme", "--name", "newone", "--url", "http://127.0.0.1:9", "--username", "u", "--password", "env:NOPE_NOT_SET"], capsys)
    assert code == 2 and "NOPE_NOT_SET is not set" in err and "hint:" in err


def test_ls_shows_references_and_hides_literals(config, capsys, monkeypatch):
    monkeypatch.setenv("GHCR_TOKEN", "ghp_secret_value_for_ls")
    code, out, _ = run(["registry", "ls", "-c", str(config)], capsys)
    assert code == 0 and "acme/legacy" in out and "password=<literal, hidden>" in out
    assert "a-literal-password-in-the-file" not in out
    code, out, _ = run(["registry", "ls", "-c", str(config), "--json"], capsys)
    [row] = json.loads(out)["registries"]
    assert row["credentials"] == {"username": "vendor", "password": "<literal, hidden>"}


def test_rm_removes_the_entry_and_the_secret_file_add_wrote(config, upstream, capsys, monkeypatch):
    add = ["registry", "add", "basic", "-c", str(config), "--no-input", "--app", "acme", "--name", "temp",
           "--url", upstream.url, "--username", "vendor", "--password-stdin"]
    assert run(add, capsys, VENDOR_PASSWORD + "\n", monkeypatch)[0] == 0
    secret = config.parent / "secrets" / "acme-temp-password"
    assert secret.exists()
    code, out, _ = run(["registry", "rm", "temp", "-c", str(config)], capsys)
    assert code == 0 and "removed registry 'temp'" in out
    assert "temp" not in registries(config) and "legacy" in registries(config)
    assert not secret.exists()
    assert run(["registry", "rm", "temp", "-c", str(config)], capsys)[0] == 1
    assert os.path.exists(config)


def test_replace_needs_to_be_asked_for(config, upstream, capsys, monkeypatch):
    monkeypatch.setenv("VENDOR_PASS", VENDOR_PASSWORD)
    args = ["registry", "add", "basic", "-c", str(config), "--no-input", "--app", "acme", "--name", "legacy",
            "--url", upstream.url, "--username", "vendor", "--password", "env:VENDOR_PASS"]
    code, _, err = run(args, capsys)
    assert code == 2 and "already exists" in err
    code, _, err = run(["registry", "add", "ghcr", "-c", str(config), "--app", "acme", "--name", "legacy"], capsys, "", monkeypatch)
    assert code == 2 and "already exists" in err, "refused before asking anything"
    assert registries(config)["legacy"]["url"] == "http://127.0.0.1:9"
    assert run([*args, "--replace"], capsys)[0] == 0
    assert registries(config)["legacy"] == {"name": "legacy", "type": "basic", "url": upstream.url, "username": "vendor", "password": "env:VENDOR_PASS"}


def test_config_check_reports_every_registry_even_when_one_lacks_its_secret(config, upstream, capsys, monkeypatch):
    monkeypatch.setenv("VENDOR_PASS", VENDOR_PASSWORD)
    data = yaml.safe_load(config.read_text())
    data["apps"]["acme"]["registries"] = [
        {"name": "good", "type": "basic", "url": upstream.url, "username": "vendor", "password": "env:VENDOR_PASS"},
        {"name": "unset", "type": "basic", "url": upstream.url, "username": "vendor", "password": "env:NOT_EXPORTED_ANYWHERE"},
        {"name": "wrong", "type": "basic", "url": upstream.url, "username": "vendor", "password": "wrong-password-literal"},
    ]
    config.write_text(yaml.safe_dump(data))
    code, out, _ = run(["config", "check", "-c", str(config)], capsys)
    assert code == 2, "a registry's config error makes it a config error"
    lines = out.splitlines()
    good = next(line for line in lines if "acme/good" in line)
    assert good.strip().startswith("OK") and "credentials accepted (Basic auth)" in good
    unset = lines.index(next(line for line in lines if "acme/unset" in line))
    assert "NOT_EXPORTED_ANYWHERE is not set" in lines[unset] and "export that variable" in lines[unset + 1]
    wrong = lines.index(next(line for line in lines if "acme/wrong" in line))
    assert "FAIL" in lines[wrong] and "refused" in lines[wrong] and "docker login" in lines[wrong + 1]
    assert VENDOR_PASSWORD not in out and "wrong-password-literal" not in out
