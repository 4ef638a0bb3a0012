"""`acr`: Azure Container Registry, `https://<name>.azurecr.io`, with a service principal or a
repository-scoped token.

Quirks:
- Service principal: username = application (client) id, password = a client secret; it needs the
  `AcrPull` role on the registry.
- Repository-scoped token: username = token name, password = one of its two passwords; its scope
  map needs `content/read` (and `metadata/read` for tag lists) on the repositories.
- `/v2/` answers `Bearer realm="https://<name>.azurecr.io/oauth2/token",service="<name>.azurecr.io"`;
  the realm takes Basic auth and returns `{"access_token": ...}`.
- Blob GETs answer 307 to `<name>.blob.core.windows.net` or a regional data endpoint (presigned).
- There is no default url: the registry's login server is the url (sovereign clouds use
  azurecr.us / azurecr.cn).
"""

from __future__ import annotations

import logging

from ..config import RegistryConfig
from .base import Upstream

log = logging.getLogger("authmirror.upstream.acr")

ACR_SUFFIXES = (".azurecr.io", ".azurecr.us", ".azurecr.cn")


class AcrUpstream(Upstream):
    TYPE = "acr"
    LABEL = "Azure Container Registry"
    NEEDS_USERNAME = True
    NEEDS_PASSWORD = True

    @classmethod
    def validate(cls, registry: RegistryConfig) -> None:
        if not registry.host.endswith(ACR_SUFFIXES):
            log.warning("%s.url: %s is not an Azure Container Registry login server (<name>.azurecr.io)", registry.key, registry.host)
