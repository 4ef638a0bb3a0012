"""The config sections for hardening: `timeouts`, `limits` and `tls` (frozen dataclasses, validation).

Kept apart from config.py so the modules that act on them (timeouts, ratelimit, tls) stay small;
config.py calls the parse functions, and every error names its key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .errors import ConfigError
from .secrets import resolve_path


@dataclass(frozen=True)
class TimeoutsConfig:
    headers: float = 30.0  # connect + TLS + the upstream's status line and headers
    body_stall: float = 60.0  # longest pause in an upstream body


@dataclass(frozen=True)
class LimitsConfig:
    failed_license_attempts: int = 10  # per client address and window; 0 turns the limit off
    failed_license_window: float = 60.0  # seconds for a full bucket of attempts to refill


@dataclass(frozen=True)
class TlsConfig:
    certificate: Path | None = None  # listener: PEM chain, leaf first
    key: Path | None = None  # listener: PEM private key of the leaf
    upstream_ca_bundle: Path | None = None  # replaces the default trust store for upstreams
    upstream_verify: bool = True

    @property
    def serves_https(self) -> bool:
        return self.certificate is not None


def _section(raw: Any, name: str, known: set[str]) -> Mapping[str, Any] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(name, "must be a mapping")
    unknown = sorted(map(str, set(raw) - known))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(known))})")
    return raw


def _duration(section: Mapping[str, Any], name: str, key: str, default: float, low: float, high: float, bounds: str) -> float:
    if name not in section:
        return default
    from .config import parse_duration  # late import: config imports this module

    seconds = parse_duration(section[name], key)
    if not low <= seconds <= high:
        raise ConfigError(key, f"must be between {bounds}")
    return seconds


def parse_timeouts(raw: Any) -> TimeoutsConfig:
    section = _section(raw, "timeouts", {"headers", "body_stall"}) or {}
    defaults = TimeoutsConfig()
    return TimeoutsConfig(
        headers=_duration(section, "headers", "timeouts.headers", defaults.headers, 0.1, 3600, "100ms and 1h"),
        body_stall=_duration(section, "body_stall", "timeouts.body_stall", defaults.body_stall, 0.1, 3600, "100ms and 1h"),
    )


def parse_limits(raw: Any) -> LimitsConfig:
    section = _section(raw, "limits", {"failed_license_attempts", "failed_license_window"}) or {}
    defaults = LimitsConfig()
    attempts = section.get("failed_license_attempts", defaults.failed_license_attempts)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 0 <= attempts <= 100_000:
        raise ConfigError("limits.failed_license_attempts", "must be an integer between 0 (off) and 100000")
    window = _duration(section, "failed_license_window", "limits.failed_license_window", defaults.failed_license_window, 1, 86400, "1s and 1d")
    return LimitsConfig(attempts, window)


def parse_tls(raw: Any, base_dir: Path) -> TlsConfig:
    """Files are read and checked now: a broken certificate stops the start, not the first pull."""
    section = _section(raw, "tls", {"certificate", "key", "upstream_ca_bundle", "upstream_verify"})
    if section is None:
        return TlsConfig()

    def path(key: str) -> Path | None:
        value = section.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"tls.{key}", "must be a file path")
        return resolve_path(value, base_dir)

    certificate, key, bundle = path("certificate"), path("key"), path("upstream_ca_bundle")
    if (certificate is None) != (key is None):
        raise ConfigError("tls.key" if key is None else "tls.certificate", "certificate and key go together")
    if certificate is not None and key is not None:
        leaf = read_certificates(certificate, "tls.certificate")[0]
        private_key = read_private_key(key, "tls.key")
        if _public_der(private_key.public_key()) != _public_der(leaf.public_key()):
            raise ConfigError("tls.key", f"{key} is not the key of the first certificate in {certificate}")
    if bundle is not None:
        read_certificates(bundle, "tls.upstream_ca_bundle")
    verify = section.get("upstream_verify", True)
    if not isinstance(verify, bool):
        raise ConfigError("tls.upstream_verify", "must be true or false")
    return TlsConfig(certificate, key, bundle, verify)


def read_file(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None


def read_certificates(path: Path, key: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(read_file(path, key))
    except ValueError:
        certificates = []
    if not certificates:
        raise ConfigError(key, f"{path} holds no PEM certificate")
    return certificates


def read_private_key(path: Path, key: str) -> Any:
    try:
        return serialization.load_pem_private_key(read_file(path, key), password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(key, f"{path} is not an unencrypted PEM private key: {e}") from None


def _public_der(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
