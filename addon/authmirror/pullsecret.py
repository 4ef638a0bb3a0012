"""Pull secrets: a license packaged as Docker client auth (~/.docker/config.json) or as a
Kubernetes `kubernetes.io/dockerconfigjson` Secret, ready for `kubectl apply -f -`."""

from __future__ import annotations

import base64
import json
import re

import yaml

from .errors import AuthMirrorError

# Kubernetes object names and namespaces: RFC 1123 labels/subdomains.
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class PullSecretError(AuthMirrorError):
    """A pull secret cannot be made from these arguments."""


def registry_host(server: str) -> str:
    """`https://mirror.example.com/` -> `mirror.example.com`: clients key auth by host[:port]."""
    host = re.sub(r"^[a-z]+://", "", server.strip()).rstrip("/")
    if not host or "/" in host or "@" in host or " " in host:
        raise PullSecretError(f"--server must be the mirror's host[:port], got {server!r}")
    return host


def docker_config(server: str, license: str, username: str = "customer") -> dict:
    """The `auths` document docker, podman, skopeo (--authfile), containerd and kubelet read."""
    auth = base64.b64encode(f"{username}:{license}".encode()).decode()
    return {"auths": {registry_host(server): {"username": username, "password": license, "auth": auth}}}


def kubernetes_secret(server: str, license: str, name: str, namespace: str | None = None, username: str = "customer") -> str:
    if len(name) > 253 or not _NAME_RE.match(name):
        raise PullSecretError(f"--name {name!r} is not a valid Kubernetes name (lowercase letters, digits, '-' and '.')")
    if namespace is not None and (len(namespace) > 63 or not _NAMESPACE_RE.match(namespace)):
        raise PullSecretError(f"--namespace {namespace!r} is not a valid Kubernetes namespace")
    config = json.dumps(docker_config(server, license, username), separators=(",", ":"))
    metadata: dict = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }
    return yaml.safe_dump(secret, sort_keys=False)
