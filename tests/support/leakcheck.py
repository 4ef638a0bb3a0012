"""Every end-to-end test checks that nothing leaked (an autouse fixture, imported by tests/e2e/conftest.py).

After each test:
- no secret (vendor credentials, licenses, upstream tokens a token server issued) appears in
  any mirror answer the test received, any client output about a pull through a mirror, any
  line of any running mirror's log (mirrors run at debug verbosity), or any pull event;
- no upstream address (registries, fault servers, token servers) appears in a mirror answer;
- no bearer token the mirror issued appears in a mirror's log or pull events.

Support code registers what it starts (`forbid_everywhere`, `forbid_in_answers`, `MIRRORS`);
`http.request` and `processes.skopeo` record what clients saw (`record_answer`, `record_client_output`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SECRETS: set[str] = set()  # never anywhere
UPSTREAM_ADDRESSES: set[str] = set()  # never in what a client sees
MIRRORS: list[Any] = []  # processes.MirrorProcess, registered by processes.start_mirror
_TOKENS_ALLOWED_IN: set[Path] = set()  # logs of mirrors dumping whole flows (flow_detail >= 3)
_ANSWERS: list[tuple[str, str]] = []  # (url, status line + headers + body) of answers clients got
_CLIENT_OUTPUT: list[tuple[str, str]] = []  # (command line, stdout + stderr)


def forbid_everywhere(*values: str) -> None:
    """Never anywhere: the value itself, nor inside a Basic header (base64, at any alignment)."""
    for value in values:
        if value:
            SECRETS.add(value)
            SECRETS.update(base64_forms(value))


def base64_forms(secret: str) -> set[str]:
    """Substrings every base64 encoding of `...secret...` contains, whatever comes before or after."""
    if len(secret) < 8:
        return set()
    forms = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret.encode()).decode()
        forms.add(encoded[4:-4])  # the first and last groups mix in neighbouring bytes
    return {f for f in forms if len(f) >= 4}


def forbid_in_answers(*addresses: str) -> None:
    UPSTREAM_ADDRESSES.update(a for a in addresses if a)


def allow_mirror_tokens_in(mirror: Any) -> None:
    """This mirror dumps whole flows (flow_detail >= 3): the token answers its clients got are in its log."""
    _TOKENS_ALLOWED_IN.add(mirror.process.log_path)


def record_answer(url: str, status: int, headers: Any, body: bytes) -> None:
    head = "\n".join(f"{k}: {v}" for k, v in headers.items())
    _ANSWERS.append((url, f"{status}\n{head}\n\n{body.decode('utf-8', 'replace')}"))


def record_client_output(command: list[str], output: str) -> None:
    _CLIENT_OUTPUT.append((" ".join(command), output))


@dataclass
class _ScannedFile:
    """A growing file (mirror log, pull log) scanned incrementally; an overlap catches split secrets."""

    path: Path
    offset: int = 0
    tail: str = field(default="")

    def new_text(self) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return ""
        self.offset += len(data)
        text = self.tail + data.decode("utf-8", "replace")
        self.tail = text[-512:]
        return text


_SCANNED: dict[Path, _ScannedFile] = {}


def _mirror_files() -> list[Path]:
    files = []
    for mirror in MIRRORS:
        files.append(mirror.process.log_path)
        files.append(mirror.workdir / "pulls.jsonl")
    return files


def _mirror_tokens(answers: list[tuple[str, str]]) -> set[str]:
    tokens = set()
    for _, text in answers:
        body = text.split("\n\n", 1)[-1]
        if '"token"' in body:
            try:
                data = json.loads(body)
            except ValueError:
                continue
            if isinstance(data, dict) and isinstance(data.get("token"), str):
                tokens.add(data["token"])
    return tokens


def check() -> list[str]:
    """What leaked since the last check (and forget what was recorded)."""
    problems = []
    ports = {str(m.port) for m in MIRRORS}
    mirror_answers = [(url, text) for url, text in _ANSWERS if url.split("/")[2].rsplit(":", 1)[-1] in ports]
    mirror_pulls = [(cmd, out) for cmd, out in _CLIENT_OUTPUT if any(f"127.0.0.1:{p}/" in cmd or f"localhost:{p}/" in cmd for p in ports)]
    for where, text in mirror_answers + mirror_pulls:
        for value in SECRETS:
            if value in text:
                problems.append(f"secret {value[:6]}... in what a client saw: {where}")
        for address in UPSTREAM_ADDRESSES:
            if address in text:
                problems.append(f"upstream address {address} in what a client saw: {where}")
    mirror_tokens = _mirror_tokens(_ANSWERS)
    for path in _mirror_files():
        scanned = _SCANNED.setdefault(path, _ScannedFile(path))
        text = scanned.new_text()
        for value in SECRETS | (set() if path in _TOKENS_ALLOWED_IN else mirror_tokens):
            if value in text:
                problems.append(f"secret {value[:6]}... in {path}")
    _ANSWERS.clear()
    _CLIENT_OUTPUT.clear()
    return sorted(set(problems))


@pytest.fixture(autouse=True)
def no_leaks():
    yield
    problems = check()
    assert not problems, "\n".join(problems)
