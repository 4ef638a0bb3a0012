"""`authmirror license`: atomic edits of the licenses file, signed licenses, pull secrets."""

import base64
import contextlib
import io
import json
import os
import stat
import threading

import jwt
import pytest
import yaml

from authmirror import licensetools
from authmirror.cli.main import main
from authmirror.config import LicensesConfig
from authmirror.errors import RegistryError
from authmirror.licenses import LicenseStore, fingerprint
from authmirror.secrets import Secret

LICENSES_TEXT = """\
# Customer licenses. The id is the secret a customer uses as registry password.
licenses:
  - id: globex-license-0001   # signed 2026-01-10
    customer: Globex Corp
    apps: [acme]
    expires: 2030-06-30
"""


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def files(tmp_path):
    """A config naming a licenses file, a revocation list and (later) a vendor public key."""
    (tmp_path / "licenses.yaml").write_text(LICENSES_TEXT)
    os.chmod(tmp_path / "licenses.yaml", 0o600)
    (tmp_path / "revoked.yaml").write_text("revoked: []\n")
    config = tmp_path / "authmirror.yaml"
    config.write_text(yaml.safe_dump({
        "licenses": {"file": "licenses.yaml", "revoked_file": "revoked.yaml", "jwt_public_key": "file:vendor-license.pub"},
        "apps": {"acme": {"registries": [{"name": "vendor", "type": "basic", "url": "http://127.0.0.1:9", "username": "u", "password": "env:NOT_SET_HERE"}]}},
    }))
    return tmp_path, str(config)


def store_for(tmp_path, public_key=True) -> LicenseStore:
    pem = Secret("test", (tmp_path / "vendor-license.pub").read_text()) if public_key else None
    store = LicenseStore(LicensesConfig(tmp_path / "licenses.yaml", pem, tmp_path / "revoked.yaml"))
    store.load()
    return store


def test_add_ls_revoke_rm_keep_comments_and_mode(files):
    tmp_path, config = files
    code, out, _ = run("license", "add", "-c", config, "--customer", "Initech", "--app", "acme", "--expires", "2027-01-31", "--images", "vendor/app*", "--json")
    assert code == 0
    added = json.loads(out)
    assert added["fingerprint"] == fingerprint(added["id"]) and len(added["id"]) == 32
    text = (tmp_path / "licenses.yaml").read_text()
    assert text.startswith(LICENSES_TEXT)  # the vendor's comments and layout are untouched
    assert "expires: 2027-01-31\n" in text and "images: [vendor/app*]" in text
    assert stat.S_IMODE(os.stat(tmp_path / "licenses.yaml").st_mode) == 0o600

    code, out, _ = run("license", "ls", "-c", config, "--json")
    listed = {row["fingerprint"]: row for row in json.loads(out)}
    assert listed[added["fingerprint"]] == {
        "fingerprint": added["fingerprint"], "customer": "Initech", "apps": ["acme"], "images": ["vendor/app*"],
        "expires": "2027-01-31", "status": "active", "source": "file",
    }
    assert "id" not in listed[fingerprint("globex-license-0001")]  # ids are secrets: only with --show-ids
    code, out, _ = run("license", "ls", "-c", config)
    assert fingerprint("globex-license-0001") in out and "globex-license-0001" not in out

    assert run("license", "revoke", "-c", config, added["fingerprint"])[0] == 0
    with pytest.raises(RegistryError, match="revoked"):
        _authenticate(tmp_path, added["id"])
    assert run("license", "rm", "-c", config, "globex-license-0001")[0] == 0
    remaining = yaml.safe_load((tmp_path / "licenses.yaml").read_text())["licenses"]
    assert [entry["customer"] for entry in remaining] == ["Initech"] and remaining[0]["revoked"] is True


def _authenticate(tmp_path, secret):
    store = LicenseStore(LicensesConfig(tmp_path / "licenses.yaml", None))
    store.load()
    return store.authenticate(secret)


def test_unknown_license_and_invalid_edit_change_nothing(files):
    tmp_path, config = files
    before = (tmp_path / "licenses.yaml").read_bytes()
    code, _, err = run("license", "rm", "-c", config, "lic_000000000000")
    assert code == 1 and "no license" in err
    code, _, err = run("license", "add", "-c", config, "--customer", "X", "--app", "acme", "--id", "short")
    assert code == 2 and "at least 8 characters" in err
    code, _, err = run("license", "add", "-c", config, "--customer", "X", "--app", "acme", "--id", "globex-license-0001")
    assert code == 2 and "duplicate" in err
    assert (tmp_path / "licenses.yaml").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_edits_lose_nothing_and_readers_never_see_half_a_file(files):
    tmp_path, _ = files
    path = tmp_path / "licenses.yaml"
    stop = threading.Event()
    seen: list[int] = []

    def reader():
        while not stop.is_set():
            seen.append(len(yaml.safe_load(path.read_text())["licenses"]))  # raises on a torn file

    def writer(n):
        for i in range(5):
            licensetools.add_license(path, f"Customer {n}-{i}", ["acme"])

    watcher = threading.Thread(target=reader)
    watcher.start()
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    watcher.join()
    assert len(yaml.safe_load(path.read_text())["licenses"]) == 1 + 20
    assert seen == sorted(seen) and len(seen) > 1


