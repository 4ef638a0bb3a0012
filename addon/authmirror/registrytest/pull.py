"""The pull steps every check ends with, as a container runtime does them: the manifest by tag
(HEAD, then GET with every Accept type), each platform's manifest of an index, and the config
and layer blobs (HEAD; `--deep` reads them fully and checks their digests, streaming)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from .model import Failure, ImageResult, Step, StepFailed, human_size
from .session import RepositoryMissing, Session, close_matches

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# What containerd, CRI-O and docker send, in their order of preference.
MANIFEST_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
ACCEPT = ", ".join(MANIFEST_TYPES)
SCHEMA1_TYPES = ("application/vnd.docker.distribution.manifest.v1+prettyjws", "application/vnd.docker.distribution.manifest.v1+json")
BLOB_CONCURRENCY = 4


@dataclass(frozen=True)
class Descriptor:
    digest: str
    size: int | None
    media_type: str
    label: str  # "config of linux/amd64", "layer 2 of linux/arm64"


@dataclass
class Manifest:
    media_type: str
    digest: str
    data: dict
    size: int
    notes: list[str] = field(default_factory=list)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES or ("manifests" in self.data and "layers" not in self.data)


async def run_step(result: ImageResult, name: str, body: Callable[[Step], Awaitable[Any]]) -> Any:
    """Run one step: time it, mark it, and on StepFailed record the failure on the result."""
    step = Step(name)
    result.steps.append(step)
    started = time.perf_counter()
    try:
        value = await body(step)
        step.ok = True
        return value
    except StepFailed as e:
        step.ok = False
        e.failure.step = name
        result.failure = e.failure
        if not step.detail:
            step.detail = e.failure.message
        raise
    finally:
        step.ms = (time.perf_counter() - started) * 1000


async def pull_steps(session: Session, result: ImageResult, name: str, reference: str, deep: bool) -> None:
    """manifest -> platforms -> blobs for repository `name` on the session's registry."""
    manifest = await run_step(result, "manifest", lambda step: check_manifest(session, step, name, reference, result))
    images = await run_step(result, "platforms", lambda step: check_platforms(session, step, name, manifest, result))
    await run_step(result, "blobs", lambda step: check_blobs(session, step, name, images, deep, result))


async def check_manifest(session: Session, step: Step, name: str, reference: str, result: ImageResult) -> Manifest:
    path = f"/v2/{name}/manifests/{reference}"
    head = await session.send("HEAD", path, {"Accept": ACCEPT})
    response = await session.send("GET", path, {"Accept": ACCEPT})
    if response.status != 200:
        raise StepFailed(await diagnose_manifest(session, response, name, reference))
    manifest = parse_manifest(session, response, reference if reference.startswith("sha") else None, what=f"manifest {reference}")
    notes = []
    if head.status != 200:
        notes.append(f"HEAD answered {head.status} (runtimes then fall back to GET)")
    elif head.header("Docker-Content-Digest") not in (None, manifest.digest):
        notes.append(f"HEAD gave another digest ({head.header('Docker-Content-Digest')})")
    result.digest, result.media_type = manifest.digest, manifest.media_type
    kind = f"index of {len(manifest.data.get('manifests') or [])} manifests" if manifest.is_index else "image manifest"
    step.detail = "; ".join([f"{kind}, {manifest.media_type}, {manifest.digest[:19]}…, {manifest.size} bytes", *notes])
    return manifest


async def diagnose_manifest(session: Session, response, name: str, reference: str) -> Failure:
    """A manifest error; for a missing tag, list the tags that exist (and tell a missing repository apart)."""
    failure = session.diagnose(response, "manifest")
    if failure.kind == "tag_not_found":
        # Distribution answers MANIFEST_UNKNOWN for a missing repository too: the tag list tells them apart.
        try:
            tags = await session.tags()
        except RepositoryMissing:
            tags, failure = None, session.diagnose(response, "repository")
        if tags is not None:
            close = close_matches(reference, tags) if tags else []
            text = f"; existing tags close to '{reference}': {', '.join(close)} ({len(tags)} tags in all)" if tags else "; the repository has no tags at all"
            failure = session.diagnose(response, "manifest", close_tags=text)
            failure.close_tags = close
    if failure.kind == "repository_not_found":
        repositories = await session.repositories()
        if repositories:
            close = close_matches(session.hint_context.get("repository", name), repositories, 4)
            failure = session.diagnose(response, "repository", close_repositories=f"; similar repositories: {', '.join(close)}")
    return failure


