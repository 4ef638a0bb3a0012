"""Hardening pieces as pure functions: config sections, the failed-license limiter, key rotation,
TLS settings, secrets kept out of repr/str, constant-time license comparison."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authmirror import licenses as licenses_module
from authmirror.clientauth import ClientCredential, parse_authorization
from authmirror.config import load_config
from authmirror.context import RequestContext
from authmirror.errors import ConfigError, RegistryError
from authmirror.hardening_config import LimitsConfig, TlsConfig
from authmirror.licenses import LicenseStore, UnknownLicense
from authmirror.mirror import Mirror
from authmirror.ratelimit import FailedLicenseLimiter
from authmirror.tls import mitmproxy_options, upstream_ssl_context
from authmirror.tokens import TokenIssuer, key_id
from authmirror.upstreams import UpstreamAuth
from authmirror.upstreams.tokencache import CachedToken
from tests.support.certs import TestCA

VENDOR_SECRET = "vendor-literal-s3cret-XYZ"
LICENSE = "license-secret-0123456789"


def write(tmp_path: Path, **sections) -> Path:
    (tmp_path / "licenses.yaml").write_text(yaml.safe_dump({"licenses": [{"id": LICENSE, "customer": "Globex", "apps": ["acme"]}]}))
    registry = {"name": "vendor", "type": "basic", "url": "https://registry.example.com", "username": "vendor", "password": VENDOR_SECRET}
    path = tmp_path / "authmirror.yaml"
    path.write_text(yaml.safe_dump({"apps": {"acme": {"registries": [registry]}}, **sections}))
    return path


# -- config sections ---------------------------------------------------------------------------


def test_defaults(tmp_path):
    config = load_config(write(tmp_path))
    assert (config.timeouts.headers, config.timeouts.body_stall) == (30.0, 60.0)
    assert (config.limits.failed_license_attempts, config.limits.failed_license_window) == (10, 60.0)
    assert config.tls == TlsConfig() and config.tls.upstream_verify and not config.tls.serves_https


def test_sections_parse(tmp_path):
    ca = TestCA(tmp_path / "ca")
    listener = ca.issue("mirror")
    config = load_config(write(
        tmp_path,
        timeouts={"headers": "5s", "body_stall": "2m"},
        limits={"failed_license_attempts": 0, "failed_license_window": "10m"},
        tls={"certificate": str(listener.certificate), "key": str(listener.key), "upstream_ca_bundle": str(ca.path)},
    ))
    assert (config.timeouts.headers, config.timeouts.body_stall) == (5.0, 120.0)
    assert config.limits == LimitsConfig(0, 600.0)
    assert config.tls.serves_https and config.tls.upstream_ca_bundle == ca.path


@pytest.mark.parametrize(
    "sections, key",
    [
        ({"timeouts": {"headers": "soon"}}, "timeouts.headers"),
        ({"timeouts": {"body_stall": 0}}, "timeouts.body_stall"),
        ({"timeouts": {"connect": "5s"}}, "timeouts.connect"),
        ({"timeouts": "5s"}, "timeouts"),
        ({"limits": {"failed_license_attempts": -1}}, "limits.failed_license_attempts"),
        ({"limits": {"failed_license_attempts": True}}, "limits.failed_license_attempts"),
        ({"limits": {"failed_license_window": "0s"}}, "limits.failed_license_window"),
        ({"limits": {"per_ip": 3}}, "limits.per_ip"),
        ({"tls": {"certificate": "missing.pem", "key": "missing.key"}}, "tls.certificate"),
        ({"tls": {"certificate": "cert.pem"}}, "tls.key"),
        ({"tls": {"upstream_ca_bundle": "licenses.yaml"}}, "tls.upstream_ca_bundle"),
        ({"tls": {"upstream_verify": "no"}}, "tls.upstream_verify"),
        ({"tls": {"ciphers": "ALL"}}, "tls.ciphers"),
    ],
)
def test_bad_sections_name_the_key(tmp_path, sections, key):
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, **sections))
    assert raised.value.key == key


def test_tls_listener_wants_an_https_public_url(tmp_path):
    ca = TestCA(tmp_path / "ca")
    listener = ca.issue("mirror")
    tls = {"certificate": str(listener.certificate), "key": str(listener.key)}
    assert load_config(write(tmp_path, tls=tls)).public_url == "https://127.0.0.1:5000"
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, tls=tls, public_url="http://mirror.example.com"))
    assert raised.value.key == "public_url"


def test_listener_key_must_match_certificate(tmp_path):
    ca = TestCA(tmp_path / "ca")
    one, two = ca.issue("one"), ca.issue("two")
    with pytest.raises(ConfigError, match="is not the key of the first certificate") as raised:
        load_config(write(tmp_path, tls={"certificate": str(one.certificate), "key": str(two.key)}))
    assert raised.value.key == "tls.key"


# -- failed-license limiter --------------------------------------------------------------------


def test_limiter_blocks_after_the_budget_and_refills():
    now = [1000.0]
    limiter = FailedLicenseLimiter(LimitsConfig(3, 60.0), clock=lambda: now[0])
    for _ in range(3):
        limiter.check("10.0.0.1")
        limiter.failed("10.0.0.1")
    with pytest.raises(RegistryError) as raised:
        limiter.check("10.0.0.1")
    assert raised.value.status == 429 and raised.value.code == "TOOMANYREQUESTS"
    assert raised.value.headers == {"Retry-After": "20"}  # one attempt back every 60/3 s
    limiter.check("10.0.0.2")  # other addresses are unaffected
    now[0] += 20
    limiter.check("10.0.0.1")  # one attempt refilled
    limiter.failed("10.0.0.1")
    with pytest.raises(RegistryError):
        limiter.check("10.0.0.1")
    now[0] += 60
    limiter.check("10.0.0.1")
    assert "10.0.0.1" not in limiter._buckets, "full buckets are forgotten"


def test_limiter_off_and_memory_bound(monkeypatch):
    off = FailedLicenseLimiter(LimitsConfig(0, 60.0))
    for _ in range(100):
        off.failed("10.0.0.1")
    off.check("10.0.0.1")
    monkeypatch.setattr("authmirror.ratelimit.MAX_TRACKED_ADDRESSES", 50)
    limiter = FailedLicenseLimiter(LimitsConfig(1, 60.0))
    for i in range(200):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 50


def test_unknown_license_is_its_own_error(tmp_path):
    store = LicenseStore(load_config(write(tmp_path)).licenses)
    store.load()
    with pytest.raises(UnknownLicense):
        store.authenticate("not-a-license-at-all")
    with pytest.raises(UnknownLicense):
        store.authenticate("\udce9 surrogate from non-UTF-8 bytes")
    assert store.authenticate(LICENSE).customer == "Globex"


# -- token key rotation ------------------------------------------------------------------------


def test_previous_key_accepted_for_one_ttl_only():
    now = [1_000_000.0]
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    old_issuer = TokenIssuer(old, 300, clock=lambda: now[0])
    # a token signed with the old key, with a far expiry: what a leaked old key could mint
    forged = jwt.encode({"iss": "authmirror", "aud": "authmirror", "iat": int(now[0]), "exp": int(now[0]) + 86400, "access": []}, old, algorithm="ES256", headers={"kid": key_id(old.public_key())})
    legit = old_issuer.issue({"sub": "x"}, [])["token"]
    rotated = TokenIssuer(new, 300, previous_public_keys=(old.public_key(),), clock=lambda: now[0])
    assert rotated.verify(legit)["sub"] == "x"
    assert rotated.verify(forged)["iss"] == "authmirror"
    assert jwt.get_unverified_header(rotated.issue({}, [])["token"])["kid"] == key_id(new.public_key())
    now[0] += 301
    another = jwt.encode({"iss": "authmirror", "aud": "authmirror", "iat": int(now[0]), "exp": int(now[0]) + 86400, "access": []}, old, algorithm="ES256", headers={"kid": key_id(old.public_key())})
    with pytest.raises(RegistryError, match="retired key"):
        rotated.verify(another)
    with pytest.raises(RegistryError, match="expired"):
        rotated.verify(forged)  # the verified-token cache stops at the end of the window too
    assert rotated.verify(rotated.issue({"sub": "y"}, [])["token"])["sub"] == "y"


def test_invalid_tokens_are_401_not_crashes():
    issuer = TokenIssuer(ec.generate_private_key(ec.SECP256R1()), 300)
    for token in ("", "a.b.c", "\udce1.x.y", "eyJhbGciOiJub25lIn0.e30.", "x" * 10000):
        with pytest.raises(RegistryError) as raised:
            issuer.verify(token)
        assert raised.value.status == 401


# -- TLS settings -----------------------------------------------------------------------------


def test_tls_options_for_mitmproxy_and_own_calls(tmp_path):
    assert upstream_ssl_context(TlsConfig()) is None  # the default: system trust store, verification on
    assert mitmproxy_options(TlsConfig(), str(tmp_path)) == {"ssl_insecure": False}
    ca = TestCA(tmp_path / "ca")
    listener = ca.issue("mirror")
    config = TlsConfig(listener.certificate, listener.key, ca.path, True)
    context = upstream_ssl_context(config)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1, "the bundle replaces the default store"
    options = mitmproxy_options(config, str(tmp_path / "confdir"))
    pem = Path(options["certs"][0].split("=", 1)[1])
    assert options["ssl_verify_upstream_trusted_ca"] == str(ca.path) and options["ssl_insecure"] is False
    assert pem.stat().st_mode & 0o777 == 0o600 and b"PRIVATE KEY" in pem.read_bytes() and b"CERTIFICATE" in pem.read_bytes()
    insecure = upstream_ssl_context(TlsConfig(upstream_verify=False))
    assert insecure.verify_mode == ssl.CERT_NONE
    assert mitmproxy_options(TlsConfig(upstream_verify=False), str(tmp_path))["ssl_insecure"] is True


# -- secrets out of repr/str, constant-time comparison ---------------------------------------


def test_no_secret_in_any_repr(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    config = load_config(write(tmp_path, token={"signing_key": pem, "previous_keys": [pem]}))
    mirror = Mirror.build(config)
    try:
        registry = config.apps["acme"].registries[0]
        store = mirror.licenses
        objects = [
            config, registry, registry.password, registry.username, config.token, mirror, store.licenses[0],
            ClientCredential("basic", "u", LICENSE), parse_authorization("Bearer some.mirror.token"),
            UpstreamAuth("Basic " + VENDOR_SECRET, CachedToken(VENDOR_SECRET, 0.0, 1.0)),
            RequestContext("rid", time.monotonic(), "/v2/", credential=ClientCredential("basic", "u", LICENSE)),
        ]
        shown = "\n".join(f"{o!r}\n{o!s}" for o in objects)
        for secret in (VENDOR_SECRET, LICENSE, "some.mirror.token", "PRIVATE KEY", pem.splitlines()[1]):
            assert secret not in shown
    finally:
        mirror.close()


def test_license_comparison_is_constant_time(tmp_path, monkeypatch):
    store = LicenseStore(load_config(write(tmp_path)).licenses)
    store.load()
    compared = []
    real = licenses_module.hmac.compare_digest
    monkeypatch.setattr(licenses_module.hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    assert store.authenticate(LICENSE).customer == "Globex"
    assert compared == [(LICENSE.encode(), LICENSE.encode())]
