import pytest

from authmirror.errors import RegistryError
from authmirror.routing import parse_route, request_domain

DIGEST = "sha256:" + "a" * 64
DOMAINS = {"registry.acme.example": "acme", "localhost": "acme"}


@pytest.mark.parametrize(
    "path, kind, app, registry, repository, reference",
    [
        ("/v2/proxy/acme/vendor/app/manifests/1.0", "manifest", "acme", "vendor", "app", "1.0"),
        ("/v2/proxy/acme/vendor/team/app/manifests/latest", "manifest", "acme", "vendor", "team/app", "latest"),
        (f"/v2/proxy/acme/vendor/app/manifests/{DIGEST}", "manifest", "acme", "vendor", "app", DIGEST),
        (f"/v2/proxy/acme/vendor/app/blobs/{DIGEST}", "blob", "acme", "vendor", "app", DIGEST),
        ("/v2/proxy/acme/vendor/app/tags/list", "tags", "acme", "vendor", "app", ""),
        (f"/v2/proxy/acme/vendor/app/referrers/{DIGEST}", "referrers", "acme", "vendor", "app", DIGEST),
        ("/v2/proxy/acme/123456789012.dkr.ecr.us-east-1.amazonaws.com/app/manifests/1.0", "manifest", "acme", "123456789012.dkr.ecr.us-east-1.amazonaws.com", "app", "1.0"),
        # a repository may itself contain a component named like an endpoint
        ("/v2/proxy/acme/vendor/manifests/manifests/1.0", "manifest", "acme", "vendor", "manifests", "1.0"),
        ("/v2/proxy/acme/vendor/app/blobs/uploads/", "upload", "acme", "vendor", "app", ""),
    ],
)
def test_image_paths(path, kind, app, registry, repository, reference):
    route = parse_route(path, "mirror.example.com", DOMAINS)
    assert (route.kind, route.app, route.registry, route.repository, route.reference) == (kind, app, registry, repository, reference)


@pytest.mark.parametrize("path, kind", [("/v2/", "base"), ("/v2", "base"), ("/v2/token", "token"), ("/v2/_catalog", "catalog"), ("/healthz", "health"), ("/readyz", "ready")])
def test_local_paths(path, kind):
    assert parse_route(path, "", {}).kind == kind


def test_custom_domain_omits_proxy_prefix():
    route = parse_route("/v2/vendor/app/manifests/1.0", "registry.acme.example", DOMAINS)
    assert (route.app, route.registry, route.repository, route.domain) == ("acme", "vendor", "app", "registry.acme.example")
    # the full form still works on the domain, for the domain's app
    route = parse_route("/v2/proxy/acme/vendor/app/manifests/1.0", "registry.acme.example:443", DOMAINS)
    assert (route.app, route.registry, route.repository) == ("acme", "vendor", "app")


def test_without_domain_the_prefix_is_required():
    with pytest.raises(RegistryError) as e:
        parse_route("/v2/vendor/app/manifests/1.0", "mirror.example.com", DOMAINS)
    assert e.value.code == "NAME_UNKNOWN" and e.value.status == 404


@pytest.mark.parametrize(
    "path, code",
    [
        ("/v2/proxy/acme/vendor/App/manifests/1.0", "NAME_INVALID"),
        ("/v2/proxy/acme/vendor/../etc/manifests/1.0", "NAME_INVALID"),
        ("/v2/proxy/acme/vendor%2fapp/manifests/1.0", "NAME_INVALID"),
        ("/v2/proxy/acme/vendor/app/blobs/sha256:abc", "DIGEST_INVALID"),
        ("/v2/proxy/acme/vendor/app/blobs/latest", "DIGEST_INVALID"),
        ("/v2/proxy/acme/vendor/app/manifests/sha256:XYZ", "DIGEST_INVALID"),
        ("/v2/proxy/acme/vendor/app/manifests/-bad", "TAG_INVALID"),
        ("/v2/proxy/acme/vendor/app/manifests/" + "a" * 129, "TAG_INVALID"),
        (f"/v2/proxy/acme/vendor/app/referrers/md5:{'a' * 32}", "DIGEST_INVALID"),
        ("/v2/proxy/acme/vendor/app/nothing", "UNSUPPORTED"),
    ],
)
def test_malformed_references_are_400_or_404(path, code):
    with pytest.raises(RegistryError) as e:
        parse_route(path, "", DOMAINS)
    assert e.value.code == code
    assert e.value.status in (400, 404)


def test_request_domain_strips_port_and_ignores_unknown_hosts():
    assert request_domain("LOCALHOST:5000", DOMAINS) == "localhost"
    assert request_domain("evil.example", DOMAINS) == ""
    assert request_domain("", DOMAINS) == ""
