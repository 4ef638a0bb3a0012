"""Blob storage redirects: sealing storage URLs into mirror URLs, and deciding where we may follow.

Registries answer blob GETs with a 307 to object storage (S3, GCS, a CDN). A mitmproxy flow is
sent upstream once, so with `blob_redirects: follow` the client gets a 307 to the mirror itself,
carrying the storage URL encrypted and authenticated (AES-GCM, key derived from the token signing
key, so every replica can open it). The follow-up request is then sent to storage, without the
vendor's Authorization. The storage URL (often a presigned credential) never reaches the client.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import time
from typing import Any, Callable
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .config import RegistryConfig
from .errors import RegistryError

QUERY_PARAM = "authmirror-blob"
SEAL_TTL = 300


def derive_key(private_key: Any, purpose: bytes) -> bytes:
    material = private_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"authmirror " + purpose).derive(material)


class RedirectSealer:
    def __init__(self, key: bytes, ttl: int = SEAL_TTL, clock: Callable[[], float] = time.time):
        self._aead = AESGCM(key)
        self.ttl = ttl
        self.clock = clock

    def seal(self, url: str, context: dict[str, Any]) -> str:
        payload = json.dumps({"u": url, "x": int(self.clock()) + self.ttl, "c": context}, separators=(",", ":"))
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, payload.encode(), b"blob-redirect")
        return base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def unseal(self, token: str) -> tuple[str, dict[str, Any]]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            payload = json.loads(self._aead.decrypt(raw[:12], raw[12:], b"blob-redirect"))
        except Exception:  # noqa: BLE001 - any tampering or garbage is the same answer
            raise RegistryError("DENIED", "invalid blob redirect; pull the blob again") from None
        if payload["x"] < self.clock():
            raise RegistryError("DENIED", "blob redirect expired; pull the blob again")
        return payload["u"], payload["c"]


def same_origin(url: str, registry: RegistryConfig) -> bool:
    """Is `url` on the registry itself (scheme, host and port)?"""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    return (parts.scheme, (parts.hostname or "").lower(), port) == (registry.scheme, registry.host, registry.port)


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_global and not ip.is_multicast


async def check_storage_url(url: str, registry: RegistryConfig) -> None:
    """May the mirror fetch a storage URL the upstream redirected to? Raises UpstreamError-ish DENIED.

    Allowed: https to hosts that resolve to public addresses; the registry's own host; anything in
    the registry's `redirect_hosts` (needed for storage on loopback or a private network).
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    explicitly_allowed = same_origin(url, registry) or host in registry.redirect_hosts
    refuse = RegistryError(
        "DENIED",
        f"upstream registry '{registry.name}' redirected the blob to a storage location that is not allowed; "
        f"the vendor can allow it with redirect_hosts",
        status=502,
        detail={"registry": registry.name},
    )
    if parts.scheme not in ("http", "https") or not host:
        raise refuse
    if explicitly_allowed:
        return
    if parts.scheme != "https":
        raise refuse
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443)
    except OSError:
        raise RegistryError(
            "UNAVAILABLE", f"blob storage host of upstream registry '{registry.name}' cannot be resolved", status=502
        ) from None
    if not infos or not all(_is_public(info[4][0]) for info in infos):
        raise refuse
