"""YAML configuration to frozen dataclasses; every error names the key it is about."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError
from .hardening_config import LimitsConfig, TimeoutsConfig, TlsConfig, parse_limits, parse_timeouts, parse_tls
from .secrets import Secret, resolve_path, resolve_secret

if TYPE_CHECKING:
    from .cache.settings import CacheConfig

DEFAULT_LISTEN = "127.0.0.1:5000"
# Used when no config is named (`mitmdump -s addon/proxy.py`, `authmirror <command>` without -c).
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "examples" / "authmirror.yaml"
BLOB_REDIRECT_MODES = ("follow", "pass")
# A path component of a repository name (distribution spec), also used for app and registry names.
COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RegistryConfig:
    """One upstream registry of an app. `settings` holds the type-specific keys (secrets as Secret)."""

    app: str
    name: str
    type: str
    url: str
    scheme: str
    host: str
    port: int
    path_prefix: str  # repository prefix taken from the url's path, "" or "org/team"
    username: Secret | None
    password: Secret | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    auth_hosts: tuple[str, ...] = ()  # hosts besides `host` that may receive the vendor's credentials as token realm
    redirect_hosts: tuple[str, ...] = ()  # storage hosts allowed even when they are loopback/private
    key: str = ""

    @property
    def default_port(self) -> bool:
        return self.port == (443 if self.scheme == "https" else 80)

    @property
    def netloc(self) -> str:
        return self.host if self.default_port else f"{self.host}:{self.port}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def secret_values(self) -> tuple[str, ...]:
        """Every secret value this registry holds, for redaction."""
        values = [s.value for s in (self.username, self.password) if s is not None]
        values += [v.value for v in self.settings.values() if isinstance(v, Secret)]
        return tuple(v for v in values if v)


@dataclass(frozen=True)
class AppConfig:
    name: str
    registries: tuple[RegistryConfig, ...]

    def registry(self, ref: str) -> RegistryConfig | None:
        """Find a registry by its name or, when its url has no port, by its host."""
        for registry in self.registries:
            if registry.name == ref:
                return registry
        for registry in self.registries:
            if registry.default_port and registry.host.lower() == ref.lower():
                return registry
        return None


@dataclass(frozen=True)
class TokenConfig:
    signing_key: str = field(repr=False)  # "file:PATH" (generated if missing), "env:NAME" or inline PEM
    ttl_seconds: int = 300
    previous_keys: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class LicensesConfig:
    file: Path | None
    jwt_public_key: Secret | None
    revoked_file: Path | None = None


@dataclass(frozen=True)
class LogRotation:
    """Rotate the pull log when it would grow past max_size; keep this many rotated files."""

    max_size: int
    keep: int


@dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    token: Secret | None = None  # when set, /metrics needs it (Bearer, or as Basic password)


@dataclass(frozen=True)
class Config:
    path: Path
    listen: Listen
    public_url: str
    token: TokenConfig
    licenses: LicensesConfig
    pull_log: Path | None  # None: off; Path("-"): stdout
    blob_redirects: str
    domains: Mapping[str, str]
    apps: Mapping[str, AppConfig]
    cache: CacheConfig | None = None  # None: no cache
    timeouts: TimeoutsConfig = field(default_factory=TimeoutsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    pull_log_rotation: LogRotation | None = None
    metrics: MetricsConfig = MetricsConfig()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def registries(self) -> list[RegistryConfig]:
        return [r for app in self.apps.values() for r in app.registries]


TOP_LEVEL_KEYS = {
    "listen", "public_url", "token", "licenses", "pull_log", "blob_redirects", "cache", "domains", "apps",
    "timeouts", "limits", "tls", "metrics",
}
COMMON_REGISTRY_KEYS = {"name", "type", "url", "username", "password", "auth_hosts", "redirect_hosts"}


def load_config(path: str | Path, *, resolve_secrets: bool = True) -> Config:
    """Read and validate a config file. Raises ConfigError naming the offending key."""
    path = Path(path).absolute()
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError("", f"cannot read config file {path}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("", f"{path} is not valid YAML: {e}") from None
    return parse_config(raw, path, resolve_secrets=resolve_secrets)


def parse_config(raw: Any, path: Path, *, resolve_secrets: bool = True) -> Config:
    raw = _mapping(raw if raw is not None else {}, "")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise ConfigError(sorted(unknown)[0], f"unknown key (known: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    base_dir = path.parent

    listen = parse_listen(raw.get("listen", DEFAULT_LISTEN), "listen")
    tls = parse_tls(raw.get("tls"), base_dir)
    public_url = raw.get("public_url") or f"{'https' if tls.serves_https else 'http'}://{listen}"
    public_url = _parse_url(public_url, "public_url").rstrip("/")
    if tls.serves_https and not public_url.startswith("https://"):
        raise ConfigError("public_url", "must be an https:// URL: the listener serves TLS (tls.certificate)")

    token_raw = _mapping(raw.get("token") or {}, "token")
    _no_unknown(token_raw, {"signing_key", "ttl_seconds", "previous_keys"}, "token")
    ttl = token_raw.get("ttl_seconds", 300)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 30 <= ttl <= 86400:
        raise ConfigError("token.ttl_seconds", "must be an integer between 30 and 86400")
    signing_key = token_raw.get("signing_key", "file:authmirror-token.pem")
    if not isinstance(signing_key, str) or not signing_key:
        raise ConfigError("token.signing_key", "must be file:PATH, env:NAME or a PEM key")
    if signing_key.startswith("file:"):
        signing_key = f"file:{resolve_path(signing_key[5:], base_dir)}"
    previous = token_raw.get("previous_keys") or []
    if not isinstance(previous, list) or not all(isinstance(p, str) for p in previous):
        raise ConfigError("token.previous_keys", "must be a list of file:PATH / env:NAME public keys")
    token = TokenConfig(signing_key, ttl, tuple(previous))

    licenses = _parse_licenses(raw.get("licenses"), base_dir, resolve_secrets)

    pull_log, pull_log_rotation = _parse_pull_log(raw.get("pull_log", "pulls.jsonl"), base_dir)

    blob_redirects = raw.get("blob_redirects", "follow")
    if blob_redirects not in BLOB_REDIRECT_MODES:
        raise ConfigError("blob_redirects", f"must be one of {', '.join(BLOB_REDIRECT_MODES)}")

    apps_raw = _mapping(raw.get("apps") or {}, "apps")
    apps: dict[str, AppConfig] = {}
    for app_name, app_raw in apps_raw.items():
        apps[str(app_name)] = _parse_app(str(app_name), app_raw, base_dir, resolve_secrets)

    domains_raw = _mapping(raw.get("domains") or {}, "domains")
    domains: dict[str, str] = {}
    for domain, app_name in domains_raw.items():
        key = f"domains.{domain}"
        if not isinstance(domain, str) or not HOST_RE.match(domain):
            raise ConfigError(key, "must be a host name")
        if app_name not in apps:
            raise ConfigError(key, f"maps to unknown app {app_name!r}")
        domains[domain.lower()] = app_name

    from .cache.settings import parse_cache  # late import: it builds on this module's parsers

    cache = parse_cache(raw.get("cache"), base_dir)

    metrics = _parse_metrics(raw.get("metrics"), base_dir, resolve_secrets)

    return Config(
        path=path,
        listen=listen,
        public_url=public_url,
        token=token,
        licenses=licenses,
        pull_log=pull_log,
        blob_redirects=blob_redirects,
        domains=domains,
        apps=apps,
        cache=cache,
        timeouts=parse_timeouts(raw.get("timeouts")),
        limits=parse_limits(raw.get("limits")),
        tls=tls,
        pull_log_rotation=pull_log_rotation,
        metrics=metrics,
        raw=raw,
    )


def parse_listen(value: Any, key: str) -> Listen:
    if not isinstance(value, str):
        raise ConfigError(key, "must be HOST:PORT, e.g. 127.0.0.1:5000")
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(key, "must be HOST:PORT, e.g. 127.0.0.1:5000")
    return Listen(host or "127.0.0.1", int(port))


def parse_duration(value: Any, key: str) -> float:
    """'90s', '5m', '1h', '2d' or a number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION_RE.match(str(value)) if isinstance(value, str) else None
    if not match:
        raise ConfigError(key, "must be a duration like 30s, 5m, 1h or 2d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(value: Any, key: str) -> int:
    """'50GiB', '512MB', '100k' or a number of bytes (K/M/G/T are powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE_RE.match(str(value)) if isinstance(value, str) else None
    if not match:
        raise ConfigError(key, "must be a size like 512MiB or 50GiB")
    unit = (match.group(2) or "B").upper()[0]
    power = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit]
    return int(float(match.group(1)) * 1024**power)


def _parse_pull_log(value: Any, base_dir: Path) -> tuple[Path | None, LogRotation | None]:
    """`pull_log: PATH` or `pull_log: {path: PATH, max_size: 100MiB, keep: 5}` (rotated by size)."""
    if value in (None, False, ""):
        return None, None
    if isinstance(value, str):
        return (Path("-") if value == "-" else resolve_path(value, base_dir)), None
    if not isinstance(value, dict):
        raise ConfigError("pull_log", "must be a file path, '-' for stdout, a mapping {path, max_size, keep}, or empty to disable")
    _no_unknown(value, {"path", "max_size", "keep"}, "pull_log")
    path = value.get("path")
    if not isinstance(path, str) or not path or path == "-":
        raise ConfigError("pull_log.path", "must be a file path (rotation needs a file)")
    if "max_size" not in value:
        raise ConfigError("pull_log.max_size", "required to rotate the pull log (e.g. 100MiB)")
    max_size = parse_size(value["max_size"], "pull_log.max_size")
    if max_size < 1024:
        raise ConfigError("pull_log.max_size", "must be at least 1KiB")
    keep = value.get("keep", 5)
    if not isinstance(keep, int) or isinstance(keep, bool) or not 1 <= keep <= 1000:
        raise ConfigError("pull_log.keep", "must be an integer between 1 and 1000 (rotated files kept)")
    return resolve_path(path, base_dir), LogRotation(max_size, keep)


def _parse_metrics(value: Any, base_dir: Path, resolve_secrets: bool) -> MetricsConfig:
    raw = _mapping(value or {}, "metrics")
    _no_unknown(raw, {"enabled", "token"}, "metrics")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("metrics.enabled", "must be true or false")
    token = raw.get("token")
    if token is not None:
        token = resolve_secret(token, "metrics.token", base_dir) if resolve_secrets else Secret(str(token), "")
    return MetricsConfig(enabled, token)


def _parse_licenses(value: Any, base_dir: Path, resolve_secrets: bool) -> LicensesConfig:
    raw = _mapping(value or {}, "licenses")
    _no_unknown(raw, {"file", "jwt_public_key", "revoked_file"}, "licenses")
    file = raw.get("file", "licenses.yaml")
    if file is not None and not isinstance(file, str):
        raise ConfigError("licenses.file", "must be a path")
    jwt_key = raw.get("jwt_public_key")
    public_key = None
    if jwt_key is not None:
        public_key = resolve_secret(jwt_key, "licenses.jwt_public_key", base_dir, warn_literal=False) if resolve_secrets else Secret(str(jwt_key), "")
    if file is None and public_key is None:
        raise ConfigError("licenses", "needs a file, a jwt_public_key, or both")
    revoked = raw.get("revoked_file")
    return LicensesConfig(
        file=resolve_path(file, base_dir) if file else None,
        jwt_public_key=public_key,
        revoked_file=resolve_path(revoked, base_dir) if isinstance(revoked, str) else None,
    )


def _parse_app(name: str, value: Any, base_dir: Path, resolve_secrets: bool) -> AppConfig:
    key = f"apps.{name}"
    if not COMPONENT_RE.match(name):
        raise ConfigError(key, "app names use lowercase letters, digits and . _ - (as in image paths)")
    raw = _mapping(value or {}, key)
    _no_unknown(raw, {"registries"}, key)
    registries_raw = raw.get("registries") or []
    if not isinstance(registries_raw, list):
        raise ConfigError(f"{key}.registries", "must be a list")
    registries = []
    seen: set[str] = set()
    for index, registry_raw in enumerate(registries_raw):
        registry = _parse_registry(name, index, registry_raw, base_dir, resolve_secrets)
        if registry.name in seen:
            raise ConfigError(f"{registry.key}.name", f"duplicate registry name {registry.name!r}")
        seen.add(registry.name)
        registries.append(registry)
    return AppConfig(name, tuple(registries))


def parse_registry_entry(app: str, index: int, value: Any, base_dir: Path) -> RegistryConfig:
    """One registry entry on its own, secrets resolved (for tools that check registries one by one)."""
    return _parse_registry(app, index, value, base_dir, True)


def with_secrets(config: Config, registry: RegistryConfig) -> RegistryConfig:
    """`registry` of a config read with resolve_secrets=False, its secrets resolved now: tools that
    check registries one by one thus fail only where a secret is missing. Raises ConfigError naming the key."""
    index = config.apps[registry.app].registries.index(registry)
    apps_raw = {str(name): app for name, app in (config.raw.get("apps") or {}).items()}
    return parse_registry_entry(registry.app, index, apps_raw[registry.app]["registries"][index], config.base_dir)


def _parse_registry(app: str, index: int, value: Any, base_dir: Path, resolve_secrets: bool) -> RegistryConfig:
    from .upstreams import provider_class  # late import: providers import this module

    key = f"apps.{app}.registries[{index}]"
    raw = _mapping(value, key)
    name = raw.get("name")
    if not isinstance(name, str) or not COMPONENT_RE.match(name):
        raise ConfigError(f"{key}.name", "required; lowercase letters, digits and . _ - (it appears in image paths)")
    rtype = raw.get("type", "basic")
    provider = provider_class(rtype)
    if provider is None:
        from .upstreams import PROVIDERS

        raise ConfigError(f"{key}.type", f"unknown registry type {rtype!r} (known: {', '.join(PROVIDERS)})")
    spec = provider.SETTINGS
    _no_unknown(raw, COMMON_REGISTRY_KEYS | set(spec), key)

    url = raw.get("url") or provider.DEFAULT_URL
    if not url:
        raise ConfigError(f"{key}.url", f"required for type {rtype}")
    url = _parse_url(url, f"{key}.url")
    parts = urlsplit(url)
    scheme = parts.scheme
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)

    def secret(field_name: str, required: bool) -> Secret | None:
        if raw.get(field_name) is None:
            if required:
                raise ConfigError(f"{key}.{field_name}", f"required for type {rtype}")
            return None
        if not resolve_secrets:
            return Secret(str(raw[field_name]), "")
        return resolve_secret(raw[field_name], f"{key}.{field_name}", base_dir, warn_literal=field_name != "username")

    username = secret("username", provider.NEEDS_USERNAME)
    password = secret("password", provider.NEEDS_PASSWORD)
    settings: dict[str, Any] = {}
    for setting, (kind, required) in spec.items():
        if raw.get(setting) is None:
            if required:
                raise ConfigError(f"{key}.{setting}", f"required for type {rtype}")
            continue
        value = raw[setting]
        if kind == "secret":
            settings[setting] = (
                resolve_secret(value, f"{key}.{setting}", base_dir) if resolve_secrets else Secret(str(value), "")
            )
        elif kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{key}.{setting}", "must be true or false")
            settings[setting] = value
        else:
            if not isinstance(value, str):
                raise ConfigError(f"{key}.{setting}", "must be a string")
            settings[setting] = value

    hosts = {}
    for list_key in ("auth_hosts", "redirect_hosts"):
        items = raw.get(list_key) or []
        if not isinstance(items, list) or not all(isinstance(h, str) and h for h in items):
            raise ConfigError(f"{key}.{list_key}", "must be a list of host names")
        hosts[list_key] = tuple(h.lower() for h in items)

    registry = RegistryConfig(
        app=app,
        name=name,
        type=rtype,
        url=url,
        scheme=scheme,
        host=host.lower(),
        port=port,
        path_prefix=parts.path.strip("/"),
        username=username,
        password=password,
        settings=settings,
        auth_hosts=hosts["auth_hosts"],
        redirect_hosts=hosts["redirect_hosts"],
        key=key,
    )
    provider.validate(registry)
    return registry


def _parse_url(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, "must be an http:// or https:// URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, "must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ConfigError(key, "must not contain credentials; use username/password")
    if parts.query or parts.fragment:
        raise ConfigError(key, "must not have a query or fragment")
    try:
        parts.port
    except ValueError:
        raise ConfigError(key, "has an invalid port") from None
    return value.rstrip("/")


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(key, "must be a mapping")
    return value


def _no_unknown(raw: Mapping[str, Any], known: set[str], key: str) -> None:
    unknown = set(raw) - known
    if unknown:
        first = sorted(map(str, unknown))[0]
        raise ConfigError(f"{key}.{first}" if key else first, f"unknown key (known: {', '.join(sorted(known))})")
