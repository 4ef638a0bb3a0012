"""Send exact bytes to a server and read one HTTP answer: for malformed and hostile requests that
http.client refuses to send (bad header values, absolute-form targets, garbage request lines)."""

from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass

from . import leakcheck


@dataclass
class RawAnswer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def send(port: int, data: bytes, *, head: bool = False, timeout: float = 10.0) -> RawAnswer | None:
    """None when the server closed the connection without answering."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (and close) before reading everything we send
        response = http.client.HTTPResponse(sock, method="HEAD" if head else "GET")
        try:
            response.begin()
            body = response.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, TimeoutError):
            return None  # hung up, or still waiting for the rest of a request we never finished
        except http.client.IncompleteRead as e:
            body = e.partial
    leakcheck.record_answer(f"http://127.0.0.1:{port}/", response.status, response.headers, body)
    return RawAnswer(response.status, response.headers, body)


def build(method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b"", version: str = "HTTP/1.1") -> bytes:
    """A request as bytes; header names and values are sent as given (latin-1)."""
    lines = [f"{method} {target} {version}"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
