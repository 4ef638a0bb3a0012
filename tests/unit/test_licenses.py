import datetime as dt
import os
import time

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from authmirror.config import LicensesConfig
from authmirror.errors import ConfigError, RegistryError
from authmirror.licenses import LicenseStore, check_entitled, fingerprint, parse_licenses
from authmirror.secrets import Secret

NOW = dt.datetime(2026, 6, 1, 12, tzinfo=dt.timezone.utc).timestamp()


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def store_with(tmp_path, licenses, clock=None, **kwargs):
    path = tmp_path / "licenses.yaml"
    path.write_text(yaml.safe_dump({"licenses": licenses}))
    store = LicenseStore(LicensesConfig(path, kwargs.get("jwt_key"), kwargs.get("revoked_file")), clock or Clock())
    store.load()
    return store, path


LICENSES = [
    {"id": "valid-license-0001", "customer": "Globex", "apps": ["acme"]},
    {"id": "expired-license-01", "customer": "Hooli", "apps": ["acme"], "expires": "2026-05-31"},
    {"id": "lastday-license-01", "customer": "Initech", "apps": ["acme"], "expires": "2026-06-01"},
    {"id": "revoked-license-01", "customer": "Umbrella", "apps": ["acme"], "revoked": True},
    {"id": "limited-license-01", "customer": "Stark", "apps": ["acme"], "images": ["vendor/app*", "tools/cli"]},
]


def test_authenticate_grants_and_denies(tmp_path):
    store, _ = store_with(tmp_path, LICENSES)
    assert store.authenticate("valid-license-0001").customer == "Globex"
    assert store.authenticate("lastday-license-01").customer == "Initech"  # valid through its last day
    with pytest.raises(RegistryError, match="expired on 2026-05-31") as e:
        store.authenticate("expired-license-01")
    assert e.value.code == "DENIED" and e.value.status == 403
    with pytest.raises(RegistryError, match="revoked") as e:
        store.authenticate("revoked-license-01")
    assert e.value.status == 403
    with pytest.raises(RegistryError, match="unknown license") as e:
        store.authenticate("valid-license-0002")
    assert e.value.code == "UNAUTHORIZED" and e.value.status == 401


def test_entitlement_by_app_and_image_pattern(tmp_path):
    store, _ = store_with(tmp_path, LICENSES)
    limited = store.authenticate("limited-license-01")
    check_entitled(limited, "acme", "vendor/app")
    check_entitled(limited, "acme", "vendor/app-worker")
    check_entitled(limited, "acme", "tools/cli")
    with pytest.raises(RegistryError, match="does not allow image 'vendor/db'"):
        check_entitled(limited, "acme", "vendor/db")
    with pytest.raises(RegistryError, match="does not include app 'beta'"):
        check_entitled(limited, "beta", "vendor/app")


def test_fingerprint_is_stable_short_and_not_the_secret():
    fp = fingerprint("valid-license-0001")
    assert fp == fingerprint("valid-license-0001") and fp.startswith("lic_") and len(fp) == 16
    assert "valid-license" not in fp


def test_hot_reload_and_broken_edit_keeps_last_good(tmp_path):
    clock = Clock()
    store, path = store_with(tmp_path, LICENSES[:1], clock)
    assert store.authenticate("valid-license-0001")
    path.write_text(yaml.safe_dump({"licenses": [{**LICENSES[0], "revoked": True}]}))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    clock.now += 2
    with pytest.raises(RegistryError, match="revoked"):
        store.authenticate("valid-license-0001")
    path.write_text("licenses: [ {id: broken")  # a half-written edit
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    clock.now += 2
    with pytest.raises(RegistryError, match="revoked"):  # still the last good version
        store.authenticate("valid-license-0001")
    assert "not valid YAML" in store.last_error


@pytest.mark.parametrize(
    "entry, key",
    [
        ({"customer": "x", "apps": ["a"]}, "licenses[0].id"),
        ({"id": "short", "customer": "x", "apps": ["a"]}, "licenses[0].id"),
        ({"id": "long-enough-id", "apps": ["a"]}, "licenses[0].customer"),
        ({"id": "long-enough-id", "customer": "x", "apps": []}, "licenses[0].apps"),
        ({"id": "long-enough-id", "customer": "x", "apps": ["a"], "expires": "someday"}, "licenses[0].expires"),
        ({"id": "long-enough-id", "customer": "x", "apps": ["a"], "revoked": "no"}, "licenses[0].revoked"),
        ({"id": "long-enough-id", "customer": "x", "apps": ["a"], "tier": "gold"}, "licenses[0].tier"),
    ],
)
def test_invalid_entries_name_the_key(entry, key):
    with pytest.raises(ConfigError) as e:
        parse_licenses({"licenses": [entry]})
    assert e.value.key == key


def test_missing_file_refuses_to_start(tmp_path):
    store = LicenseStore(LicensesConfig(tmp_path / "nope.yaml", None), Clock())
    with pytest.raises(ConfigError, match="cannot read"):
        store.load()


@pytest.fixture
def vendor_key():
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, Secret("literal", pem)


def signed(key, **claims):
    return jwt.encode({"sub": "lic-jwt-1", "customer": "Wayne", "apps": ["acme"], **claims}, key, algorithm="ES256")


def test_jwt_licenses(tmp_path, vendor_key):
    key, public = vendor_key
    revoked = tmp_path / "revoked.yaml"
    revoked.write_text("revoked: [lic-jwt-revoked]\n")
    store, _ = store_with(tmp_path, [], jwt_key=public, revoked_file=revoked)
    license = store.authenticate(signed(key, exp=int(NOW) + 3600, images=["vendor/*"]))
    assert (license.customer, license.source, license.images) == ("Wayne", "jwt", ("vendor/*",))
    with pytest.raises(RegistryError, match="expired") as e:
        store.authenticate(signed(key, exp=int(NOW) - 10))
    assert e.value.status == 403
    with pytest.raises(RegistryError, match="revoked"):
        store.authenticate(signed(key, sub="lic-jwt-revoked"))
    other = ec.generate_private_key(ec.SECP256R1())
    for bad in (signed(other), signed(key)[:-4] + "AAAA", jwt.encode({"sub": "x", "customer": "c", "apps": ["acme"]}, None, algorithm="none")):
        with pytest.raises(RegistryError) as e:
            store.authenticate(bad)
        assert e.value.status == 401
