"""Registry test results for people (step by step, a summary table) and for machines (JSON)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from .model import CATEGORY_EXIT, ImageResult, exit_code, human_size

STEP_LABELS = {"v2": "/v2/"}
SCHEMA_VERSION = 1
CATEGORY_WORDS = {"image": "image problems", "credentials": "credential/config problems", "network": "network problems"}


def marks_for(stream: TextIO) -> dict[Any, str]:
    """✓/✗ where the output can show them, plain words where it cannot."""
    try:
        "✓✗·".encode(stream.encoding or "ascii")
        return {True: "✓", False: "✗", None: "·"}
    except (UnicodeEncodeError, LookupError):
        return {True: "ok", False: "XX", None: "--"}


def render_result(result: ImageResult, marks: dict[Any, str], verbose: bool = True) -> str:
    """One image. `verbose=False` shrinks a pullable image to one line (for long runs)."""
    if result.ok and not verbose:
        return f"{marks[True]} {result.image}  pullable ({_what(result)}) in {result.total_ms:.0f} ms"
    lines = [result.image]
    for step in result.steps:
        label = STEP_LABELS.get(step.name, step.name)
        timing = f"{step.ms:8.1f} ms" if step.ok is not None else " " * 11
        detail = step.detail if step.ok is not None else "not run"
        lines.append(f"  {marks[step.ok]} {label:<12}{timing}  {detail}")
    failure = result.failure
    if failure is None:
        lines.append(f"  PULLABLE: {result.digest} ({_what(result)}) in {result.total_ms:.0f} ms")
    else:
        lines.append(f"  FAILED at {STEP_LABELS.get(failure.step, failure.step)}: {failure.title} ({CATEGORY_WORDS[failure.category][:-1]})")
        who = "mirror" if result.mode == "via-proxy" else "registry"
        lines.append(f"  {who} said: {failure.message}" if failure.status else f"  error: {failure.message}")
        if failure.hint:
            lines.append(f"  hint: {failure.hint}")
    if result.mirror_ref:
        lines.append(f"  customers pull: {result.mirror_ref}")
    return "\n".join(lines)


def _what(result: ImageResult) -> str:
    kind = f"{len(result.platforms)} platforms" if result.platforms else "single platform"
    return f"{kind}, {result.blob_count} blobs, {human_size(result.blob_bytes)}"


def render_summary(results: list[ImageResult], marks: dict[Any, str]) -> str:
    """The table CI logs show: one row per image, then the counts and the exit code's meaning."""
    width = min(max(len(r.image) for r in results), 80)
    pad = " " * (len(marks[True]) + 1)
    rows = [f"  {pad}{'IMAGE':<{width}}  {'STEP':<11}{'TIME':>10}  PROBLEM"]
    for r in results:
        failure = r.failure
        step = STEP_LABELS.get(failure.step, failure.step) if failure else "-"
        problem = f"{failure.title}: {_short(failure.message)}" if failure else "pullable"
        rows.append(f"  {marks[r.ok]} {r.image:<{width}}  {step:<11}{r.total_ms:7.0f} ms  {problem}")
    failed = [r for r in results if not r.ok]
    counts = {}
    for r in failed:
        assert r.failure is not None
        counts[r.failure.category] = counts.get(r.failure.category, 0) + 1
    line = f"{len(results)} images: {len(results) - len(failed)} pullable, {len(failed)} not pullable"
    if counts:
        line += " (" + ", ".join(f"{CATEGORY_WORDS[c]}: {n}" for c, n in sorted(counts.items())) + ")"
    code = exit_code(results)
    meaning = {0: "every image is pullable", 1: "image problems", 2: "credential/config problems", 3: "network problems"}[code]
    return "\n".join(["SUMMARY", *rows, line, f"exit code {code}: {meaning}"])


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_json(results: list[ImageResult], mode: str) -> dict[str, Any]:
    failed = [r for r in results if not r.ok]
    by_category = {c: 0 for c in CATEGORY_EXIT}
    for r in failed:
        assert r.failure is not None
        by_category[r.failure.category] += 1
    code = exit_code(results)
    return {
        "schema": SCHEMA_VERSION,
        "ok": code == 0,
        "exit_code": code,
        "mode": mode,
        "summary": {"total": len(results), "pullable": len(results) - len(failed), "failed": len(failed), "by_category": by_category},
        "images": [r.to_json() for r in results],
    }


class ProgressLine:
    """`[3/20] ✓ image` on stderr while a long run goes on; silent when stderr is not a terminal."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool | None = None):
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self.marks = marks_for(stream)

    def __call__(self, done: int, total: int, result: ImageResult) -> None:
        if not self.enabled or total < 2:
            return
        end = "\n" if done == total else ""
        self.stream.write(f"\r\033[K[{done}/{total}] {self.marks[result.ok]} {result.image}"[:200] + end)
        self.stream.flush()
