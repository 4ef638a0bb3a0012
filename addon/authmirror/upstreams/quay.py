"""`quay`: Quay.io (or Red Hat Quay), with a robot account `<org>+<robot>` and its token.

Quirks:
- Robot accounts are named `<organization>+<robot name>`; give the robot Read permission on each
  repository (or a team/default permission that grants it).
- `/v2/` answers `Bearer realm="https://quay.io/v2/auth",service="quay.io"` on the same host.
- Image names are `<organization>/<repository>`; an organization in the url is a prefix.
- Blob GETs redirect to the storage CDN (`cdn*.quay.io` / S3): followed or passed like any storage redirect.
"""

from __future__ import annotations

import logging

from ..config import RegistryConfig
from .base import Upstream

log = logging.getLogger("authmirror.upstream.quay")


class QuayUpstream(Upstream):
    TYPE = "quay"
    LABEL = "Quay"
    DEFAULT_URL = "https://quay.io"
    NEEDS_USERNAME = True
    NEEDS_PASSWORD = True

    @classmethod
    def validate(cls, registry: RegistryConfig) -> None:
        username = registry.username.value if registry.username else ""
        if username and "+" not in username:
            log.warning("%s.username: %r is not a robot account (<org>+<name>); robot accounts are recommended for Quay", registry.key, username)
