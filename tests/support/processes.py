"""Start and stop the real programs the tests use (docker-registry, mitmdump), by PID, on 127.0.0.1."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import leakcheck

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "run ./scripts/test.sh (it installs docker-registry, skopeo and apache2-utils), or apt-get install them"


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise RuntimeError(f"{name} is not installed: {INSTALL_HINT}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 20.0, accept=(200, 401), context: ssl.SSLContext | None = None) -> None:
    deadline = time.time() + timeout
    last: object = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as r:
                if r.status in accept:
                    return
        except urllib.error.HTTPError as e:
            if e.code in accept:
                return
            last = e
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout} s: {last}")


@dataclass
class Process:
    """A child process we started, stopped by its PID only."""

    popen: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def start(args: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> Process:
    log_file = open(log_path, "ab")
    popen = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    log_file.close()
    return Process(popen, log_path)


def htpasswd(path: Path, users: dict[str, str]) -> None:
    require_binary("htpasswd")
    lines = []
    for user, password in users.items():
        out = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True, text=True).stdout
        lines.append(out.strip())
    path.write_text("\n".join(lines) + "\n")


@dataclass
class LocalService:
    """A server process we started on 127.0.0.1."""

    port: int
    workdir: Path
    process: Process
    scheme: str = "http"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        self.process.stop()

    def log(self) -> str:
        return self.process.log()


@dataclass
class Registry(LocalService):
    """A real Distribution registry (docker-registry) on 127.0.0.1."""

    users: dict[str, str] = field(default_factory=dict)

    def access_log(self) -> str:
        return self.process.log()


def start_registry(
    workdir: Path,
    users: dict[str, str] | None = None,
    token_auth: dict | None = None,
    storage: dict | None = None,
    port: int | None = None,
    extra: dict | None = None,
    tls: tuple[Path, Path] | None = None,
) -> Registry:
    """docker-registry with htpasswd users (default), token auth, or no auth (users={});
    `tls=(certificate, key)` serves https."""
    binary = require_binary("docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config: dict = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}, "formatter": "text"},
        "storage": storage or {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    users = {"vendor": "vendor-secret"} if users is None else users
    if token_auth is not None:
        config["auth"] = {"token": token_auth}
    elif users:
        htpasswd(workdir / "htpasswd", users)
        config["auth"] = {"htpasswd": {"realm": "basic-realm", "path": str(workdir / "htpasswd")}}
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config.update(extra or {})
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    # The S3 driver's SDK fails on AWS_CA_BUNDLE with a custom transport; the registry needs none.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    process = start([binary, "serve", str(workdir / "config.yml")], workdir / "registry.log", env=env)
    scheme = "https" if tls else "http"
    try:
        wait_for_http(f"{scheme}://127.0.0.1:{port}/v2/", context=ssl._create_unverified_context() if tls else None)
    except RuntimeError:
        process.stop()
        raise RuntimeError(f"docker-registry did not start: {process.log()[-2000:]}")
    leakcheck.forbid_in_answers(f"127.0.0.1:{port}")
    return Registry(port, workdir, process, scheme=scheme, users=users)


def skopeo(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    require_binary("skopeo")
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False, timeout=timeout)
    leakcheck.record_client_output(result.args, result.stdout + result.stderr)
    if check:
        result.check_returncode()
    return result


def clear_skopeo_cache() -> None:
    """skopeo (as root) remembers which blobs exist where; comparable runs must start without it."""
    for path in ("/var/lib/containers/cache/blob-info-cache-v1.boltdb", os.path.expanduser("~/.local/share/containers/cache/blob-info-cache-v1.boltdb")):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def push(image_layout: Path, tag: str, registry: Registry, repository: str, creds: str | None = None, all_platforms: bool = False) -> None:
    args = ["copy", "--quiet", "--dest-tls-verify=false"]
    if all_platforms:
        args.append("--all")
    if creds is None and registry.users:
        user, password = next(iter(registry.users.items()))
        creds = f"{user}:{password}"
    if creds:
        args += ["--dest-creds", creds]
    skopeo(*args, f"oci:{image_layout}:{tag}", f"docker://{registry.host}/{repository}:{tag}")


@dataclass
class MirrorProcess(LocalService):
    """`mitmdump -s addon/proxy.py` with a config written for the test."""

    config_path: Path | None = None

    def pull_events(self) -> list[dict]:
        path = self.workdir / "pulls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mitmdump_binary() -> str:
    candidate = Path(sys.executable).parent / "mitmdump"
    return str(candidate) if candidate.exists() else require_binary("mitmdump")


def write_mirror_config(workdir: Path, port: int, apps: dict, licenses: list[dict], **overrides) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "licenses.yaml").write_text(yaml.safe_dump({"licenses": licenses}))
    config = {
        "listen": f"127.0.0.1:{port}",
        "public_url": f"http://127.0.0.1:{port}",
        "token": {"signing_key": "file:token.pem", "ttl_seconds": 300},
        "licenses": {"file": "licenses.yaml"},
        "pull_log": "pulls.jsonl",
        "apps": apps,
        **overrides,
    }
    path = workdir / "authmirror.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_mirror(workdir: Path, config_path: Path, port: int, env: dict[str, str] | None = None, extra_args: list[str] | None = None, state_dir: Path | None = None, termlog: str = "debug") -> MirrorProcess:
    """`workdir` holds the config (and its pull log); mitmproxy's state and log go to `state_dir` (default: workdir)."""
    state_dir = state_dir or workdir
    args = [
        mitmdump_binary(),
        "-s", str(REPO_ROOT / "addon" / "proxy.py"),
        "--set", f"authmirror_config={config_path}",
        "--set", f"confdir={state_dir / 'mitmproxy'}",
        "--set", f"termlog_verbosity={termlog}",  # debug by default: tests check the log for leaks
        *(extra_args or []),
    ]
    process = start(args, state_dir / "mitmdump.log", env={**os.environ, **(env or {})}, cwd=state_dir)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30)
    except RuntimeError:
        process.stop()
        raise RuntimeError(f"mitmdump did not start: {process.log()[-3000:]}")
    mirror = MirrorProcess(port, workdir, process, config_path=config_path)
    leakcheck.MIRRORS.append(mirror)
    return mirror