def parse_manifest(session: Session, response, expected_digest: str | None, what: str, expected_size: int | None = None) -> Manifest:
    body = response.body
    if response.truncated:
        raise StepFailed(session.failure("bad_manifest", f"{what} is larger than 4 MiB"))
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if expected_digest and expected_digest.startswith("sha512:"):
        digest = "sha512:" + hashlib.sha512(body).hexdigest()
    header_digest = response.header("Docker-Content-Digest")
    if expected_digest and digest != expected_digest:
        raise StepFailed(session.failure("digest_mismatch", f"{what}: content has digest {digest}, expected {expected_digest}"))
    if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
        raise StepFailed(session.failure("digest_mismatch", f"{what}: content has digest {digest}, the registry says {header_digest}"))
    if expected_size is not None and expected_size != len(body):
        raise StepFailed(session.failure("size_mismatch", f"{what}: {len(body)} bytes, the index says {expected_size}"))
    content_type = (response.header("Content-Type") or "").split(";")[0].strip()
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise StepFailed(session.failure("bad_manifest", f"{what} is not JSON")) from None
    if not isinstance(data, dict):
        raise StepFailed(session.failure("bad_manifest", f"{what} is not a JSON object"))
    media_type = data.get("mediaType") or content_type
    if media_type in SCHEMA1_TYPES or data.get("schemaVersion") == 1:
        raise StepFailed(session.failure("unsupported_manifest", f"{what} is a Docker schema 1 manifest ({media_type})"))
    if media_type not in MANIFEST_TYPES:
        raise StepFailed(session.failure("unsupported_manifest", f"{what} has media type {media_type or 'none'}, which no runtime asked for"))
    return Manifest(media_type, digest, data, len(body))


def platform_label(entry: dict) -> str:
    platform = entry.get("platform") if isinstance(entry.get("platform"), dict) else {}
    label = f"{platform.get('os', '?')}/{platform.get('architecture', '?')}"
    return label + (f"/{platform['variant']}" if platform.get("variant") else "")


def is_attestation(entry: dict) -> bool:
    annotations = entry.get("annotations") or {}
    return annotations.get("vnd.docker.reference.type") == "attestation-manifest" or platform_label(entry) == "unknown/unknown"


async def check_platforms(session: Session, step: Step, name: str, manifest: Manifest, result: ImageResult) -> list[tuple[str, Manifest]]:
    """Each platform's manifest of an index (attestations skipped: runtimes do not pull them)."""
    if not manifest.is_index:
        step.detail = "single-platform image"
        return [("", manifest)]
    entries = [e for e in manifest.data.get("manifests") or [] if isinstance(e, dict) and isinstance(e.get("digest"), str)]
    wanted = [e for e in entries if not is_attestation(e)]
    if not wanted:
        raise StepFailed(session.failure("bad_manifest", "the index lists no platform manifests"))

    async def fetch(entry: dict) -> tuple[str, Manifest]:
        label = platform_label(entry)
        response = await session.send("GET", f"/v2/{name}/manifests/{entry['digest']}", {"Accept": ACCEPT})
        if response.status != 200:
            failure = session.diagnose(response, "child")
            failure.message = f"{label} manifest {entry['digest']}: {failure.message}"
            raise StepFailed(failure)
        return label, parse_manifest(session, response, entry["digest"], f"{label} manifest", entry.get("size"))

    images = await asyncio.gather(*(fetch(e) for e in wanted))
    result.platforms = [label for label, _ in images]
    skipped = len(entries) - len(wanted)
    step.detail = ", ".join(result.platforms) + (f" ({skipped} attestation manifests skipped)" if skipped else "")
    return list(images)


