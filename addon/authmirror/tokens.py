"""The mirror's own bearer tokens (Docker Registry token flow): signing key, issue, verify, challenges.

NOTE: modelled on Distribution's token auth, https://distribution.github.io/distribution/spec/auth/token/
A token names the license by fingerprint only; the license is re-checked on every request, so a
revoked or expired license stops working before its tokens expire.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import ConfigError, RegistryError

log = logging.getLogger("authmirror.tokens")

ISSUER = "authmirror"
SERVICE = "authmirror"
VERIFIED_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class Scope:
    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"


def parse_scope(text: str) -> Scope | None:
    """`repository:proxy/acme/vendor/app:pull` -> Scope; None when malformed."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not kind or not name:
        return None
    return Scope(kind, name, frozenset(a for a in actions.split(",") if a))


def bearer_challenge(realm: str, scope: str | None = None, error: str | None = None) -> str:
    value = f'Bearer realm="{realm}",service="{SERVICE}"'
    if scope:
        value += f',scope="{scope}"'
    if error:
        value += f',error="{error}"'
    return value


def key_id(public_key: Any) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b32encode(hashlib.sha256(der).digest()[:15]).decode().lower()


def algorithm_for(key: Any) -> str:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ES256"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RS256"
    raise ConfigError("token.signing_key", "must be an EC P-256 (ES256) or RSA (RS256) key")


def load_signing_key(spec: str) -> Any:
    """Load the private key; `file:PATH` that does not exist yet is generated (EC P-256) and kept 0600."""
    if spec.startswith("file:"):
        path = Path(spec[5:])
        if not path.exists():
            return _generate_key_file(path)
        try:
            pem = path.read_bytes()
        except OSError as e:
            raise ConfigError("token.signing_key", f"cannot read {path}: {e.strerror}") from None
    elif spec.startswith("env:"):
        value = os.environ.get(spec[4:])
        if not value:
            raise ConfigError("token.signing_key", f"environment variable {spec[4:]} is not set")
        pem = value.encode()
    else:
        pem = spec.encode()
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError("token.signing_key", f"not a PEM private key: {e}") from None
    algorithm_for(key)
    return key


def load_public_key(spec: str) -> Any:
    """A previous signing key, still accepted for verification: its PEM public or private key."""
    if spec.startswith("file:"):
        pem = Path(spec[5:]).read_bytes()
    elif spec.startswith("env:"):
        pem = os.environ.get(spec[4:], "").encode()
    else:
        pem = spec.encode()
    try:
        return serialization.load_pem_public_key(pem)
    except ValueError:
        try:
            return serialization.load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError) as e:
            raise ConfigError("token.previous_keys", f"not a PEM key: {e}") from None


def _generate_key_file(path: Path) -> Any:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(tmp, path)  # fails if another replica won the race: then use theirs
        except FileExistsError:
            os.unlink(tmp)
            return load_signing_key(f"file:{path}")
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError("token.signing_key", f"cannot create {path}: {e.strerror}") from None
    log.warning("generated a new token signing key at %s (replicas must share this file)", path)
    return key


class TokenIssuer:
    """Issues and verifies short-lived JWTs. Verified tokens are cached until they expire.

    Key rotation: tokens signed with a `previous` key (by `kid`) are accepted for one TTL after
    this issuer was built, long enough for every token the old key issued to expire, and no
    longer: a leaked old key cannot mint tokens that outlive the rotation.
    """

    def __init__(
        self,
        private_key: Any,
        ttl_seconds: int,
        previous_public_keys: tuple[Any, ...] = (),
        clock: Callable[[], float] = time.time,
    ):
        self.private_key = private_key
        self.algorithm = algorithm_for(private_key)
        self.kid = key_id(private_key.public_key())
        self.ttl = ttl_seconds
        self.clock = clock
        self.verify_keys = {self.kid: (private_key.public_key(), self.algorithm)}
        for public in previous_public_keys:
            self.verify_keys.setdefault(key_id(public), (public, algorithm_for(public)))
        self.previous_keys_until = clock() + ttl_seconds
        if len(self.verify_keys) > 1:
            log.info("token.previous_keys are accepted for %d s more (one TTL); remove them from the config after that", ttl_seconds)
        self._verified: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0

    def issue(self, subject_claims: dict[str, Any], access: list[dict[str, Any]], audience: str = SERVICE) -> dict[str, Any]:
        now = int(self.clock())
        claims = {
            "iss": ISSUER,
            "aud": audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + self.ttl,
            "jti": secrets.token_urlsafe(12),
            "access": access,
            **subject_claims,
        }
        token = jwt.encode(claims, self.private_key, algorithm=self.algorithm, headers={"kid": self.kid})
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": issued_at}

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid token; RegistryError UNAUTHORIZED otherwise."""
        now = self.clock()
        cached = self._verified.get(token)
        if cached is not None:
            claims, valid_until = cached
            if valid_until > now:
                self.cache_hits += 1
                return claims
            del self._verified[token]
            raise RegistryError("UNAUTHORIZED", "token expired; request a new one")
        self.cache_misses += 1
        try:
            header = jwt.get_unverified_header(token)
            kid = header.get("kid")
            public, algorithm = self.verify_keys.get(kid, (None, None)) if isinstance(kid, str) else (None, None)
            if public is None:
                raise RegistryError("UNAUTHORIZED", "token was not issued by this mirror")
            claims = jwt.decode(
                token,
                public,
                algorithms=[algorithm],
                audience=SERVICE,
                issuer=ISSUER,
                # Times are checked below against our (injectable) clock.
                options={"require": ["exp", "iat", "access"], "verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except (jwt.PyJWTError, UnicodeError):  # header bytes that are not UTF-8 arrive as surrogates
            raise RegistryError("UNAUTHORIZED", "invalid token") from None
        if not isinstance(claims["exp"], (int, float)) or claims["exp"] <= now:
            raise RegistryError("UNAUTHORIZED", "token expired; request a new one")
        if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] > now + 30:
            raise RegistryError("UNAUTHORIZED", "token not valid yet")
        valid_until = claims["exp"]
        if kid != self.kid:
            if now >= self.previous_keys_until:
                raise RegistryError("UNAUTHORIZED", "token was signed with a retired key; request a new one")
            valid_until = min(valid_until, self.previous_keys_until)
        self._verified[token] = (claims, valid_until)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims


def token_allows(claims: dict[str, Any], name: str, action: str = "pull") -> bool:
    for entry in claims.get("access") or []:
        if isinstance(entry, dict) and entry.get("type") == "repository" and entry.get("name") == name:
            if action in (entry.get("actions") or []):
                return True
    return False
