"""Parse WWW-Authenticate challenges (RFC 7235) as registries send them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*(?:,|$)')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "bearer", "basic" (lowercase), or "none" when the registry asks for nothing
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")


NO_AUTH = Challenge("none")


def parse_challenges(header_values: list[str]) -> list[Challenge]:
    """All challenges in one or more WWW-Authenticate values, in order."""
    challenges: list[Challenge] = []
    for value in header_values:
        rest = value.strip()
        while rest:
            match = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
            if not match:
                break
            scheme = match.group(1).lower()
            rest = rest[match.end():]
            params: dict[str, str] = {}
            while rest:
                pmatch = _PARAM_RE.match(rest)
                # A bare token followed by a space starts the next challenge.
                if not pmatch:
                    break
                key = pmatch.group(1).lower()
                params[key] = pmatch.group(2).replace('\\"', '"') if pmatch.group(2) is not None else pmatch.group(3)
                rest = rest[pmatch.end():]
            challenges.append(Challenge(scheme, params))
            rest = rest.lstrip(", ")
    return challenges


def pick_challenge(header_values: list[str]) -> Challenge | None:
    """Prefer Bearer (token auth) over Basic, as docker does."""
    challenges = parse_challenges(header_values)
    for preferred in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == preferred:
                return challenge
    return None
