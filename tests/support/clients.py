"""Real container clients besides skopeo: podman with private storage, and containerd's `ctr`
against a private containerd daemon (root, state and socket in a temp dir; the CRI plugin off).
Both pull over plain http with a license as password, as NOTES.md describes."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import leakcheck
from .processes import Process, require_binary, start


def _run(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    leakcheck.record_client_output(args, result.stdout + result.stderr)
    return result


@dataclass
class Podman:
    """podman with its own storage (vfs) under `root`; its runroot must be short (<= 50 chars)."""

    root: Path
    runroot: Path

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        require_binary("podman")
        return _run(["podman", "--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "vfs", *args])

    def pull(self, reference: str, license: str) -> subprocess.CompletedProcess:
        return self("pull", "--tls-verify=false", "--creds", f"customer:{license}", reference)

    def digest(self, reference: str) -> str:
        result = self("image", "inspect", reference)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)[0]["Digest"]

    def remove(self) -> None:
        self("system", "reset", "--force")
        shutil.rmtree(self.runroot, ignore_errors=True)


def new_podman(workdir: Path) -> Podman:
    return Podman(workdir / "root", Path(tempfile.mkdtemp(prefix="am-podman-")))


@dataclass
class Containerd:
    process: Process
    socket: Path

    def ctr(self, *args: str) -> subprocess.CompletedProcess:
        return _run(["ctr", "-a", str(self.socket), *args])

    def pull(self, reference: str, license: str) -> subprocess.CompletedProcess:
        return self.ctr("images", "pull", "--plain-http", "--user", f"customer:{license}", reference)

    def digest(self, reference: str) -> str:
        result = self.ctr("images", "ls")
        assert result.returncode == 0, result.stderr
        for line in result.stdout.splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == reference:
                return fields[2]
        raise AssertionError(f"{reference} not in ctr images ls:\n{result.stdout}")

    def stop(self) -> None:
        self.process.stop()


def start_containerd(workdir: Path) -> Containerd:
    require_binary("containerd")
    require_binary("ctr")
    workdir.mkdir(parents=True, exist_ok=True)
    socket = workdir / "containerd.sock"
    (workdir / "config.toml").write_text(
        "version = 2\n"
        f'root = "{workdir / "root"}"\n'
        f'state = "{workdir / "state"}"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{socket}"\n'
        f'[ttrpc]\n  address = "{socket}.ttrpc"\n'
    )
    process = start(["containerd", "--config", str(workdir / "config.toml")], workdir / "containerd.log")
    deadline = time.time() + 30
    while time.time() < deadline:
        if socket.exists() and subprocess.run(["ctr", "-a", str(socket), "version"], capture_output=True).returncode == 0:
            return Containerd(process, socket)
        if process.popen.poll() is not None:
            break
        time.sleep(0.2)
    process.stop()
    raise RuntimeError(f"containerd did not start: {process.log()[-2000:]}")
