"""Vendor-signed licenses: the vendor's key pair, issuing license JWTs, and explaining a token.

A signed license is a JWT (RS256 or ES256) with the claims the mirror reads (licenses.py):
`sub` (the license id), `customer`, `apps`, `exp`, optional `images`. The header's `kid` names
the signing key, so `verify` can tell "signed by another key" from "altered after signing".
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .config import LicensesConfig
from .errors import AuthMirrorError, ConfigError, RegistryError
from .licenses import JWT_ALGORITHMS, License, LicenseStore, fingerprint, license_from_claims, parse_expiry
from .secrets import Secret

ISSUER = "authmirror"


class SigningError(AuthMirrorError):
    """The vendor key cannot be made, read or used."""


def key_id(public_key: Any) -> str:
    """A short name for a public key: the SHA-256 of its SubjectPublicKeyInfo."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode().rstrip("=")


def generate_keypair(private_path: Path, public_path: Path, algorithm: str = "ES256", force: bool = False) -> str:
    """Write the vendor's private key (mode 0600) and public key; returns the key id."""
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise SigningError(f"{path} exists; pass --force to replace it (licenses signed with the old key stop working)")
    if algorithm == "ES256":
        private_key: Any = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise SigningError(f"unsupported algorithm {algorithm} (use ES256 or RS256)")
    pem = private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path.parent.mkdir(parents=True, exist_ok=True)
    if private_path.exists():
        private_path.unlink()
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as stream:
        stream.write(pem)
    public_path.write_bytes(private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(private_key.public_key())


def load_private_key(path: Path) -> Any:
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise SigningError(f"cannot read the vendor key {path}: {e.strerror}") from None
    except (ValueError, TypeError) as e:
        raise SigningError(f"{path} is not an unencrypted PEM private key: {e}") from None


def load_public_key(pem: str) -> Any:
    try:
        return serialization.load_pem_public_key(pem.encode())
    except ValueError as e:
        raise ConfigError("licenses.jwt_public_key", f"not a PEM public key: {e}") from None


def algorithm_for(key: Any) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES256"
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    raise SigningError("the vendor key must be an EC P-256 (ES256) or RSA (RS256) key")


def issue_license(private_key: Any, customer: str, apps: list[str], expires: dt.datetime | None, images: list[str] | None = None, license_id: str | None = None, now: float | None = None) -> str:
    """A signed license JWT. `expires` None means it never expires (avoid: revocation is then the only stop)."""
    if not customer.strip() or not apps:
        raise SigningError("a license needs a customer and at least one app")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": license_id or "jwt-" + secrets.token_urlsafe(12),
        "customer": customer.strip(),
        "apps": list(apps),
        "iss": ISSUER,
        "iat": issued,
    }
    if images:
        claims["images"] = list(images)
    if expires is not None:
        claims["exp"] = int(expires.timestamp())
    headers = {"kid": key_id(private_key.public_key())}
    return jwt.encode(claims, private_key, algorithm=algorithm_for(private_key), headers=headers)


def expiry_from_text(text: str) -> dt.datetime | None:
    """`--expires 2027-06-30` (valid through that day, UTC), an ISO datetime, or `never`."""
    if text.strip().lower() == "never":
        return None
    return parse_expiry(text.strip(), "--expires")


# -- verify ---------------------------------------------------------------------------------------


@dataclass
class Verdict:
    """What a token grants and whether the mirror accepts it now, with the reasons."""

    valid: bool
    reasons: list[str] = field(default_factory=list)  # why not (empty when valid)
    notes: list[str] = field(default_factory=list)  # worth knowing either way
    grants: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def explain(token: str, public_key_pem: str | None, revoked: frozenset[str] = frozenset(), known_apps: set[str] | None = None, now: float | None = None) -> Verdict:
    now = time.time() if now is None else now
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        return Verdict(False, [f"not a license token (JWT): {e}"])
    verdict = Verdict(True, header={k: header.get(k) for k in ("alg", "kid") if header.get(k)})
    license = license_from_claims(claims)
    if license is None:
        verdict.reasons.append("the claims are incomplete: a license needs sub, customer and a non-empty apps list")
    else:
        verdict.grants = grants_of(license, claims)
    if public_key_pem is None:
        verdict.reasons.append("cannot check the signature: no public key (set licenses.jwt_public_key or pass --public-key)")
    else:
        verdict.reasons.extend(_signature_problems(token, header, public_key_pem))
    if license is not None:
        if license.expired(now):
            verdict.reasons.append(f"expired on {license.expiry_text}")
        elif license.expires is None:
            verdict.notes.append("never expires: only the revocation list can stop it")
        if license.fingerprint in revoked or license.id in revoked:
            verdict.reasons.append("revoked: it is on the revocation list")
        unknown = sorted(set(license.apps) - known_apps) if known_apps is not None else []
        if unknown:
            verdict.notes.append(f"app(s) not in this mirror's config: {', '.join(unknown)}")
    verdict.valid = not verdict.reasons
    return verdict


def _signature_problems(token: str, header: dict, public_key_pem: str) -> list[str]:
    public_key = load_public_key(public_key_pem)
    expected_kid = key_id(public_key)
    kid = header.get("kid")
    other_key = [f"signed with a different key (kid {kid}) than the configured public key (kid {expected_kid})"] if kid and kid != expected_kid else []
    try:
        jwt.decode(token, public_key, algorithms=JWT_ALGORITHMS, options={"verify_exp": False, "verify_aud": False, "require": ["sub"]})
    except jwt.InvalidSignatureError:
        return other_key or ["the signature does not match: the token was altered after it was signed"]
    except (jwt.InvalidAlgorithmError, TypeError, ValueError):
        # PyJWT raises TypeError when the token's algorithm needs another key type (ES256 token, RSA key).
        return other_key or [f"algorithm {header.get('alg')!r} does not fit the configured public key (accepted: {', '.join(JWT_ALGORITHMS)})"]
    except jwt.PyJWTError as e:
        return [f"not accepted: {e}"]
    return []


def grants_of(license: License, claims: dict[str, Any]) -> dict[str, Any]:
    issued = claims.get("iat")
    return {
        "customer": license.customer,
        "apps": sorted(license.apps),
        "images": list(license.images) or "every image of its apps",
        "expires": license.expiry_text,
        "fingerprint": license.fingerprint,
        "license_id": license.id,
        "issued": dt.datetime.fromtimestamp(issued, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if isinstance(issued, (int, float)) else None,
    }


def mirror_accepts(token: str, licenses: LicensesConfig) -> str | None:
    """What the mirror itself says about the token: None if it accepts it, else its refusal message."""
    store = LicenseStore(licenses)
    store.load()
    try:
        store.authenticate(token)
    except RegistryError as e:
        return e.message
    return None


def public_key_config(pem: str, revoked_file: Path | None) -> LicensesConfig:
    return LicensesConfig(file=None, jwt_public_key=Secret("--public-key", pem), revoked_file=revoked_file)


def revocation_fingerprints(revoked: frozenset[str]) -> frozenset[str]:
    return frozenset(entry if entry.startswith("lic_") else fingerprint(entry) for entry in revoked)
