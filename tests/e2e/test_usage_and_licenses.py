"""License tooling and usage reports against a running mirror: edits take effect without a restart,
signed licenses, pull secrets used by skopeo, reports of real pulls, pull-log rotation under load."""

import base64
import concurrent.futures
import contextlib
import io
import json
import time
from pathlib import Path

import pytest
import yaml

from authmirror.cli.main import main
from authmirror.licenses import fingerprint
from authmirror.logreader import ReadStats, expand_logs, read_events
from tests.support import processes
from tests.support.http import basic, request

from .conftest import MIRROR_ENV, license_entries, mirror_apps

pytestmark = pytest.mark.e2e

IMAGE = "proxy/acme/vendor/vendor/app"
ROTATE_AT = 8 * 1024
EFFECT_WITHIN = 5.0  # seconds; DESIGN promises well under 15


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def licensed(workdir, upstream, token_upstream):
    """A mirror reading signed licenses and a revocation list, its pull log rotating at 8 KiB."""
    home = workdir / "licensing"
    home.mkdir(parents=True, exist_ok=True)
    assert cli("license", "keygen", "--out", str(home / "vendor-license.pem"))[0] == 0
    (home / "revoked.yaml").write_text("revoked: []\n")
    port = processes.free_port()
    config = processes.write_mirror_config(
        home, port, mirror_apps(upstream, token_upstream), license_entries(),
        pull_log={"path": "pulls.jsonl", "max_size": "8KiB", "keep": 500},
        # this mirror is fed forged and unknown licenses on purpose: the per-address limit is tested elsewhere
        limits={"failed_license_attempts": 0},
    )
    settings = yaml.safe_load(config.read_text())
    settings["licenses"] = {"file": "licenses.yaml", "jwt_public_key": "file:vendor-license.pub", "revoked_file": "revoked.yaml"}
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    mirror = processes.start_mirror(home, config, port, env=MIRROR_ENV)
    yield mirror
    mirror.stop()


def config_of(mirror) -> str:
    return str(mirror.config_path)


def manifest(mirror, license: str, tag: str = "1.0"):
    return request("GET", f"{mirror.url}/v2/{IMAGE}/manifests/{tag}", {**basic(license), "Accept": "application/vnd.oci.image.manifest.v1+json"})


def accepted(mirror, license: str) -> bool:
    """HEAD, not GET: a check is not a pull, so it does not show up in the reports as one."""
    answer = request("HEAD", f"{mirror.url}/v2/{IMAGE}/manifests/1.0", {**basic(license), "Accept": "application/vnd.oci.image.manifest.v1+json"})
    return answer.status == 200


def wait_for(check, what: str) -> float:
    """Seconds until check() holds; fails after EFFECT_WITHIN."""
    began = time.monotonic()
    while time.monotonic() - began < EFFECT_WITHIN:
        if check():
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"{what} did not take effect within {EFFECT_WITHIN} s")


def pull(mirror, dest: Path, license: str | None = None, authfile: Path | None = None, tag: str = "1.0", check: bool = True):
    processes.clear_skopeo_cache()
    creds = ["--authfile", str(authfile)] if authfile else ["--src-creds", f"customer:{license}"]
    return processes.skopeo("copy", "--src-tls-verify=false", *creds, f"docker://{mirror.host}/{IMAGE}:{tag}", f"oci:{dest}:pulled", check=check)


def add_license(mirror, customer: str) -> str:
    code, out, err = cli("license", "add", "-c", config_of(mirror), "--customer", customer, "--app", "acme", "--json")
    assert code == 0, err
    return json.loads(out)["id"]


def events_of(mirror) -> list[dict]:
    return list(read_events(expand_logs([mirror.workdir / "pulls.jsonl"]), ReadStats()))


def events_when(mirror, condition) -> list[dict]:
    """The events once condition(events) holds: an event is written when mitmproxy has finished
    the answer, which can be a moment after the client has what it needs and has moved on."""
    wait_for(lambda: condition(events_of(mirror)), "the pull events")
    return events_of(mirror)


