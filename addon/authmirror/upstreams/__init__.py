"""Upstream registry types: one module per type, one explicit type-to-class table."""

from __future__ import annotations

from .acr import AcrUpstream
from .anonymous import AnonymousUpstream
from .base import Upstream, UpstreamAuth
from .basic import BasicUpstream
from .dockerhub import DockerHubUpstream
from .ecr import EcrUpstream
from .gar import GarUpstream
from .gcr import GcrUpstream
from .ghcr import GhcrUpstream
from .quay import QuayUpstream

PROVIDERS: dict[str, type[Upstream]] = {
    "ecr": EcrUpstream,
    "gcr": GcrUpstream,
    "gar": GarUpstream,
    "ghcr": GhcrUpstream,
    "dockerhub": DockerHubUpstream,
    "quay": QuayUpstream,
    "acr": AcrUpstream,
    "basic": BasicUpstream,
    "anonymous": AnonymousUpstream,
}


def provider_class(registry_type: str) -> type[Upstream] | None:
    return PROVIDERS.get(registry_type)


def make_upstream(registry, **kwargs) -> Upstream:
    return PROVIDERS[registry.type](registry, **kwargs)


__all__ = ["PROVIDERS", "Upstream", "UpstreamAuth", "make_upstream", "provider_class"]
