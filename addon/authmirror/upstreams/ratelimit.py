"""Upstream rate-limit headers (Docker Hub's `ratelimit-limit` / `ratelimit-remaining`) for pull events.

NOTE: https://docs.docker.com/docker-hub/usage/pulls/ ("ratelimit-limit: 100;w=21600").
"""

from __future__ import annotations

import re
from typing import Mapping

_VALUE_RE = re.compile(r"^\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?")


def parse_rate_limit(headers: Mapping[str, str]) -> dict[str, int] | None:
    """{"limit", "remaining", "window_s"} from the answer's headers, or None when it has none."""
    result: dict[str, int] = {}
    for header, field in (("ratelimit-limit", "limit"), ("ratelimit-remaining", "remaining")):
        value = headers.get(header)
        match = _VALUE_RE.match(value) if value else None
        if match:
            result[field] = int(match.group(1))
            if match.group(2):
                result["window_s"] = int(match.group(2))
    return result or None