def test_license_edits_take_effect_without_restart(licensed, tmp_path):
    pid = licensed.process.popen.pid
    license = add_license(licensed, "Wayne Enterprises")
    added = wait_for(lambda: manifest(licensed, license).status == 200, "license add")
    pull(licensed, tmp_path / "pulled", license)

    assert cli("license", "revoke", "-c", config_of(licensed), license)[0] == 0
    revoked = wait_for(lambda: manifest(licensed, license).status == 403, "license revoke")
    [error] = manifest(licensed, license).errors()
    assert error["code"] == "DENIED" and "license for Wayne Enterprises has been revoked" in error["message"]
    assert pull(licensed, tmp_path / "refused", license, check=False).returncode != 0

    assert cli("license", "rm", "-c", config_of(licensed), fingerprint(license))[0] == 0
    removed = wait_for(lambda: manifest(licensed, license).status == 401, "license rm")
    assert "unknown license" in manifest(licensed, license).errors()[0]["message"]
    assert licensed.process.popen.poll() is None and licensed.process.popen.pid == pid  # never restarted
    print(f"license add took effect in {added:.1f} s, revoke in {revoked:.1f} s, rm in {removed:.1f} s")


def test_signed_licenses_through_the_mirror(licensed, workdir, tmp_path):
    key = workdir / "licensing" / "vendor-license.pem"
    config = config_of(licensed)

    def issue(*args: str, with_key: Path = key) -> str:
        code, out, err = cli("license", "issue", "--key", str(with_key), "--customer", "Soylent Signed", "--app", "acme", *args)
        assert code == 0, err
        return out.strip()

    valid = issue("--expires", "2030-12-31", "--images", "vendor/app")
    pull(licensed, tmp_path / "valid", valid)
    signed_manifests = lambda events: [e for e in events if e["customer"] == "Soylent Signed" and e["action"] == "manifest"]  # noqa: E731
    [event] = signed_manifests(events_when(licensed, signed_manifests))
    assert event["license"].startswith("lic_") and valid not in json.dumps(events_of(licensed))

    expired = issue("--expires", "2024-01-31")
    answer = manifest(licensed, expired)
    assert answer.status == 403 and "expired on 2024-02-01" in answer.errors()[0]["message"]

    assert cli("license", "keygen", "--out", str(tmp_path / "stranger.pem"))[0] == 0
    stranger = issue("--expires", "2030-12-31", with_key=tmp_path / "stranger.pem")
    assert manifest(licensed, stranger).status == 401

    header, payload, signature = valid.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["images"] = ["*"]
    tampered = ".".join([header, base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("="), signature])
    assert manifest(licensed, tampered).status == 401

    code, out, _ = cli("license", "verify", "-c", config, valid)
    assert code == 0 and out.startswith("VALID") and "customer: Soylent Signed" in out
    assert cli("license", "revoke", "-c", config, valid)[0] == 0
    wait_for(lambda: manifest(licensed, valid).status == 403, "revoking a signed license")
    assert "revoked" in manifest(licensed, valid).errors()[0]["message"]
    code, out, _ = cli("license", "verify", "-c", config, valid)
    assert code == 1 and "why not: revoked" in out


def test_pull_secret_accepted_by_skopeo(licensed, tmp_path):
    license = add_license(licensed, "Cyberdyne")
    wait_for(lambda: accepted(licensed, license), "license add")
    code, out, _ = cli("license", "pull-secret", "-c", config_of(licensed), "--license", fingerprint(license), "--server", licensed.host, "--format", "docker-config")
    assert code == 0
    (tmp_path / "auth.json").write_text(out)
    pull(licensed, tmp_path / "via-docker-config", authfile=tmp_path / "auth.json")

    code, out, _ = cli("license", "pull-secret", "-c", config_of(licensed), "--license", license, "--server", licensed.host, "--namespace", "shop", "--name", "acme-pull")
    secret = yaml.safe_load(out)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    (tmp_path / "from-secret.json").write_bytes(base64.b64decode(secret["data"][".dockerconfigjson"]))
    pull(licensed, tmp_path / "via-secret", authfile=tmp_path / "from-secret.json")
    events_when(licensed, lambda events: any(e["customer"] == "Cyberdyne" and e["action"] == "manifest" and e["status"] == 200 for e in events))


