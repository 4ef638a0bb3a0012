"""`basic`: any Distribution-compatible registry with a username and password.

Quirks:
- Works whether the registry takes Basic directly (htpasswd) or answers with a Bearer challenge
  (token auth: Harbor, GitLab, Nexus, ...); the base class handles both.
- A registry whose token service lives on another host needs that host in `auth_hosts`.
"""

from __future__ import annotations

from .base import Upstream


class BasicUpstream(Upstream):
    TYPE = "basic"
    LABEL = "registry"
    NEEDS_USERNAME = True
    NEEDS_PASSWORD = True
