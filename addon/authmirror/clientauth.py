"""Client authentication: Authorization headers, licenses and our tokens, and the token endpoint."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from .errors import RegistryError
from .licenses import License, LicenseRefused, LicenseStore, check_entitled, check_valid
from .routing import NAME_RE, split_name
from .tokens import TokenIssuer, parse_scope, token_allows


@dataclass(frozen=True)
class ClientCredential:
    """What the client presented. `secret` is a license (Basic) or one of our tokens (Bearer)."""

    scheme: str  # basic | bearer | none
    username: str = ""
    secret: str = field(default="", repr=False)


NO_CREDENTIAL = ClientCredential("none")


def parse_authorization(value: str | None) -> ClientCredential:
    """Parse an Authorization header. Malformed headers are a 401, never a crash."""
    if not value or not value.strip():
        return NO_CREDENTIAL
    scheme, _, param = value.strip().partition(" ")
    scheme = scheme.lower()
    param = param.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(param, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise RegistryError("UNAUTHORIZED", "malformed Basic credentials") from None
        # NOTE: split at the first colon only: a license may contain colons, a username may not (RFC 7617).
        username, sep, password = decoded.partition(":")
        if not sep or not password:
            raise RegistryError("UNAUTHORIZED", "Basic credentials need a password: use your license ID")
        return ClientCredential("basic", username, password)
    if scheme == "bearer":
        if not param or " " in param:
            raise RegistryError("UNAUTHORIZED", "malformed Bearer token")
        return ClientCredential("bearer", "", param)
    raise RegistryError("UNAUTHORIZED", f"unsupported authorization scheme {scheme[:20]!r}; use Basic or Bearer")


@dataclass(frozen=True)
class Identity:
    """An authenticated client: its license, and the token claims when it came with a token."""

    license: License
    claims: Mapping[str, Any] | None = None


def license_from_token(claims: Mapping[str, Any], store: LicenseStore) -> License:
    """The license a token was issued to, as it stands *now* (revocations apply immediately)."""
    fp = claims.get("lic")
    if claims.get("src") == "file":
        license = store.by_fingerprint(fp) if isinstance(fp, str) else None
        if license is None:
            raise RegistryError("UNAUTHORIZED", "the license this token was issued for is no longer known")
        return license
    lexp = claims.get("lexp")
    license = License(
        id=str(claims.get("lid", "")),
        customer=str(claims.get("customer", "")),
        apps=frozenset(claims.get("apps") or []),
        expires=dt.datetime.fromtimestamp(lexp, dt.timezone.utc) if isinstance(lexp, (int, float)) else None,
        images=tuple(claims.get("images") or []),
        source="jwt",
        fingerprint=str(fp),
    )
    if store.is_revoked(license):
        raise LicenseRefused("DENIED", f"license for {license.customer} has been revoked", detail={"license": fp}, license=license)
    return license


class ClientAuthenticator:
    def __init__(self, store: LicenseStore, issuer: TokenIssuer):
        self.store = store
        self.issuer = issuer

    def identify(self, credential: ClientCredential) -> Identity | None:
        """Who is asking; None without credentials. Raises 401 (unknown) or 403 (expired, revoked)."""
        if credential.scheme == "none":
            return None
        if credential.scheme == "basic":
            return Identity(self.store.authenticate(credential.secret))
        claims = self.issuer.verify(credential.secret)
        license = license_from_token(claims, self.store)
        check_valid(license, self.store.clock())
        return Identity(license, claims)

    def authorize(self, identity: Identity, app: str, repository: str, scope_name: str) -> None:
        """May this identity pull this image? Raises 403 DENIED with the reason."""
        check_entitled(identity.license, app, repository)
        if identity.claims is not None and not token_allows(identity.claims, scope_name):
            raise RegistryError(
                "UNAUTHORIZED",
                "token does not cover this repository; request a token with its scope",
                detail={"scope": f"repository:{scope_name}:pull"},
            )

    def issue_token(self, credential: ClientCredential, scopes: Sequence[str], domain_app: str) -> tuple[dict[str, Any], License]:
        """Answer a token request (and say for whom). No anonymous tokens; only pull is ever granted.

        An unknown, expired or revoked license gets a 401 with the reason: clients show a token
        endpoint's 401 message, but not a 403's. A valid license gets a token for the scopes it is
        entitled to (possibly none, as Distribution's token server does); the image request then
        answers 403 DENIED with the reason, which clients do show.
        """
        if credential.scheme != "basic":
            raise RegistryError("UNAUTHORIZED", "token requests need Basic credentials: any username, your license ID as password")
        try:
            license = self.store.authenticate(credential.secret)
        except LicenseRefused as e:
            raise LicenseRefused("UNAUTHORIZED", e.message, detail=e.detail, license=e.license) from None
        access: list[dict[str, Any]] = []
        for text in scopes:
            scope = parse_scope(text)
            if scope is None or scope.type != "repository" or not NAME_RE.match(scope.name) or "pull" not in scope.actions:
                continue  # unknown scopes and push-only requests are dropped
            try:
                app, _, repository = split_name(scope.name, domain_app)
                check_entitled(license, app, repository)
            except RegistryError:
                continue
            access.append({"type": "repository", "name": scope.name, "actions": ["pull"]})
        subject = license.claims()
        if license.source == "jwt":
            subject["lid"] = license.id
        subject["sub"] = license.fingerprint
        subject["account"] = credential.username[:200]
        return self.issuer.issue(subject, access), license
