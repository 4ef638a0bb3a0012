"""What a registry test produces: steps with timings, one failure diagnosis, results and exit codes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..hints import KINDS

# Exit codes of `authmirror registry test` (documented in README.md).
EXIT_OK = 0
EXIT_IMAGE = 1  # an image, tag, manifest or blob is missing or broken
EXIT_CREDENTIALS = 2  # config, vendor credentials, permissions or the customer's license
EXIT_NETWORK = 3  # DNS, connect, TLS, timeouts, rate limits, upstream 5xx

CATEGORY_EXIT = {"image": EXIT_IMAGE, "credentials": EXIT_CREDENTIALS, "network": EXIT_NETWORK}
# When images fail for different reasons, the first that applies decides the exit code:
# a credential problem usually breaks every image, and network trouble hides image problems.
CATEGORY_PRECEDENCE = ("credentials", "network", "image")

# failure kind -> category, and how reports name each kind (the kinds are shared: hints.py).
KIND_CATEGORY = {kind: category for kind, (category, _title) in KINDS.items()}
KIND_TITLES = {kind: title for kind, (_category, title) in KINDS.items()}


@dataclass
class Failure:
    """Why an image is not pullable: the step, what the registry said, and what to do about it."""

    kind: str
    message: str
    status: int | None = None  # the registry's HTTP status, when there was an answer
    code: str | None = None  # its OCI error code
    hint: str = ""
    retry_after: str | None = None
    close_tags: list[str] | None = None
    step: str = ""

    @property
    def category(self) -> str:
        return KIND_CATEGORY.get(self.kind, "network")

    @property
    def title(self) -> str:
        return KIND_TITLES.get(self.kind, self.kind.replace("_", " "))

    def to_json(self) -> dict[str, Any]:
        data = {
            "step": self.step,
            "kind": self.kind,
            "category": self.category,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
        }
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        if self.close_tags is not None:
            data["close_tags"] = self.close_tags
        return data


class StepFailed(Exception):
    """Raised inside a step: the step fails with this diagnosis and the check stops."""

    def __init__(self, failure: Failure):
        super().__init__(failure.message)
        self.failure = failure


@dataclass
class Step:
    name: str
    ok: bool | None = None  # None: not run (an earlier step failed)
    ms: float = 0.0
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "ms": round(self.ms, 1), "detail": self.detail}


@dataclass
class ImageResult:
    image: str  # as the user gave it
    mode: str  # "direct" | "via-proxy"
    steps: list[Step] = field(default_factory=list)
    failure: Failure | None = None
    registry: dict[str, str] | None = None  # app, name, type, url (direct mode)
    repository: str = ""
    reference: str = ""
    mirror_ref: str = ""  # what customers pull (direct mode)
    digest: str = ""
    media_type: str = ""
    platforms: list[str] = field(default_factory=list)
    blob_count: int = 0
    blob_bytes: int = 0
    started: float = field(default_factory=time.perf_counter)
    total_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None and all(s.ok is not False for s in self.steps)

    def finish(self, names: tuple[str, ...]) -> "ImageResult":
        """List the steps after a failure as not run, and set the total time."""
        done = {s.name for s in self.steps}
        self.steps += [Step(name) for name in names if name not in done]
        self.total_ms = (time.perf_counter() - self.started) * 1000
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "ok": self.ok,
            "mode": self.mode,
            "registry": self.registry,
            "repository": self.repository,
            "reference": self.reference,
            "mirror_ref": self.mirror_ref or None,
            "digest": self.digest or None,
            "media_type": self.media_type or None,
            "platforms": self.platforms,
            "blobs": {"count": self.blob_count, "bytes": self.blob_bytes},
            "ms": round(self.total_ms, 1),
            "steps": [s.to_json() for s in self.steps],
            "failure": self.failure.to_json() if self.failure else None,
        }


def exit_code(results: list[ImageResult]) -> int:
    categories = {r.failure.category for r in results if r.failure is not None}
    for category in CATEGORY_PRECEDENCE:
        if category in categories:
            return CATEGORY_EXIT[category]
    return EXIT_OK


def human_size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
