"""Licenses: who may pull what. Loads the licenses file (re-read on change) and vendor-signed JWTs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jwt
import yaml

from .config import LicensesConfig
from .errors import ConfigError, RegistryError

log = logging.getLogger("authmirror.licenses")

RELOAD_CHECK_SECONDS = 1.0
JWT_ALGORITHMS = ["RS256", "ES256"]


def fingerprint(license_id: str) -> str:
    """A short, non-secret name for a license: safe for logs, pull events and reports."""
    return "lic_" + hashlib.sha256(license_id.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class License:
    """One customer license. `id` is the secret the customer uses as password."""

    id: str = field(repr=False)
    customer: str
    apps: frozenset[str]
    expires: dt.datetime | None = None  # the first instant the license is no longer valid (UTC)
    revoked: bool = False
    images: tuple[str, ...] = ()  # glob patterns over <repository>; empty = every image of its apps
    source: str = "file"  # file | jwt
    fingerprint: str = ""
    expires_label: str = ""  # the expiry as the vendor wrote it, for messages

    @property
    def expiry_text(self) -> str:
        if self.expires_label:
            return self.expires_label
        return self.expires.strftime("%Y-%m-%d %H:%M UTC") if self.expires else "never"

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires.timestamp()

    def allows_image(self, repository: str) -> bool:
        return not self.images or any(fnmatch.fnmatchcase(repository, p) for p in self.images)

    def claims(self) -> dict[str, Any]:
        """What a bearer token carries about this license (no secret)."""
        return {
            "lic": self.fingerprint,
            "src": self.source,
            "customer": self.customer,
            "apps": sorted(self.apps),
            "images": list(self.images),
            "lexp": int(self.expires.timestamp()) if self.expires else None,
        }


@dataclass
class LicenseRefused(RegistryError):
    """A known license that may not pull this: carries the license so the refusal is attributed."""

    license: License | None = None


class UnknownLicense(RegistryError):
    """The secret matched no license: a failed attempt, counted per client address (ratelimit)."""


def check_valid(license: License, now: float) -> None:
    """Raise DENIED when a known license may not be used any more."""
    if license.revoked:
        raise LicenseRefused("DENIED", f"license for {license.customer} has been revoked", detail={"license": license.fingerprint}, license=license)
    if license.expired(now):
        raise LicenseRefused(
            "DENIED",
            f"license for {license.customer} expired on {license.expiry_text}",
            detail={"license": license.fingerprint},
            license=license,
        )


def check_entitled(license: License, app: str, repository: str) -> None:
    """Raise DENIED unless the license covers this app and image."""
    if app not in license.apps:
        raise LicenseRefused(
            "DENIED",
            f"license for {license.customer} does not include app '{app}'",
            detail={"license": license.fingerprint, "app": app},
            license=license,
        )
    if not license.allows_image(repository):
        raise LicenseRefused(
            "DENIED",
            f"license for {license.customer} does not allow image '{repository}'",
            detail={"license": license.fingerprint, "app": app, "repository": repository},
            license=license,
        )


def parse_expiry(value: Any, key: str) -> dt.datetime | None:
    """A date means 'valid through that day (UTC)'; a datetime is exact."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    if isinstance(value, str):
        try:
            return parse_expiry(dt.date.fromisoformat(value), key)
        except ValueError:
            try:
                return parse_expiry(dt.datetime.fromisoformat(value), key)
            except ValueError:
                pass
    raise ConfigError(key, "must be a date (YYYY-MM-DD) or an ISO 8601 datetime")


