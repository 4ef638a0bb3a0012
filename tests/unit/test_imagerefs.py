from pathlib import Path

import pytest

from authmirror.config import parse_config
from authmirror.imagerefs import ImageReferenceError, mirror_reference, parse_reference, resolve_image


@pytest.mark.parametrize(
    "text, domain, path, tag, digest",
    [
        ("nginx", "docker.io", "library/nginx", "", ""),
        ("nginx:1.25", "docker.io", "library/nginx", "1.25", ""),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", ""),
        ("127.0.0.1:5001/vendor/app:1.0", "127.0.0.1:5001", "vendor/app", "1.0", ""),
        ("localhost/app", "localhost", "app", "", ""),
        ("ghcr.io/acme/app@sha256:" + "a" * 64, "ghcr.io", "acme/app", "", "sha256:" + "a" * 64),
        ("ghcr.io/acme/app:1.0@sha256:" + "b" * 64, "ghcr.io", "acme/app", "1.0", "sha256:" + "b" * 64),
        ("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1.0", "123456789012.dkr.ecr.us-east-1.amazonaws.com", "team/app", "1.0", ""),
    ],
)
def test_parse_reference(text, domain, path, tag, digest):
    ref = parse_reference(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.reference == (digest or tag or "latest")


def test_parse_reference_without_normalisation_keeps_relative_names():
    ref = parse_reference("vendor/app:2.0", normalize=False)
    assert (ref.domain, ref.path, ref.tag) == ("", "vendor/app", "2.0")
    assert str(ref) == "vendor/app:2.0"


@pytest.mark.parametrize("text", ["Vendor/App:1.0", "app:-bad", "app@sha256:xyz", "", "a//b"])
def test_parse_reference_refuses_malformed(text):
    with pytest.raises(ImageReferenceError, match="invalid image reference"):
        parse_reference(text)


@pytest.fixture
def config(tmp_path):
    raw = {
        "public_url": "https://mirror.example.com",
        "licenses": {"file": "licenses.yaml"},
        "domains": {"registry.acme.example": "acme"},
        "apps": {
            "acme": {
                "registries": [
                    {"name": "vendor", "type": "basic", "url": "http://127.0.0.1:5001", "username": "u", "password": "p"},
                    {"name": "team", "type": "basic", "url": "https://registry.example.com/org/team", "username": "u", "password": "p"},
                    {"name": "org", "type": "basic", "url": "https://registry.example.com/org", "username": "u", "password": "p"},
                ]
            },
            "beta": {"registries": [{"name": "vendor", "type": "anonymous", "url": "https://public.example.com"}]},
        },
    }
    return parse_config(raw, Path(tmp_path) / "authmirror.yaml")


def test_resolve_by_upstream_host_and_port(config):
    resolved = resolve_image(config, "127.0.0.1:5001/vendor/app:1.0")
    assert (resolved.registry.app, resolved.registry.name, resolved.repository, resolved.reference) == ("acme", "vendor", "vendor/app", "1.0")
    assert resolved.upstream_ref() == "127.0.0.1:5001/vendor/app:1.0"
    assert mirror_reference(config, resolved.registry, resolved.repository, resolved.ref.suffix()) == "mirror.example.com/proxy/acme/vendor/vendor/app:1.0"


def test_resolve_takes_the_longest_path_prefix(config):
    team = resolve_image(config, "registry.example.com/org/team/app:3")
    assert (team.registry.name, team.repository) == ("team", "app")
    org = resolve_image(config, "registry.example.com/org/other/app")
    assert (org.registry.name, org.repository, org.reference) == ("org", "other/app", "latest")


def test_resolve_mirror_paths_and_custom_domains(config):
    via_path = resolve_image(config, "mirror.example.com/proxy/beta/vendor/tools/x:1")
    assert (via_path.registry.app, via_path.registry.type, via_path.repository, via_path.how) == ("beta", "anonymous", "tools/x", "mirror path")
    via_domain = resolve_image(config, "registry.acme.example/vendor/app:1.0")
    assert (via_domain.registry.app, via_domain.registry.name, via_domain.repository) == ("acme", "vendor", "app")


def test_resolve_with_registry_name(config):
    resolved = resolve_image(config, "app:1.0", "acme/team")
    assert resolved.upstream_ref() == "registry.example.com/org/team/app:1.0"
    with pytest.raises(ImageReferenceError, match="several apps"):
        resolve_image(config, "app:1.0", "vendor")
    with pytest.raises(ImageReferenceError, match="no registry named 'nope'"):
        resolve_image(config, "app:1.0", "nope")
    with pytest.raises(ImageReferenceError, match="names host other.example.com"):
        resolve_image(config, "other.example.com/app:1.0", "acme/team")


def test_resolve_unknown_host_names_the_configured_upstreams(config):
    with pytest.raises(ImageReferenceError, match=r"no configured registry serves 'quay.io/x/y:1'.*127\.0\.0\.1:5001"):
        resolve_image(config, "quay.io/x/y:1")
    with pytest.raises(ImageReferenceError, match="app 'gamma'"):
        resolve_image(config, "mirror.example.com/proxy/gamma/vendor/app:1")