def blobs_of(images: list[tuple[str, Manifest]]) -> tuple[list[Descriptor], int]:
    """Unique config and layer blobs; and how many non-distributable layers were left out."""
    seen: dict[str, Descriptor] = {}
    foreign = 0
    for label, manifest in images:
        where = f" of {label}" if label else ""
        entries = [("config", manifest.data.get("config"))] + [
            (f"layer {i}", layer) for i, layer in enumerate(manifest.data.get("layers") or [], start=1)
        ]
        for what, entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                continue
            media_type = str(entry.get("mediaType", ""))
            if "nondistributable" in media_type or "foreign" in media_type:
                foreign += 1
                continue
            size = entry.get("size") if isinstance(entry.get("size"), int) else None
            seen.setdefault(entry["digest"], Descriptor(entry["digest"], size, media_type, f"{what}{where}"))
    return list(seen.values()), foreign


async def check_blobs(session: Session, step: Step, name: str, images: list[tuple[str, Manifest]], deep: bool, result: ImageResult) -> None:
    blobs, foreign = blobs_of(images)
    if not blobs:
        raise StepFailed(session.failure("bad_manifest", "the manifest references no config or layers"))
    limit = asyncio.Semaphore(BLOB_CONCURRENCY)
    redirected = 0
    started = time.perf_counter()

    async def check(blob: Descriptor) -> int:
        async with limit:
            return await (read_blob(session, name, blob) if deep else head_blob(session, name, blob))

    async def head_blob(session: Session, name: str, blob: Descriptor) -> int:
        nonlocal redirected
        response = await session.send("HEAD", f"/v2/{name}/blobs/{blob.digest}")
        if response.status in (301, 302, 303, 307, 308):
            redirected += 1
            return blob.size or 0
        if response.status != 200:
            # A HEAD answer has no error body: GET as a runtime would, for the registry's own error.
            response, _hops = await session.send_following("GET", f"/v2/{name}/blobs/{blob.digest}", {}, lambda chunk: None)
            if response.status != 200:
                raise StepFailed(blob_failure(session, response, blob))
        length = response.header("Content-Length")
        if blob.size is not None and length and length.isdigit() and int(length) != blob.size:
            raise StepFailed(session.failure("size_mismatch", f"{blob.label} {blob.digest}: registry says {length} bytes, the manifest {blob.size}"))
        return blob.size if blob.size is not None else int(length or 0)

    sizes = await asyncio.gather(*(check(b) for b in blobs))
    result.blob_count, result.blob_bytes = len(blobs), sum(sizes)
    elapsed = time.perf_counter() - started
    detail = f"{len(blobs)} blobs present ({human_size(result.blob_bytes)})"
    if deep:
        detail = f"{len(blobs)} blobs read in full, digests verified ({human_size(result.blob_bytes)}, {human_size(result.blob_bytes / max(elapsed, 1e-6))}/s)"
    if redirected:
        detail += f"; {redirected} answered with a storage redirect"
    if foreign:
        detail += f"; {foreign} non-distributable layers not checked"
    step.detail = detail


async def read_blob(session: Session, name: str, blob: Descriptor) -> int:
    """GET the blob (following storage redirects), hashing it as it streams: never held in memory."""
    algorithm = blob.digest.split(":", 1)[0]
    hasher = hashlib.new(algorithm if algorithm in ("sha256", "sha512") else "sha256")
    size = 0

    def sink(chunk: bytes) -> None:
        nonlocal size
        hasher.update(chunk)
        size += len(chunk)

    response, _hops = await session.send_following("GET", f"/v2/{name}/blobs/{blob.digest}", {}, sink)
    if response.status != 200:
        raise StepFailed(blob_failure(session, response, blob))
    actual = f"{algorithm}:{hasher.hexdigest()}"
    if actual != blob.digest:
        raise StepFailed(session.failure("digest_mismatch", f"{blob.label}: content has digest {actual}, expected {blob.digest}"))
    if blob.size is not None and size != blob.size:
        raise StepFailed(session.failure("size_mismatch", f"{blob.label} {blob.digest}: read {size} bytes, the manifest says {blob.size}"))
    return size


def blob_failure(session: Session, response, blob: Descriptor) -> Failure:
    failure = session.diagnose(response, "blob")
    failure.message = f"{blob.label} {blob.digest}: {failure.message}"
    return failure