def test_report_and_logs_of_real_pulls(licensed, built, tmp_path, capsys):
    license = add_license(licensed, "Report Co")
    wait_for(lambda: accepted(licensed, license), "license add")
    before = {e["request_id"] for e in events_of(licensed)}
    pull(licensed, tmp_path / "first", license)
    pull(licensed, tmp_path / "second", license)
    assert pull(licensed, tmp_path / "missing", license, tag="9.9.9", check=False).returncode != 0
    image = built.single
    pulled_bytes = image.config.size + sum(layer.size for layer in image.layers)

    def blob_bytes(events):
        return sum(e["bytes"] for e in events if e["request_id"] not in before and e.get("customer") == "Report Co" and e["action"] == "blob" and e["status"] == 200)

    def failed_manifest(events):
        return any(e.get("customer") == "Report Co" and e.get("error_code") == "MANIFEST_UNKNOWN" for e in events)

    events = events_when(licensed, lambda events: blob_bytes(events) >= 2 * pulled_bytes and failed_manifest(events))
    assert blob_bytes(events) == 2 * pulled_bytes  # the events are right, so the report can be
    new = [e for e in events if e["request_id"] not in before and e.get("customer") == "Report Co"]

    code, out, _ = cli("report", "-c", config_of(licensed), "--json")  # the log comes from the config, rotated files too
    assert code == 0
    report = json.loads(out)
    assert report["files"] > 1
    [row] = [r for r in report["rows"] if r["key"] == "Report Co"]
    assert (row["pulls"], row["egress_bytes"], row["failed_pulls"], row["images"], row["versions"]) == (2, 2 * pulled_bytes, 1, 1, 1)
    [failure] = [f for f in report["failures"] if f["customer"] == "Report Co"]
    assert failure["error_code"] == "MANIFEST_UNKNOWN" and failure["failed_pulls"] == 1
    [version] = [v for v in report["versions"] if v["customer"] == "Report Co"]
    assert version["version"] == "1.0" and version["image"] == "acme/vendor/vendor/app"

    listed = json.loads(cli("license", "ls", "-c", config_of(licensed), "--json")[1])
    assert {e["license"] for e in new} == {r["fingerprint"] for r in listed if r["customer"] == "Report Co"}  # same fingerprint

    code, out, _ = cli("logs", "-c", config_of(licensed), "--customer", "report co", "-n", "50")
    assert code == 0
    assert "Report Co  GET manifest acme/vendor/vendor/app:1.0  200" in out
    assert "Report Co  GET manifest acme/vendor/vendor/app:9.9.9  404 MANIFEST_UNKNOWN" in out


def test_rotation_under_concurrent_requests(licensed):
    """Requests from 16 threads while the log rotates every few dozen lines: every event, whole, once."""
    license = add_license(licensed, "Load Co")
    wait_for(lambda: accepted(licensed, license), "license add")

    def one(_):
        answer = request("HEAD", f"{licensed.url}/v2/{IMAGE}/manifests/1.0", {**basic(license), "Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert answer.status == 200
        return answer.headers["X-Request-Id"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        request_ids = list(pool.map(one, range(400)))
    deadline = time.monotonic() + 10
    while True:  # the event is written when the answer is complete: give the last ones a moment
        stats = ReadStats()
        events = list(read_events(expand_logs([licensed.workdir / "pulls.jsonl"]), stats))
        logged = [e["request_id"] for e in events if e["request_id"] in set(request_ids)]
        if len(logged) >= 400 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert stats.skipped == 0  # no torn lines
    assert sorted(logged) == sorted(request_ids)  # each request exactly once
    files = sorted((licensed.workdir).glob("pulls.jsonl*"))
    assert len(files) > 10 and all(f.stat().st_size <= ROTATE_AT for f in files)
