"""The connect step: DNS, TCP and TLS to a registry, each timed, each failure told apart."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..httpclient import HttpFailure


@dataclass
class ConnectTiming:
    address: str
    dns_ms: float
    tcp_ms: float
    tls_ms: float | None  # None for plain http
    tls_version: str = ""

    def describe(self) -> str:
        parts = [f"DNS {self.dns_ms:.1f} ms ({self.address})", f"TCP {self.tcp_ms:.1f} ms"]
        parts.append(f"TLS {self.tls_ms:.1f} ms ({self.tls_version})" if self.tls_ms is not None else "plain http, no TLS")
        return ", ".join(parts)


def probe_sync(url: str, timeout: float) -> ConnectTiming:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    started = time.perf_counter()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise HttpFailure("dns", f"host name {host} not found ({e.strerror})") from None
    dns_ms = (time.perf_counter() - started) * 1000
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    sock.settimeout(timeout)
    try:
        started = time.perf_counter()
        try:
            sock.connect(address)
        except (TimeoutError, socket.timeout):
            raise HttpFailure("timeout", f"TCP connect to {host}:{port} timed out after {timeout:g} s") from None
        except ConnectionRefusedError:
            raise HttpFailure("connect", f"connection to {host}:{port} refused") from None
        except OSError as e:
            raise HttpFailure("connect", f"cannot connect to {host}:{port} ({e.strerror or e})") from None
        tcp_ms = (time.perf_counter() - started) * 1000
        if parts.scheme != "https":
            return ConnectTiming(address[0], dns_ms, tcp_ms, None)
        started = time.perf_counter()
        try:
            with ssl.create_default_context().wrap_socket(sock, server_hostname=host) as tls:
                version = tls.version() or ""
        except (TimeoutError, socket.timeout):
            raise HttpFailure("timeout", f"TLS handshake with {host}:{port} timed out after {timeout:g} s") from None
        except ssl.SSLError as e:
            raise HttpFailure("tls", f"TLS handshake with {host}:{port} failed ({ssl_reason(e)})") from None
        except OSError as e:
            raise HttpFailure("tls", f"TLS handshake with {host}:{port} failed ({e.strerror or e})") from None
        return ConnectTiming(address[0], dns_ms, tcp_ms, (time.perf_counter() - started) * 1000, version)
    finally:
        sock.close()


async def probe(url: str, timeout: float) -> ConnectTiming:
    return await asyncio.to_thread(probe_sync, url, timeout)


def ssl_reason(error: ssl.SSLError) -> str:
    """`[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:992)`
    without the C source location."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(error)).strip()
