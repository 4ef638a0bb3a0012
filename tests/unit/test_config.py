from pathlib import Path

import pytest
import yaml

from authmirror.config import load_config, parse_duration, parse_size
from authmirror.errors import ConfigError


def write(tmp_path: Path, data: dict) -> Path:
    (tmp_path / "licenses.yaml").write_text("licenses: []\n")
    path = tmp_path / "authmirror.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def registry(**overrides):
    return {"name": "vendor", "type": "basic", "url": "http://127.0.0.1:5001", "username": "u", "password": "env:AM_TEST_PASS", **overrides}


def test_minimal_config_and_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_TEST_PASS", "s3cret")
    config = load_config(write(tmp_path, {"apps": {"acme": {"registries": [registry()]}}}))
    assert str(config.listen) == "127.0.0.1:5000"
    assert config.public_url == "http://127.0.0.1:5000"
    assert config.blob_redirects == "follow"
    assert config.licenses.file == tmp_path / "licenses.yaml"
    vendor = config.apps["acme"].registry("vendor")
    assert vendor.password.value == "s3cret"
    assert "s3cret" not in repr(config) and "s3cret" not in str(vendor.password)
    assert vendor.origin == "http://127.0.0.1:5001"


def test_registry_found_by_port_less_host(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_TEST_PASS", "x")
    config = load_config(write(tmp_path, {"apps": {"acme": {"registries": [registry(url="https://registry.example.com/team")]}}}))
    app = config.apps["acme"]
    assert app.registry("registry.example.com").name == "vendor"
    assert app.registry("vendor").path_prefix == "team"
    assert app.registry("other") is None


def test_registry_with_port_is_not_found_by_host(tmp_path, monkeypatch):
    monkeypatch.setenv("AM_TEST_PASS", "x")
    config = load_config(write(tmp_path, {"apps": {"acme": {"registries": [registry()]}}}))
    assert config.apps["acme"].registry("127.0.0.1") is None


def test_file_secret(tmp_path):
    (tmp_path / "pass.txt").write_text("from-file\n")
    config = load_config(write(tmp_path, {"apps": {"acme": {"registries": [registry(password="file:pass.txt")]}}}))
    assert config.apps["acme"].registries[0].password.value == "from-file"


@pytest.mark.parametrize(
    "data, key",
    [
        ({"listen": "nowhere"}, "listen"),
        ({"lisen": "127.0.0.1:1"}, "lisen"),
        ({"blob_redirects": "maybe"}, "blob_redirects"),
        ({"token": {"ttl_seconds": 5}}, "token.ttl_seconds"),
        ({"apps": {"acme": {"registries": [registry(url="ftp://x")]}}}, "apps.acme.registries[0].url"),
        ({"apps": {"acme": {"registries": [registry(type="nope")]}}}, "apps.acme.registries[0].type"),
        ({"apps": {"acme": {"registries": [registry(password="env:AM_TEST_UNSET_VAR")]}}}, "apps.acme.registries[0].password"),
        ({"apps": {"acme": {"registries": [registry(password=None)]}}}, "apps.acme.registries[0].password"),
        ({"apps": {"acme": {"registries": [registry(), registry()]}}}, "apps.acme.registries[1].name"),
        ({"apps": {"acme": {"registries": [registry(name="Bad Name")]}}}, "apps.acme.registries[0].name"),
        ({"apps": {"acme": {"registries": [registry(colour="blue")]}}}, "apps.acme.registries[0].colour"),
        ({"apps": {"ACME": {}}}, "apps.ACME"),
        ({"domains": {"registry.example": "ghost"}}, "domains.registry.example"),
    ],
)
def test_bad_config_names_the_key(tmp_path, monkeypatch, data, key):
    monkeypatch.setenv("AM_TEST_PASS", "x")
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, data))
    assert e.value.key == key


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("apps: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("2d", 172800), (90, 90), ("250ms", 0.25)])
def test_durations(text, seconds):
    assert parse_duration(text, "k") == seconds


@pytest.mark.parametrize("text, size", [("50GiB", 50 * 1024**3), ("512MB", 512 * 1024**2), ("100k", 102400), (42, 42)])
def test_sizes(text, size):
    assert parse_size(text, "k") == size


def test_bad_duration_and_size_name_the_key():
    with pytest.raises(ConfigError, match="cache.max_size"):
        parse_size("lots", "cache.max_size")
    with pytest.raises(ConfigError, match="stale_if_error"):
        parse_duration("soon", "cache.manifests.stale_if_error")