def parse_licenses(raw: Any, source: str = "licenses") -> list[License]:
    """Validate the licenses file's content. Raises ConfigError naming the entry."""
    entries = raw.get("licenses") if isinstance(raw, dict) else raw
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise ConfigError(source, "must contain a list under 'licenses'")
    licenses: list[License] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        key = f"{source}[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(key, "must be a mapping")
        unknown = set(entry) - {"id", "customer", "apps", "expires", "revoked", "images", "note"}
        if unknown:
            raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
        license_id = entry.get("id")
        if not isinstance(license_id, str) or len(license_id) < 8:
            raise ConfigError(f"{key}.id", "must be a string of at least 8 characters")
        if license_id in seen:
            raise ConfigError(f"{key}.id", "duplicate license id")
        seen.add(license_id)
        customer = entry.get("customer")
        if not isinstance(customer, str) or not customer.strip():
            raise ConfigError(f"{key}.customer", "required")
        apps = entry.get("apps")
        if not isinstance(apps, list) or not apps or not all(isinstance(a, str) for a in apps):
            raise ConfigError(f"{key}.apps", "must be a non-empty list of app names")
        images = entry.get("images") or []
        if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
            raise ConfigError(f"{key}.images", "must be a list of image patterns")
        revoked = entry.get("revoked", False)
        if not isinstance(revoked, bool):
            raise ConfigError(f"{key}.revoked", "must be true or false")
        licenses.append(
            License(
                id=license_id,
                customer=customer.strip(),
                apps=frozenset(apps),
                expires=parse_expiry(entry.get("expires"), f"{key}.expires"),
                expires_label=str(entry["expires"]) if entry.get("expires") is not None else "",
                revoked=revoked,
                images=tuple(images),
                source="file",
                fingerprint=fingerprint(license_id),
            )
        )
    return licenses


