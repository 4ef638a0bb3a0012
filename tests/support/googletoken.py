"""A local stand-in for Google's OAuth token endpoint (https://oauth2.googleapis.com/token).

It does what Google does with a service account's JWT-bearer grant: checks the RS256 signature
against the public half of the key it issued (by `kid`), the issuer, the audience, the expiry and
the scope, then answers an access token. Keys are generated here, so the test's service-account
JSON is real and its `token_uri` points at this server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from . import localhttp
from .localhttp import reply_json, serve

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # google-auth always signs for this audience
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


@dataclass
class GoogleTokenEndpoint:
    access_token: str = "ya29.local-access-token-0001"
    expires_in: int = 3599
    requests: list[dict] = field(default_factory=list)  # one per grant: {"iss", "ok", "error"}
    _public_keys: dict[str, tuple[str, object]] = field(default_factory=dict)  # kid -> (email, key)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def service_account_key(self, email: str = "puller@acme-project.iam.gserviceaccount.com", project: str = "acme-project") -> dict:
        """A service-account key file (as the Cloud console downloads it) whose key this endpoint trusts."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = f"{len(self._public_keys) + 1:040x}"
        self._public_keys[kid] = (email, key.public_key())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        return {
            "type": "service_account",
            "project_id": project,
            "private_key_id": kid,
            "private_key": pem,
            "client_email": email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.url,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        if form.get("grant_type", [""])[0] != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type"}
        assertion = form.get("assertion", [""])[0]
        try:
            kid = jwt.get_unverified_header(assertion).get("kid", "")
            email, public_key = self._public_keys[kid]
            claims = jwt.decode(assertion, public_key, algorithms=["RS256"], audience=GOOGLE_TOKEN_AUDIENCE, issuer=email, options={"require": ["exp", "iat", "iss", "aud"]})
        except (KeyError, jwt.PyJWTError) as e:
            self.requests.append({"iss": None, "ok": False, "error": str(e)})
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            self.requests.append({"iss": email, "ok": False, "error": "scope"})
            return 400, {"error": "invalid_scope", "error_description": "Invalid OAuth scope or ID token audience provided."}
        self.requests.append({"iss": email, "ok": True, "time": time.time()})
        return 200, {"access_token": self.access_token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def start(self) -> "GoogleTokenEndpoint":
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                reply_json(self, *endpoint.grant(form))

        self._server = serve(Handler)
        return self

    def stop(self) -> None:
        localhttp.stop(self._server)

    _server: ThreadingHTTPServer | None = None
