"""The customer's side of a test: a mirror in front of given registries, and skopeo pulling
through it with a license as password."""

from __future__ import annotations

from pathlib import Path

from . import processes


def blobs(layout: Path) -> set[str]:
    """The blob digests (hex) an OCI layout holds."""
    return {p.name for p in (layout / "blobs" / "sha256").iterdir()}


def pull(mirror: processes.MirrorProcess, image: str, dest: Path, license: str) -> set[str]:
    """skopeo copy from the mirror into an OCI layout at `dest` (fresh blob-info cache); its blobs."""
    processes.clear_skopeo_cache()
    processes.skopeo("copy", "--src-tls-verify=false", "--src-creds", f"customer:{license}", f"docker://{mirror.host}/{image}", f"oci:{dest}:pulled")
    return blobs(dest)


def start_mirror_for(workdir: Path, name: str, registries: list[dict], licenses: list[dict], env: dict[str, str]) -> processes.MirrorProcess:
    """`mitmdump -s addon/proxy.py` on a free port, with app `acme` holding `registries`."""
    port = processes.free_port()
    config = processes.write_mirror_config(workdir / name, port, {"acme": {"registries": registries}}, licenses)
    return processes.start_mirror(workdir / name, config, port, env=env)
