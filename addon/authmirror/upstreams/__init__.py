"""Upstream registry types: one module per type, one explicit type-to-class table."""

from __future__ import annotations

from .anonymous import AnonymousUpstream
from .base import Upstream, UpstreamAuth
from .basic import BasicUpstream

PROVIDERS: dict[str, type[Upstream]] = {
    "basic": BasicUpstream,
    "anonymous": AnonymousUpstream,
}


def provider_class(registry_type: str) -> type[Upstream] | None:
    return PROVIDERS.get(registry_type)


def make_upstream(registry, **kwargs) -> Upstream:
    return PROVIDERS[registry.type](registry, **kwargs)


__all__ = ["PROVIDERS", "Upstream", "UpstreamAuth", "make_upstream", "provider_class"]
