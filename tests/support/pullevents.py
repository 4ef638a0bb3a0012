"""Pull-event logs as real clients produce them (skopeo, containerd, failed and unlicensed pulls),
for report tests and the report benchmark. Each helper writes the requests one pull makes, in order."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from authmirror.licenses import fingerprint
from authmirror.pulllog import PullEvent, utc_timestamp

START = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.timezone.utc)


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Image:
    app: str = "acme"
    registry: str = "vendor"
    repository: str = "vendor/app"
    layers: tuple[int, ...] = (1000, 2000)  # blob sizes (the config blob is 100 bytes)
    aliases: dict[str, str] = field(default_factory=dict)  # tag -> the tag whose manifest it points at ("latest": "1.1")

    @property
    def name(self) -> str:
        return f"{self.app}/{self.registry}/{self.repository}"

    def manifest_digest(self, tag: str) -> str:
        return digest_of(f"{self.name}:{self.aliases.get(tag, tag)}")

    def blobs(self, tag: str) -> list[tuple[str, int]]:
        sizes = [100, *self.layers]
        return [(digest_of(f"{self.name}:{self.aliases.get(tag, tag)}:blob{i}"), size) for i, size in enumerate(sizes)]

    @property
    def pull_bytes(self) -> int:
        return 100 + sum(self.layers)


def _cache(result: str | None) -> dict:
    """The `cache` field, present only when the mirror's cache is on (as the mirror writes it)."""
    return {"cache": result} if result else {}


@dataclass
class LogBuilder:
    now: dt.datetime = START
    events: list[dict] = field(default_factory=list)
    step: float = 0.05  # seconds between a client's consecutive requests

    def advance(self, seconds: float) -> "LogBuilder":
        self.now += dt.timedelta(seconds=seconds)
        return self

    def event(self, *, license: str | None = None, customer: str | None = None, image: Image | None = None, **fields) -> dict:
        base = PullEvent(
            ts=utc_timestamp(self.now.timestamp()),
            request_id=uuid.uuid4().hex[:16],
            license=fingerprint(license) if license else None,
            customer=customer if license else None,
            app=image.app if image else None,
            registry=image.registry if image else None,
            upstream="127.0.0.1:5001" if image else None,
            repository=image.repository if image else None,
            client_ip="10.0.0.1",
            user_agent="test",
            duration_ms=3.0,
        )
        data = {**json.loads(base.to_json()), **fields}
        self.events.append(data)
        self.now += dt.timedelta(seconds=self.step)
        return data

    # -- what clients do ------------------------------------------------------------------------

    def skopeo_pull(self, license: str, customer: str, image: Image, tag: str, platforms: int = 0, cache: str | None = None, serve: str = "proxy") -> None:
        """GET token, GET manifest by tag, (with an index: GET each platform manifest by digest), GET blobs.

        `cache` (a mirror with its cache on): "fill" (cold), "hit" (warm), "miss" (not stored) or
        "stale" (the upstream failed: the manifest is stale, the blobs are hits). With
        `serve="redirect"` blob hits are 307s to the cache's file server, carrying the blob's size.
        """
        self.event(license=license, customer=customer, image=image, action="token", method="GET", status=200)
        manifest = image.manifest_digest(tag)
        self.event(license=license, customer=customer, image=image, action="manifest", method="GET", status=200, reference=tag, digest=manifest, bytes=500, **_cache(cache))
        for platform in range(platforms):
            child = digest_of(f"{manifest}:{platform}")
            self.event(license=license, customer=customer, image=image, action="manifest", method="GET", status=200, reference=child, digest=child, bytes=400, **_cache(cache))
        self._blobs(license, customer, image, tag, "hit" if cache == "stale" else cache, serve)

    def pinned_pull(self, license: str, customer: str, image: Image, tag: str) -> None:
        """A pull by digest (image@sha256:...): GET token, GET manifest by digest, GET blobs."""
        self.event(license=license, customer=customer, image=image, action="token", method="GET", status=200)
        manifest = image.manifest_digest(tag)
        self.event(license=license, customer=customer, image=image, action="manifest", method="GET", status=200, reference=manifest, digest=manifest, bytes=500)
        self._blobs(license, customer, image, tag)

    def presence_check(self, license: str, customer: str, image: Image, tag: str) -> None:
        """kubelet/containerd checking a tag with HEAD and finding nothing new: not a pull."""
        self.event(license=license, customer=customer, image=image, action="manifest", method="HEAD", status=200, reference=tag, digest=image.manifest_digest(tag))

    def containerd_pull(self, license: str, customer: str, image: Image, tag: str) -> None:
        """HEAD by tag unauthenticated (401 challenge), POST token, HEAD by tag, GET by digest, GET blobs."""
        self.event(image=image, action="manifest", method="HEAD", status=401, reference=tag, error_code="UNAUTHORIZED", error="authentication required: log in with your license ID as password")
        self.event(license=license, customer=customer, image=image, action="token", method="POST", status=200)
        manifest = image.manifest_digest(tag)
        self.event(license=license, customer=customer, image=image, action="manifest", method="HEAD", status=200, reference=tag, digest=manifest)
        self.event(license=license, customer=customer, image=image, action="manifest", method="GET", status=200, reference=manifest, digest=manifest, bytes=500)
        self._blobs(license, customer, image, tag)

    def _blobs(self, license: str, customer: str, image: Image, tag: str, cache: str | None = None, serve: str = "proxy") -> None:
        status = 307 if cache == "hit" and serve == "redirect" else 200
        for digest, size in image.blobs(tag):
            self.event(license=license, customer=customer, image=image, action="blob", method="GET", status=status, reference=digest, digest=digest, bytes=size, **_cache(cache))

    def refused_pull(self, license: str, customer: str, image: Image, tag: str, code: str, message: str, status: int = 403) -> None:
        """containerd with a refused license: the challenge, then POST and GET token both refused."""
        self.event(image=image, action="manifest", method="HEAD", status=401, reference=tag, error_code="UNAUTHORIZED", error="authentication required: log in with your license ID as password")
        for method in ("POST", "GET"):
            self.event(license=license, customer=customer, image=image, action="token", method=method, status=status, error_code=code, error=message)

    def unknown_license_pull(self, image: Image, tag: str, client_ip: str = "10.9.9.9") -> None:
        self.event(image=image, action="token", method="GET", status=401, error_code="UNAUTHORIZED", error="unknown license: use your license ID as the registry password", client_ip=client_ip)

    def write(self, path: Path, extra_fields: dict | None = None) -> Path:
        with open(path, "w") as f:
            for event in self.events:
                f.write(json.dumps({**event, **(extra_fields or {})}, separators=(",", ":")) + "\n")
        return path
