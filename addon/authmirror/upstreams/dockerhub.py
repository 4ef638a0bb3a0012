"""`dockerhub`: Docker Hub (registry-1.docker.io), with a username and a personal access token.

Quirks:
- The registry is `registry-1.docker.io`; tokens come from `auth.docker.io/token`
  (service `registry.docker.io`), another host than the registry's: allowed here as a known realm.
- Official images live under `library/`: `nginx` upstream is `library/nginx`. A single-component
  repository name gets the prefix, as docker does.
- Pulls are rate limited per account: answers carry `ratelimit-limit` / `ratelimit-remaining`
  (e.g. `100;w=21600`), recorded in pull events; past the limit the registry answers 429 with
  Retry-After, passed to the client as TOOMANYREQUESTS.
- Use a personal access token (Account settings > Personal access tokens, "Read-only" or
  "Public Repo Read-only"), not the account password.
- Blob GETs answer 307 to `production.cloudflare.docker.com` (presigned): followed or passed like any
  storage redirect.
"""

from __future__ import annotations

from .base import Upstream

REGISTRY_URL = "https://registry-1.docker.io"
OFFICIAL_PREFIX = "library"


class DockerHubUpstream(Upstream):
    TYPE = "dockerhub"
    LABEL = "Docker Hub"
    DEFAULT_URL = REGISTRY_URL
    NEEDS_USERNAME = True
    NEEDS_PASSWORD = True
    KNOWN_AUTH_HOSTS = ("auth.docker.io",)

    def upstream_repository(self, repository: str) -> str:
        repository = super().upstream_repository(repository)
        return repository if "/" in repository else f"{OFFICIAL_PREFIX}/{repository}"
