"""Build OCI image layouts by hand (no Docker engine here): real tar.gz layers, config, manifest, index."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass
class Blob:
    digest: str
    size: int
    media_type: str


@dataclass
class BuiltImage:
    layout: Path
    tag: str
    manifest_digest: str  # the image manifest, or the index for multi-arch
    layers: list[Blob] = field(default_factory=list)
    config: Blob | None = None
    children: list[str] = field(default_factory=list)  # per-platform manifest digests of an index


def _write_blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    path = layout / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return f"sha256:{digest}"


def _write_blob_file(layout: Path, source: Path) -> tuple[str, int]:
    sha = hashlib.sha256()
    size = 0
    with open(source, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    target = layout / "blobs" / "sha256" / sha.hexdigest()
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return f"sha256:{sha.hexdigest()}", size


def _layer(layout: Path, size: int, rng: random.Random, name: str) -> tuple[Blob, str]:
    """A tar.gz layer with one file of `size` random bytes; returns the blob and the diff_id."""
    tmp = layout / f".layer-{name}.tmp"
    raw_sha = hashlib.sha256()

    class _Tee(io.RawIOBase):
        def __init__(self, target):
            self.target = target

        def writable(self):
            return True

        def write(self, b):
            raw_sha.update(b)
            return self.target.write(b)

    with open(tmp, "wb") as out, gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
        tee = io.BufferedWriter(_Tee(gz), buffer_size=1 << 20)
        with tarfile.open(fileobj=tee, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"data/{name}.bin")
            info.size = size
            info.mode = 0o644
            tar.addfile(info, _RandomReader(rng, size))
        tee.flush()
    digest, blob_size = _write_blob_file(layout, tmp)
    return Blob(digest, blob_size, LAYER_GZIP), f"sha256:{raw_sha.hexdigest()}"


class _RandomReader(io.RawIOBase):
    def __init__(self, rng: random.Random, size: int):
        self.rng, self.left = rng, size

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        return self.rng.randbytes(n)


def _image_manifest(layout: Path, layer_sizes: list[int], seed: int, arch: str) -> tuple[str, int, Blob, list[Blob]]:
    rng = random.Random(seed)
    layers, diff_ids = [], []
    for index, size in enumerate(layer_sizes):
        blob, diff_id = _layer(layout, size, rng, f"{seed}-{arch}-{index}")
        layers.append(blob)
        diff_ids.append(diff_id)
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/data"], "Labels": {"authmirror.test.seed": str(seed)}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_blob = Blob(_write_blob(layout, config_bytes), len(config_bytes), CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_blob.digest, "size": config_blob.size},
        "layers": [{"mediaType": b.media_type, "digest": b.digest, "size": b.size} for b in layers],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    return _write_blob(layout, manifest_bytes), len(manifest_bytes), config_blob, layers


def _write_index(layout: Path, manifests: list[dict], tag: str) -> None:
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    for m in manifests:
        index["manifests"].append({**m, "annotations": {"org.opencontainers.image.ref.name": tag}})
    index_path.write_text(json.dumps(index))


def build_image(layout: Path, tag: str, layer_sizes: list[int], seed: int = 1, arch: str = "amd64") -> BuiltImage:
    """A single-platform image in an OCI layout at `layout`, tagged `tag`."""
    layout.mkdir(parents=True, exist_ok=True)
    digest, size, config, layers = _image_manifest(layout, layer_sizes, seed, arch)
    _write_index(layout, [{"mediaType": MANIFEST, "digest": digest, "size": size}], tag)
    return BuiltImage(layout, tag, digest, layers, config)


def build_index(layout: Path, tag: str, layer_sizes: list[int], seed: int = 1, archs: tuple[str, ...] = ("amd64", "arm64")) -> BuiltImage:
    """A multi-platform image: an image index over one manifest per architecture."""
    layout.mkdir(parents=True, exist_ok=True)
    entries, children, all_layers = [], [], []
    for offset, arch in enumerate(archs):
        digest, size, _config, layers = _image_manifest(layout, layer_sizes, seed * 100 + offset, arch)
        entries.append({"mediaType": MANIFEST, "digest": digest, "size": size, "platform": {"architecture": arch, "os": "linux"}})
        children.append(digest)
        all_layers += layers
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}
    index_bytes = json.dumps(index, sort_keys=True).encode()
    index_digest = _write_blob(layout, index_bytes)
    _write_index(layout, [{"mediaType": INDEX, "digest": index_digest, "size": len(index_bytes)}], tag)
    return BuiltImage(layout, tag, index_digest, all_layers, None, children)
