"""The `cache:` config section as frozen dataclasses; every error names its key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import Listen, _mapping, _no_unknown, parse_duration, parse_listen, parse_size
from ..errors import ConfigError
from ..secrets import resolve_path

SERVE_MODES = ("proxy", "redirect")
VERIFY_MODES = ("changed", "always")
DEFAULT_MAX_SIZE = "10GiB"
DEFAULT_URL_TTL = 60.0
# Debian's libnginx-mod-http-js; "" when the nginx in use has njs built in.
DEFAULT_NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"


@dataclass(frozen=True)
class FileServerConfig:
    """The nginx that sends cached files: to the mirror (serve: proxy) or to clients (redirect)."""

    listen: Listen | None  # None: a free port on 127.0.0.1, chosen at start
    public_url: str | None  # what clients reach in redirect mode; None: http://<listen>
    url_ttl: float  # lifetime of a signed URL, seconds
    managed: bool  # the mirror starts and stops nginx itself
    nginx: str
    njs_module: str


@dataclass(frozen=True)
class CacheConfig:
    dir: Path
    max_size: int
    serve: str  # proxy | redirect
    stale_if_error: float  # seconds a manifest by tag may be served stale when the upstream fails; 0: never
    verify: str  # changed: re-hash a file before serving when its inode/size/mtime/ctime changed; always: every hit
    file_server: FileServerConfig


CACHE_KEYS = {"dir", "max_size", "serve", "manifests", "verify", "file_server"}
FILE_SERVER_KEYS = {"listen", "public_url", "url_ttl", "managed", "nginx", "njs_module"}


def parse_cache(value: Any, base_dir: Path) -> CacheConfig | None:
    """`cache:` absent, null or false: no cache."""
    if value is None or value is False:
        return None
    raw = _mapping(value, "cache")
    _no_unknown(raw, CACHE_KEYS, "cache")

    directory = raw.get("dir", "cache")
    if not isinstance(directory, str) or not directory:
        raise ConfigError("cache.dir", "must be a directory path")
    max_size = parse_size(raw.get("max_size", DEFAULT_MAX_SIZE), "cache.max_size")
    if max_size <= 0:
        raise ConfigError("cache.max_size", "must be larger than 0")
    serve = raw.get("serve", "proxy")
    if serve not in SERVE_MODES:
        raise ConfigError("cache.serve", f"must be one of {', '.join(SERVE_MODES)}")
    verify = raw.get("verify", "changed")
    if verify not in VERIFY_MODES:
        raise ConfigError("cache.verify", f"must be one of {', '.join(VERIFY_MODES)}")

    manifests = _mapping(raw.get("manifests") or {}, "cache.manifests")
    _no_unknown(manifests, {"stale_if_error"}, "cache.manifests")
    stale = parse_duration(manifests.get("stale_if_error", 0), "cache.manifests.stale_if_error")

    return CacheConfig(
        dir=resolve_path(directory, base_dir),
        max_size=max_size,
        serve=serve,
        stale_if_error=stale,
        verify=verify,
        file_server=_parse_file_server(raw.get("file_server"), serve),
    )


def _parse_file_server(value: Any, serve: str) -> FileServerConfig:
    key = "cache.file_server"
    raw = _mapping(value or {}, key)
    _no_unknown(raw, FILE_SERVER_KEYS, key)
    listen = parse_listen(raw["listen"], f"{key}.listen") if raw.get("listen") is not None else None
    public_url = raw.get("public_url")
    if public_url is not None:
        parts = urlsplit(public_url) if isinstance(public_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.username:
            raise ConfigError(f"{key}.public_url", "must be an http:// or https:// URL without credentials or query")
        public_url = public_url.rstrip("/")
    url_ttl = parse_duration(raw.get("url_ttl", DEFAULT_URL_TTL), f"{key}.url_ttl")
    if not 1 <= url_ttl <= 3600:
        raise ConfigError(f"{key}.url_ttl", "must be between 1s and 1h")
    managed = raw.get("managed", True)
    if not isinstance(managed, bool):
        raise ConfigError(f"{key}.managed", "must be true or false")
    if not managed and listen is None:
        raise ConfigError(f"{key}.listen", "required when managed is false (where your nginx listens)")
    nginx = raw.get("nginx", "nginx")
    njs_module = raw.get("njs_module", DEFAULT_NJS_MODULE)
    for name, text in (("nginx", nginx), ("njs_module", njs_module)):
        if not isinstance(text, str):
            raise ConfigError(f"{key}.{name}", "must be a path")
    return FileServerConfig(listen, public_url, url_ttl, managed, nginx, njs_module)
