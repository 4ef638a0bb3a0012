"""`ghcr`: GitHub Container Registry (ghcr.io), with a GitHub username and a personal access token.

Quirks:
- The token needs the `read:packages` scope (a classic personal access token; fine-grained tokens
  do not cover packages). The account must be able to read the package (org member or granted access).
- `/v2/` answers `Bearer realm="https://ghcr.io/token",service="ghcr.io"`; the realm takes the
  username and token as Basic auth and returns `{"token": ...}` per repository scope.
- Image names are `<owner>/<image>`; an owner in the url (`https://ghcr.io/<org>`) is a prefix.
- Blob GETs answer 307 to `pkg-containers.githubusercontent.com` (presigned): followed or passed
  like any storage redirect.
"""

from __future__ import annotations

from .base import Upstream


class GhcrUpstream(Upstream):
    TYPE = "ghcr"
    LABEL = "GitHub Container Registry"
    DEFAULT_URL = "https://ghcr.io"
    NEEDS_USERNAME = True
    NEEDS_PASSWORD = True
