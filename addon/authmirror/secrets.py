"""Secret values from config: `env:NAME`, `file:PATH` or a literal, never shown in repr/str."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger("authmirror.config")


@dataclass(frozen=True)
class Secret:
    """A resolved secret. `source` says where it came from (safe to show); `value` is never printed."""

    source: str
    value: str = field(repr=False, compare=False)

    def __str__(self) -> str:
        return f"<secret from {self.source}>"

    def __repr__(self) -> str:
        return f"Secret({self.source!r})"


def resolve_secret(raw: object, key: str, base_dir: Path, *, warn_literal: bool = True) -> Secret:
    """Resolve `env:NAME`, `file:PATH` (relative to base_dir) or a literal string."""
    if not isinstance(raw, str) or raw == "":
        raise ConfigError(key, "must be a non-empty string (env:NAME, file:PATH or a literal)")
    if raw.startswith("env:"):
        name = raw[4:]
        value = os.environ.get(name)
        if value is None:
            raise ConfigError(key, f"environment variable {name} is not set")
        return Secret(raw, value)
    if raw.startswith("file:"):
        path = resolve_path(raw[5:], base_dir)
        try:
            value = path.read_text().strip()
        except OSError as e:
            raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None
        return Secret(f"file:{path}", value)
    if warn_literal:
        log.warning("%s: secret given literally in the config file; prefer env:NAME or file:PATH", key)
    return Secret("literal", raw)


def resolve_path(raw: str, base_dir: Path) -> Path:
    """Paths in the config are relative to the config file's directory."""
    path = Path(os.path.expanduser(raw))
    return path if path.is_absolute() else (base_dir / path)
