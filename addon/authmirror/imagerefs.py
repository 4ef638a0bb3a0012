"""Image references: parse them as container runtimes do, and map them to configured registries.

A reference is `[DOMAIN/]PATH[:TAG][@DIGEST]`. As in docker's `reference.ParseNormalizedNamed`,
the first component is a domain only when it contains `.` or `:` or is `localhost`; otherwise the
image is on Docker Hub (`nginx` = `docker.io/library/nginx`).

Direct checks (`registry test --image REF`) take REF in any of three forms, tried in this order:
- with `--registry [APP/]NAME`: `repository[:tag]` inside that registry;
- the customer's mirror path: `<public_url host>/proxy/<app>/<registry>/<repository>:<tag>` or
  `<custom domain>/<registry>/<repository>:<tag>`;
- the upstream reference: a configured registry's `host[:port]` and path prefix, then the repository.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import Config, RegistryConfig
from .errors import ConfigError
from .routing import DIGEST_RE, NAME_RE, TAG_RE

DOCKER_HUB = "docker.io"
# Docker Hub answers under several names; a `dockerhub` registry's url is usually registry-1.docker.io.
DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
DEFAULT_TAG = "latest"


class ImageReferenceError(ConfigError):
    """An image reference that cannot be parsed or mapped; a config/usage problem (exit 2)."""

    def __init__(self, message: str):
        super().__init__("", message)


@dataclass(frozen=True)
class ImageRef:
    domain: str  # "host[:port]", "" when the reference named none
    path: str  # repository path as written (after docker.io normalisation when asked)
    tag: str = ""
    digest: str = ""

    @property
    def reference(self) -> str:
        """What to ask the manifests endpoint for: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def tag_or_default(self) -> str:
        return self.tag or ("" if self.digest else DEFAULT_TAG)

    def suffix(self) -> str:
        return (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        prefix = f"{self.domain}/" if self.domain else ""
        return f"{prefix}{self.path}{self.suffix()}"


def _is_domain(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def parse_reference(text: str, *, normalize: bool = True) -> ImageRef:
    """Parse an image reference. `normalize` applies Docker Hub's defaults (docker.io, library/)."""
    text = text.strip()
    rest, _, digest = text.partition("@")
    if digest and not DIGEST_RE.match(digest):
        raise ImageReferenceError(f"invalid image reference {text!r}: bad digest {digest!r}")
    domain = ""
    first, slash, remainder = rest.partition("/")
    if slash and _is_domain(first):
        domain, rest = first.lower(), remainder
    tag = ""
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not TAG_RE.match(tag):
            raise ImageReferenceError(f"invalid image reference {text!r}: bad tag {tag!r}")
    if not rest or not NAME_RE.match(rest):
        raise ImageReferenceError(
            f"invalid image reference {text!r}: repository names use lowercase letters, digits, separators . _ - and /"
        )
    if normalize and not domain:
        domain = DOCKER_HUB
    if normalize and domain in DOCKER_HUB_ALIASES and "/" not in rest:
        rest = f"library/{rest}"
    return ImageRef(domain, rest, tag, digest)


@dataclass(frozen=True)
class ResolvedImage:
    """An image mapped to the configured registry that serves it."""

    ref: ImageRef  # as given
    registry: RegistryConfig
    repository: str  # repository inside the registry, as it appears in mirror paths (no url prefix)
    how: str  # "registry", "mirror path" or "upstream host": how REF was matched

    @property
    def reference(self) -> str:
        return self.ref.reference

    def upstream_ref(self) -> str:
        netloc = urlsplit(self.registry.url).netloc
        prefix = f"{self.registry.path_prefix}/" if self.registry.path_prefix else ""
        return f"{netloc}/{prefix}{self.repository}{self.ref.suffix() or ':' + DEFAULT_TAG}"


def mirror_host(config: Config) -> str:
    return urlsplit(config.public_url).netloc


def mirror_reference(config: Config, registry: RegistryConfig, repository: str, suffix: str) -> str:
    """The reference customers put in their manifests: `<mirror>/proxy/<app>/<registry>/<repo>:<tag>`."""
    return f"{mirror_host(config)}/proxy/{registry.app}/{registry.name}/{repository}{suffix or ':' + DEFAULT_TAG}"


def find_registry(config: Config, name: str) -> RegistryConfig:
    """`--registry NAME` or `APP/NAME`."""
    app_name, _, registry_name = name.rpartition("/")
    matches = [r for r in config.registries() if r.name == registry_name and (not app_name or r.app == app_name)]
    if not matches:
        known = ", ".join(f"{r.app}/{r.name}" for r in config.registries()) or "none"
        raise ImageReferenceError(f"no registry named {name!r} in {config.path} (configured: {known})")
    if len(matches) > 1:
        apps = ", ".join(f"{r.app}/{r.name}" for r in matches)
        raise ImageReferenceError(f"registry name {name!r} is in several apps ({apps}); say which as APP/NAME")
    return matches[0]


def resolve_image(config: Config, text: str, registry_name: str | None = None) -> ResolvedImage:
    """Map REF to the registry that serves it (see the module docstring for the accepted forms)."""
    if registry_name:
        registry = find_registry(config, registry_name)
        ref = parse_reference(text, normalize=False)
        if ref.domain and not _same_host(ref.domain, registry):
            raise ImageReferenceError(
                f"image {text!r} names host {ref.domain}, but registry {registry.app}/{registry.name} is {registry.url}; "
                "with --registry give REPOSITORY:TAG"
            )
        repository = _strip_prefix(ref.path, registry.path_prefix) if ref.domain else ref.path
        if repository is None:
            raise ImageReferenceError(f"image {text!r} is outside registry {registry.app}/{registry.name}'s path {registry.path_prefix!r}")
        return ResolvedImage(ref, registry, repository, "registry")

    ref = parse_reference(text)
    resolved = _from_mirror_path(config, ref)
    if resolved:
        return resolved
    candidates = []
    for registry in config.registries():
        if not _same_host(ref.domain, registry):
            continue
        repository = _strip_prefix(ref.path, registry.path_prefix)
        if repository is not None:
            candidates.append((len(registry.path_prefix), registry, repository))
    if not candidates:
        hosts = ", ".join(sorted({urlsplit(r.url).netloc + ('/' + r.path_prefix if r.path_prefix else '') for r in config.registries()})) or "none"
        raise ImageReferenceError(
            f"no configured registry serves {text!r} (host {ref.domain}); configured upstreams: {hosts}. "
            "Add the registry to the config, or name it with --registry and give REPOSITORY:TAG"
        )
    # The longest path prefix wins; among equals, config order (the first app that serves it).
    best = max(candidates, key=lambda c: c[0])[0]
    _, registry, repository = next(c for c in candidates if c[0] == best)
    return ResolvedImage(ref, registry, repository, "upstream host")


def _from_mirror_path(config: Config, ref: ImageRef) -> ResolvedImage | None:
    parts = ref.path.split("/")
    if ref.domain == mirror_host(config).lower() and parts[0] == "proxy" and len(parts) >= 4:
        app, name, repository = parts[1], parts[2], "/".join(parts[3:])
    elif ref.domain.split(":")[0] in config.domains and len(parts) >= 2:
        app, name, repository = config.domains[ref.domain.split(":")[0]], parts[0], "/".join(parts[1:])
    else:
        return None
    app_config = config.apps.get(app)
    registry = app_config.registry(name) if app_config else None
    if registry is None:
        raise ImageReferenceError(f"mirror path {ref} names app {app!r} / registry {name!r}, which the config does not have")
    return ResolvedImage(ref, registry, repository, "mirror path")


def _same_host(domain: str, registry: RegistryConfig) -> bool:
    host, _, port = domain.lower().rpartition(":") if ":" in domain else (domain.lower(), "", "")
    if host in DOCKER_HUB_ALIASES and registry.host in DOCKER_HUB_ALIASES:
        return True
    if host != registry.host:
        return False
    return int(port) == registry.port if port else registry.default_port


def _strip_prefix(path: str, prefix: str) -> str | None:
    if not prefix:
        return path
    if path.startswith(prefix + "/"):
        return path[len(prefix) + 1:]
    return None


def split_mirror_reference(text: str) -> tuple[str, str, ImageRef]:
    """A customer's reference through the mirror: (host or "", repository name on the mirror, ref)."""
    ref = parse_reference(text, normalize=False)
    if not re.match(r"^[a-z0-9._:-]*$", ref.domain):
        raise ImageReferenceError(f"invalid host in {text!r}")
    return ref.domain, ref.path, ref
