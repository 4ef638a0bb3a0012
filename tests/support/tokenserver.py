"""A tiny Distribution token server (what GHCR, Docker Hub, Quay and GAR do) for docker-registry.

Issues RS256 JWTs with an `x5c` header holding a self-signed certificate the registry trusts via
`auth.token.rootcertbundle`. Checks Basic credentials, counts requests, can revoke tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from . import leakcheck, localhttp
from .localhttp import reply_json, serve

SERVICE = "test-registry"
ISSUER = "test-token-issuer"


def _self_signed(key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authmirror test token issuer")])
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


@dataclass
class TokenServer:
    users: dict[str, str]
    expires_in: int = 300
    requests: list[dict] = field(default_factory=list)
    rate_limited: bool = False
    service: str = SERVICE
    answer_fields: tuple[str, ...] = ("token", "access_token")  # ACR answers only access_token, GHCR only token

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.cert = _self_signed(self.key)
        self._x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()
        self._server: ThreadingHTTPServer | None = None

    def write_cert(self, path: Path) -> Path:
        path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        return path

    def registry_auth(self, cert_path: Path, realm_path: str = "/token") -> dict:
        return {"realm": f"{self.url}{realm_path}", "service": self.service, "issuer": ISSUER, "rootcertbundle": str(cert_path)}

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def token_requests(self, scope: str | None = None) -> list[dict]:
        return [r for r in self.requests if scope is None or scope in r["scopes"]]

    def issue(self, account: str, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")[0], ":".join(scope.split(":")[1:-1]), scope.split(":")[-1]
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": account, "aud": self.service, "exp": now + self.expires_in, "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": [self._x5c]})
        leakcheck.forbid_everywhere(token)  # an upstream token: never shown to clients, never logged
        return token

    def start(self) -> "TokenServer":
        server_ref = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                parts = urlsplit(self.path)
                params = parse_qs(parts.query)
                scopes = [s for v in params.get("scope", []) for s in v.split()]
                account = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                    if server_ref.users.get(user) != password:
                        return self._json(401, {"errors": [{"code": "UNAUTHORIZED", "message": "incorrect username or password"}]})
                    account = user
                server_ref.requests.append({"account": account, "scopes": scopes, "time": time.time(), "path": parts.path, "service": params.get("service", [""])[0]})
                if server_ref.rate_limited:
                    return self._json(429, {"errors": [{"code": "TOOMANYREQUESTS", "message": "slow down"}]}, {"Retry-After": "60"})
                if account is None:
                    scopes = [s for s in scopes if s.startswith("repository:public/")]
                token = server_ref.issue(account or "", scopes)
                self._json(200, {**{name: token for name in server_ref.answer_fields}, "expires_in": server_ref.expires_in})

            def _json(self, status, data, headers=None):
                reply_json(self, status, data, headers)

        self._server = serve(Handler)
        leakcheck.forbid_in_answers(self.url.split("//", 1)[1])
        return self

    def stop(self) -> None:
        localhttp.stop(self._server)
