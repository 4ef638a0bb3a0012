"""Editing the config file for `registry add` / `registry rm`, and storing typed secrets.

The file is edited round-trip (ruamel.yaml): comments, order and formatting of everything else stay
as the vendor wrote them. Writes are atomic (a temporary file renamed over the old one) and keep the
file's mode. Typed secrets go to one file each in a secrets directory (0700) with mode 0600; the
config only ever holds `file:`/`env:` references to them.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ..errors import ConfigError
from ..secrets import resolve_path

NEW_CONFIG = {
    "listen": "127.0.0.1:5000",
    "licenses": {"file": "licenses.yaml"},
    "pull_log": "pulls.jsonl",
}


def _yaml() -> YAML:
    yaml = YAML()
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold long values (URLs, ARNs) onto two lines
    return yaml


def read_document(path: Path) -> CommentedMap:
    """The config as an editable document; a new one when the file does not exist yet."""
    if not path.exists():
        return CommentedMap(NEW_CONFIG)
    try:
        document = _yaml().load(path.read_text())
    except Exception as e:  # ruamel raises several unrelated error types
        raise ConfigError("", f"{path} is not valid YAML: {e}") from None
    if document is None:
        return CommentedMap(NEW_CONFIG)
    if not isinstance(document, CommentedMap):
        raise ConfigError("", f"{path} must be a YAML mapping")
    return document


def write_document(path: Path, document: CommentedMap) -> None:
    buffer = io.StringIO()
    _yaml().dump(document, buffer)
    atomic_write(path, buffer.getvalue().encode(), mode=path.stat().st_mode & 0o777 if path.exists() else 0o644)


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def registries_of(document: CommentedMap, app: str) -> CommentedSeq | None:
    apps = document.get("apps") or {}
    app_entry = apps.get(app) or {}
    return app_entry.get("registries")


def find_all(document: CommentedMap) -> list[tuple[str, int, CommentedMap]]:
    """(app, index, entry) of every registry in the config."""
    return [
        (str(app_name), index, entry)
        for app_name, app_entry in (document.get("apps") or {}).items()
        for index, entry in enumerate((app_entry or {}).get("registries") or [])
        if isinstance(entry, dict)
    ]


def find_registry(document: CommentedMap, name: str, app: str | None = None) -> list[tuple[str, int, CommentedMap]]:
    """(app, index, entry) of every registry called `name` (in `app` when given)."""
    return [found for found in find_all(document) if found[2].get("name") == name and (app is None or found[0] == app)]


def put_registry(document: CommentedMap, app: str, entry: dict[str, Any], replace: bool = False) -> None:
    """Append `entry` to the app's registries (creating the app), or replace the one of that name."""
    apps = document.get("apps")
    if apps is None:
        apps = document["apps"] = CommentedMap()
    app_entry = apps.get(app)
    if app_entry is None:
        app_entry = apps[app] = CommentedMap()
    registries = app_entry.get("registries")
    if registries is None:
        registries = app_entry["registries"] = CommentedSeq()
    new = CommentedMap(entry)
    for index, existing in enumerate(registries):
        if isinstance(existing, dict) and existing.get("name") == entry["name"]:
            if not replace:
                raise ConfigError(f"apps.{app}.registries[{index}].name", f"registry {entry['name']!r} already exists in app {app!r} (use --replace, or `authmirror registry rm`)")
            registries[index] = new
            return
    registries.append(new)


def remove_registry(document: CommentedMap, app: str, index: int) -> CommentedMap:
    return document["apps"][app]["registries"].pop(index)


# -- secrets ------------------------------------------------------------------------------------


def secrets_dir_for(config_path: Path, override: str | None = None) -> Path:
    return Path(override).absolute() if override else config_path.parent / "secrets"


def write_secret(secrets_dir: Path, filename: str, value: str) -> Path:
    """Store one secret in its own file: directory 0700, file 0600, created that way (never widened)."""
    secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    path = secrets_dir / filename
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    return path


def reference_to(path: Path, config_path: Path) -> str:
    """`file:` reference, relative to the config's directory when the file is below it."""
    path = path.absolute()
    try:
        return f"file:{path.relative_to(config_path.parent.absolute())}"
    except ValueError:
        return f"file:{path}"


def owned_secret_files(entry: dict[str, Any], config_path: Path, secrets_dir: Path) -> list[Path]:
    """The `file:` secrets of `entry` that live in the secrets directory (the ones `add` wrote)."""
    files = []
    for value in entry.values():
        if isinstance(value, str) and value.startswith("file:"):
            path = resolve_path(value[5:], config_path.parent).absolute()
            if path.parent == secrets_dir.absolute():
                files.append(path)
    return files