def read_licenses_file(path: Path) -> list[License]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError("licenses.file", f"cannot read {path}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError("licenses.file", f"{path} is not valid YAML: {e}") from None
    return parse_licenses(raw, str(path.name))


def read_revocations(path: Path) -> frozenset[str]:
    """A revocation list: YAML list (or `revoked:` list) of license ids or fingerprints."""
    try:
        raw = yaml.safe_load(path.read_text()) or []
    except OSError as e:
        raise ConfigError("licenses.revoked_file", f"cannot read {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError("licenses.revoked_file", f"not valid YAML: {e}") from None
    if isinstance(raw, dict):
        raw = raw.get("revoked") or []
    if not isinstance(raw, list):
        raise ConfigError("licenses.revoked_file", "must be a list of license ids")
    return frozenset(str(item) for item in raw)


class _WatchedFile:
    """Re-reads a file when its mtime, size or inode changes; keeps the last good content on errors."""

    def __init__(self, path: Path, parse: Callable[[Path], Any], what: str):
        self.path = path
        self.parse = parse
        self.what = what
        self.stamp: tuple[int, int, int] | None = None
        self.value: Any = None
        self.error: str | None = None

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def load(self) -> None:
        """First load: errors propagate (the mirror must not start without licenses)."""
        self.stamp = self._stat()
        self.value = self.parse(self.path)

    def refresh(self) -> bool:
        stamp = self._stat()
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        try:
            self.value = self.parse(self.path)
        except ConfigError as e:
            self.error = str(e)
            log.error("%s changed but cannot be used, keeping the previous version: %s", self.what, e)
            return False
        self.error = None
        log.info("reloaded %s", self.what)
        return True


class LicenseStore:
    """Grants or denies. Thread-compatible: the event loop is the only caller."""

    def __init__(self, config: LicensesConfig, clock: Callable[[], float] = time.time):
        self.config = config
        self.clock = clock
        self._file = _WatchedFile(config.file, read_licenses_file, "licenses file") if config.file else None
        self._revoked = (
            _WatchedFile(config.revoked_file, read_revocations, "revocation list") if config.revoked_file else None
        )
        self._public_key = config.jwt_public_key.value if config.jwt_public_key else None
        self._by_hash: dict[bytes, License] = {}
        self._by_fingerprint: dict[str, License] = {}
        self._next_check = 0.0

    def load(self) -> None:
        for watched in (self._file, self._revoked):
            if watched:
                watched.load()
        if self._public_key:
            try:
                _load_public_key(self._public_key)
            except Exception as e:  # noqa: BLE001 - any key parse failure is a config error
                raise ConfigError("licenses.jwt_public_key", f"not a usable RS256/ES256 public key: {e}") from None
        self._index()
        self._next_check = self.clock() + RELOAD_CHECK_SECONDS

    @property
    def licenses(self) -> list[License]:
        return list(self._file.value) if self._file else []

    @property
    def revoked(self) -> frozenset[str]:
        return self._revoked.value if self._revoked else frozenset()

    @property
    def last_error(self) -> str | None:
        return next((w.error for w in (self._file, self._revoked) if w and w.error), None)

    def _index(self) -> None:
        licenses = self.licenses
        self._by_hash = {hashlib.sha256(lic.id.encode()).digest(): lic for lic in licenses}
        self._by_fingerprint = {lic.fingerprint: lic for lic in licenses}

    def maybe_reload(self) -> None:
        """Cheap enough per request: at most one stat() per file per second."""
        now = self.clock()
        if now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_SECONDS
        changed = False
        for watched in (self._file, self._revoked):
            if watched and watched.refresh():
                changed = True
        if changed:
            self._index()

    def authenticate(self, secret: str) -> License:
        """The license for a secret (file license id or signed JWT), checked valid now."""
        self.maybe_reload()
        license = self._lookup(secret) if _is_utf8(secret) else None
        if license is None:
            raise UnknownLicense("UNAUTHORIZED", "unknown license: use your license ID as the registry password")
        self._check_not_revoked_or_expired(license)
        return license

    def by_fingerprint(self, fp: str) -> License | None:
        self.maybe_reload()
        return self._by_fingerprint.get(fp)

    def _check_not_revoked_or_expired(self, license: License) -> None:
        if self.is_revoked(license):
            license = dataclasses.replace(license, revoked=True)
        check_valid(license, self.clock())

    def is_revoked(self, license: License) -> bool:
        """Revoked in the file, or listed (by fingerprint, or a JWT's non-secret id) in the revocation list."""
        revoked = self.revoked
        return license.revoked or license.fingerprint in revoked or (license.source == "jwt" and license.id in revoked)

    def _lookup(self, secret: str) -> License | None:
        if self._public_key and secret.count(".") == 2:
            return self._verify_jwt(secret)
        candidate = self._by_hash.get(hashlib.sha256(secret.encode()).digest())
        # NOTE: the hash lookup finds the candidate; the final comparison is constant-time.
        if candidate is not None and hmac.compare_digest(candidate.id.encode(), secret.encode()):
            return candidate
        return None

    def _verify_jwt(self, token: str) -> License | None:
        try:
            claims = jwt.decode(
                token,
                _load_public_key(self._public_key),
                algorithms=JWT_ALGORITHMS,
                options={"require": ["sub"], "verify_exp": False, "verify_aud": False},
            )
        except (jwt.PyJWTError, TypeError, ValueError) as e:
            # TypeError: the token's algorithm needs another key type than ours (an ES256 token, an RSA key).
            log.info("rejected a license JWT: %s", e)
            return None
        return license_from_claims(claims)


def license_from_claims(claims: dict[str, Any]) -> License | None:
    """A License from verified JWT claims; None when the claims are malformed."""
    sub, customer, apps = claims.get("sub"), claims.get("customer"), claims.get("apps")
    images = claims.get("images") or []
    if not isinstance(sub, str) or not isinstance(customer, str) or not isinstance(apps, list) or not apps:
        return None
    if not all(isinstance(a, str) for a in apps) or not isinstance(images, list):
        return None
    exp = claims.get("exp")
    expires = dt.datetime.fromtimestamp(exp, dt.timezone.utc) if isinstance(exp, (int, float)) else None
    return License(
        id=sub,
        customer=customer,
        apps=frozenset(apps),
        expires=expires,
        images=tuple(str(i) for i in images),
        source="jwt",
        fingerprint=fingerprint(sub),
    )


def _is_utf8(text: str) -> bool:
    """Request bytes that are not UTF-8 reach us as surrogates (mitmproxy decodes with surrogateescape)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


_KEY_CACHE: dict[str, Any] = {}


def _load_public_key(pem: str | None) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    assert pem is not None
    key = _KEY_CACHE.get(pem)
    if key is None:
        key = _KEY_CACHE[pem] = load_pem_public_key(pem.encode())
    return key
