"""License administration: add, revoke and remove licenses, list them with their fingerprints.

Every edit is read-modify-write under a lock file, validated as the mirror would read it, and
written atomically (temp file + fsync + rename): a running mirror re-reads the file within
seconds and never sees half of it. Comments and order in the file are kept (ruamel.yaml).
Signed (JWT) licenses are revoked through the revocation list (`licenses.revoked_file`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import os
import secrets
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import jwt
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .errors import AuthMirrorError, ConfigError
from .licenses import License, fingerprint, parse_licenses, read_licenses_file, read_revocations

NEW_FILE_MODE = 0o640


class LicenseNotFound(AuthMirrorError):
    """No license matches the id, fingerprint or token given."""


@dataclass(frozen=True)
class LicenseRow:
    fingerprint: str
    customer: str
    apps: tuple[str, ...]
    images: tuple[str, ...]
    expires: str
    status: str  # active | expired | revoked
    source: str  # file | revocation list
    id: str = ""  # the secret: only filled when asked for

    def as_dict(self) -> dict[str, Any]:
        data = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        if not self.id:
            del data["id"]
        return data


# -- atomic files -------------------------------------------------------------------------------


def atomic_write(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename; the mode of the file it replaces is kept."""
    try:
        mode = os.stat(path).st_mode & 0o777
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One editor at a time: two `license add` runs must not lose each other's entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: comments, order and quoting survive the edit
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def _load(path: Path, key: str) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(key, f"cannot read {path}: {e.strerror}") from None
    try:
        return _yaml().load(text)
    except Exception as e:  # noqa: BLE001 - ruamel raises many error types for bad YAML
        raise ConfigError(key, f"{path} is not valid YAML: {e}") from None


def _dump(document: Any) -> str:
    stream = io.StringIO()
    _yaml().dump(document, stream)
    return stream.getvalue()


# -- the licenses file ----------------------------------------------------------------------------


@contextlib.contextmanager
def editing_licenses(path: Path) -> Iterator[CommentedSeq]:
    """The file's license entries, to change in place; validated and written atomically on exit."""
    with locked(path):
        document = _load(path, "licenses.file")
        if document is None:
            document = CommentedMap([("licenses", CommentedSeq())])
        if isinstance(document, dict):
            if document.get("licenses") is None:
                document["licenses"] = CommentedSeq()
            entries = document["licenses"]
        else:
            entries = document
        if not isinstance(entries, list):
            raise ConfigError("licenses.file", f"{path} must contain a list under 'licenses'")
        before = _dump(document)
        yield entries
        parse_licenses(document, path.name)  # refuse to write what the mirror would refuse to load
        after = _dump(document)
        if after != before or not path.exists():
            atomic_write(path, after)


ID_ALPHABET = string.ascii_letters + string.digits  # no leading '-' to trip up command lines


def new_license_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(32))


def add_license(path: Path, customer: str, apps: list[str], expires: dt.date | str | None = None, images: list[str] | None = None, note: str | None = None, license_id: str | None = None) -> License:
    """Append a license; returns it (its id is the secret to hand to the customer)."""
    license_id = license_id or new_license_id()
    entry = CommentedMap([("id", license_id), ("customer", customer), ("apps", _flow(apps))])
    if expires is not None:
        entry["expires"] = expires
    if images:
        entry["images"] = _flow(images)
    if note:
        entry["note"] = note
    with editing_licenses(path) as entries:
        entries.append(entry)
    return next(lic for lic in read_licenses_file(path) if lic.id == license_id)


def _flow(items: list[str]) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()  # apps: [acme, beta], as people write it
    return seq


def _find(entries: list, ref: str) -> int | None:
    """Index of the entry whose id or fingerprint is `ref`."""
    for index, entry in enumerate(entries):
        license_id = entry.get("id") if isinstance(entry, dict) else None
        if isinstance(license_id, str) and (secrets.compare_digest(license_id.encode(), ref.encode()) or fingerprint(license_id) == ref):
            return index
    return None


def revoke_license(path: Path | None, ref: str, revoked_file: Path | None) -> str:
    """Revoke by id, fingerprint or (for a signed license) the token itself. Returns what was done."""
    if path is not None:
        with editing_licenses(path) as entries:
            index = _find(entries, ref)
            if index is not None:
                entries[index]["revoked"] = True
                return f"revoked {fingerprint(entries[index]['id'])} ({entries[index].get('customer')}) in {path}"
    listed = revocation_entry(ref)
    if listed is None:
        raise LicenseNotFound(f"no license with that id or fingerprint in {path}" if path else "no licenses file to search")
    if revoked_file is None:
        raise ConfigError("licenses.revoked_file", "needed to revoke a signed (JWT) license: add a revocation list file to the config")
    add_revocation(revoked_file, listed)
    return f"revoked {listed} in the revocation list {revoked_file}"


def revocation_entry(ref: str) -> str | None:
    """What goes on the revocation list for `ref`: the fingerprint of a JWT's subject, or a fingerprint."""
    if ref.count(".") == 2:
        try:
            claims = jwt.decode(ref, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        sub = claims.get("sub")
        return fingerprint(sub) if isinstance(sub, str) else None
    if ref.startswith("lic_") and len(ref) == len(fingerprint("x")):
        return ref
    return None


def add_revocation(revoked_file: Path, entry: str) -> None:
    with locked(revoked_file):
        document = _load(revoked_file, "licenses.revoked_file")
        if document is None:
            document = CommentedMap([("revoked", CommentedSeq())])
        listed = document.get("revoked") if isinstance(document, dict) else document
        if listed is None:
            listed = document["revoked"] = CommentedSeq()
        if not isinstance(listed, list):
            raise ConfigError("licenses.revoked_file", f"{revoked_file} must be a list of license fingerprints")
        if entry not in listed:
            listed.append(entry)
        atomic_write(revoked_file, _dump(document))


def remove_license(path: Path, ref: str) -> License:
    with editing_licenses(path) as entries:
        index = _find(entries, ref)
        if index is None:
            raise LicenseNotFound(f"no license with that id or fingerprint in {path}")
        removed = read_licenses_file(path)[index]
        del entries[index]
    return removed


def list_licenses(path: Path | None, revoked_file: Path | None, now: float | None = None, show_ids: bool = False) -> list[LicenseRow]:
    now = time.time() if now is None else now
    revoked = read_revocations(revoked_file) if revoked_file and revoked_file.exists() else frozenset()
    rows = []
    licenses = read_licenses_file(path) if path and path.exists() else []
    for lic in licenses:
        if lic.revoked or lic.fingerprint in revoked:
            status = "revoked"
        elif lic.expired(now):
            status = "expired"
        else:
            status = "active"
        rows.append(LicenseRow(lic.fingerprint, lic.customer, tuple(sorted(lic.apps)), lic.images, lic.expiry_text, status, "file", lic.id if show_ids else ""))
    in_file = {lic.fingerprint for lic in licenses}
    for entry in sorted(revoked - in_file):
        label = entry if entry.startswith("lic_") else fingerprint(entry)
        rows.append(LicenseRow(label, "(signed license)", (), (), "-", "revoked", "revocation list"))
    return rows