def test_a_running_store_sees_edits(files):
    tmp_path, config = files
    now = [1_800_000_000.0]
    store = LicenseStore(LicensesConfig(tmp_path / "licenses.yaml", None), clock=lambda: now[0])
    store.load()
    code, out, _ = run("license", "add", "-c", config, "--customer", "Hooli", "--app", "acme", "--json")
    new_id = json.loads(out)["id"]
    now[0] += 2
    assert store.authenticate(new_id).customer == "Hooli"
    run("license", "revoke", "-c", config, new_id)
    now[0] += 2
    with pytest.raises(RegistryError, match="revoked"):
        store.authenticate(new_id)


# -- signed licenses -----------------------------------------------------------------------------


def keygen(tmp_path, name="vendor-license", algorithm="ES256"):
    code, out, _ = run("license", "keygen", "--out", str(tmp_path / f"{name}.pem"), "--algorithm", algorithm)
    assert code == 0
    return tmp_path / f"{name}.pem"


def issue(key, *extra) -> str:
    code, out, _ = run("license", "issue", "--key", str(key), "--customer", "Soylent", "--app", "acme", *extra)
    assert code == 0
    return out.strip()


def verify(config, token, *extra) -> tuple[int, dict]:
    code, out, _ = run("license", "verify", "-c", config, token, "--json", *extra)
    return code, json.loads(out)


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
def test_signed_license_valid(files, algorithm):
    tmp_path, config = files
    key = keygen(tmp_path, algorithm=algorithm)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    token = issue(key, "--expires", "2030-01-31", "--images", "vendor/app*")
    assert jwt.get_unverified_header(token)["alg"] == algorithm
    license = store_for(tmp_path).authenticate(token)
    assert (license.customer, sorted(license.apps), license.images, license.source) == ("Soylent", ["acme"], ("vendor/app*",), "jwt")
    code, verdict = verify(config, token)
    assert code == 0 and verdict["valid"] and verdict["reasons"] == []
    assert verdict["grants"]["customer"] == "Soylent" and verdict["grants"]["images"] == ["vendor/app*"]
    assert verdict["grants"]["fingerprint"] == license.fingerprint


def test_signed_license_expired(files):
    tmp_path, config = files
    token = issue(keygen(tmp_path), "--expires", "2020-01-31")
    with pytest.raises(RegistryError, match="expired") as e:
        store_for(tmp_path).authenticate(token)
    assert e.value.status == 403
    code, verdict = verify(config, token)
    assert code == 1 and verdict["reasons"] == ["expired on 2020-02-01 00:00 UTC"]


def test_signed_license_wrong_key(files):
    tmp_path, config = files
    keygen(tmp_path)
    other = keygen(tmp_path, "other", algorithm="RS256")
    token = issue(other, "--expires", "2030-01-31")
    with pytest.raises(RegistryError, match="unknown license") as e:
        store_for(tmp_path).authenticate(token)  # an RS256 token against an EC key: refused, not a crash
    assert e.value.status == 401
    code, verdict = verify(config, token)
    assert code == 1 and verdict["reasons"][0].startswith("signed with a different key")


def test_signed_license_tampered(files):
    tmp_path, config = files
    token = issue(keygen(tmp_path), "--expires", "2030-01-31", "--images", "vendor/app")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["images"] = ["*"]  # the customer widens their own license
    forged = ".".join([header, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("="), signature])
    with pytest.raises(RegistryError, match="unknown license"):
        store_for(tmp_path).authenticate(forged)
    code, verdict = verify(config, forged)
    assert code == 1 and verdict["reasons"] == ["the signature does not match: the token was altered after it was signed"]


def test_signed_license_revoked(files):
    tmp_path, config = files
    token = issue(keygen(tmp_path), "--expires", "2030-01-31")
    store = store_for(tmp_path)
    assert store.authenticate(token).customer == "Soylent"
    code, out, _ = run("license", "revoke", "-c", config, token)
    assert code == 0 and "revocation list" in out
    with pytest.raises(RegistryError, match="revoked"):
        store_for(tmp_path).authenticate(token)
    code, verdict = verify(config, token)
    assert code == 1 and verdict["reasons"] == ["revoked: it is on the revocation list"]
    listed = {row["fingerprint"]: row for row in json.loads(run("license", "ls", "-c", config, "--json")[1])}
    assert listed[verdict["grants"]["fingerprint"]]["status"] == "revoked"


def test_issue_refuses_a_missing_key(tmp_path):
    code, _, err = run("license", "issue", "--key", str(tmp_path / "none.pem"), "--customer", "X", "--app", "acme", "--expires", "never")
    assert code == 1 and "cannot read the vendor key" in err


# -- pull secrets ---------------------------------------------------------------------------------


def test_pull_secret_kubernetes_and_docker_config(files):
    tmp_path, config = files
    code, out, _ = run("license", "pull-secret", "-c", config, "--license", fingerprint("globex-license-0001"), "--server", "https://mirror.example.com/", "--namespace", "shop", "--name", "acme-pull")
    assert code == 0
    secret = yaml.safe_load(out)
    assert secret["kind"] == "Secret" and secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"] == {"name": "acme-pull", "namespace": "shop"}
    docker = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    entry = docker["auths"]["mirror.example.com"]
    assert entry["password"] == "globex-license-0001"
    assert base64.b64decode(entry["auth"]).decode() == "customer:globex-license-0001"
    code, out, _ = run("license", "pull-secret", "-c", config, "--license", "any-literal-license", "--server", "127.0.0.1:5000", "--format", "docker-config")
    assert json.loads(out)["auths"]["127.0.0.1:5000"]["password"] == "any-literal-license"
    code, _, err = run("license", "pull-secret", "-c", config, "--license", "x" * 10, "--server", "m", "--name", "Bad_Name")
    assert code == 1 and "not a valid Kubernetes name" in err
