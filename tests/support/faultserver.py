"""A fault-injecting HTTP server for tests: in front of a real registry, it passes requests through
unless a rule matches, and then answers as a misbehaving upstream would (errors, 429s, slow
headers or bodies, resets mid-body, redirects, garbage).

    faults = FaultServer(registry.url).start()
    faults.add(r"/manifests/", status=429, headers={"Retry-After": "60"}, times=1)
    faults.add(r"/blobs/", reset_after=1000)       # cut the connection mid-body
    ... point the mirror at faults.url ...
    faults.requests                                # what reached it: (method, path, headers)
"""

from __future__ import annotations

import http.client
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from . import leakcheck, localhttp
from .localhttp import serve


@dataclass
class Rule:
    pattern: str
    method: str | None = None  # None: any method
    status: int | None = None  # answer with this status (None: pass through to the upstream)
    headers: dict[str, str] = field(default_factory=dict)  # with status: the answer's; without: added to the upstream's
    body: bytes = b""
    delay_headers: float = 0.0  # sleep before sending anything
    delay_body: float = 0.0  # sleep between headers and body
    reset_after: int | None = None  # pass through, but close the connection after this many body bytes
    times: int | None = None  # apply this many times, then stop matching (None: always)
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method is None or self.method == method) and re.search(self.pattern, path) is not None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client hanging up on a misbehaving answer is expected here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FaultServer:
    def __init__(self, upstream_url: str | None = None):
        self.upstream = urlsplit(upstream_url) if upstream_url else None
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, pattern: str, **kwargs) -> Rule:
        rule = Rule(pattern, **kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.requests.clear()

    def _rule_for(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule
        return None

    def start(self) -> "FaultServer":
        faults = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                faults.requests.append((self.command, self.path, dict(self.headers.items())))
                rule = faults._rule_for(self.command, self.path)
                if rule and rule.delay_headers:
                    time.sleep(rule.delay_headers)
                if rule and rule.status is not None:
                    return self._answer(rule)
                if faults.upstream is None:
                    return self._answer(Rule("", status=404, body=b'{"errors":[{"code":"NAME_UNKNOWN","message":"no upstream"}]}'))
                self._pass_through(body, rule)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def _answer(self, rule: Rule):
                self.send_response(rule.status)
                headers = {"Content-Length": str(len(rule.body)), **rule.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if rule.delay_body:
                    self.wfile.flush()
                    time.sleep(rule.delay_body)
                if self.command != "HEAD":
                    self.wfile.write(rule.body)

            def _pass_through(self, body: bytes, rule: Rule | None):
                assert faults.upstream is not None
                conn = http.client.HTTPConnection(faults.upstream.hostname, faults.upstream.port, timeout=60)
                # Header by header: clients repeat some (skopeo sends one Accept per media type).
                conn.putrequest(self.command, self.path, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in ("host", "connection", "content-length"):
                        conn.putheader(name, value)
                if body:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body or None)
                response = conn.getresponse()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(name, value)
                for name, value in (rule.headers if rule else {}).items():  # a pass-through rule adds headers
                    self.send_header(name, value)
                self.end_headers()
                if rule and rule.delay_body:
                    self.wfile.flush()
                    time.sleep(rule.delay_body)
                sent = 0
                while self.command != "HEAD" and (chunk := response.read(64 * 1024)):
                    if rule and rule.reset_after is not None and sent + len(chunk) > rule.reset_after:
                        self.wfile.write(chunk[: rule.reset_after - sent])
                        self.wfile.flush()
                        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        self.connection.close()  # an RST, mid-body
                        self.close_connection = True
                        conn.close()
                        return
                    self.wfile.write(chunk)
                    sent += len(chunk)
                conn.close()

        self._server = serve(Handler, _QuietServer)
        leakcheck.forbid_in_answers(f"127.0.0.1:{self.port}")
        return self

    def stop(self) -> None:
        localhttp.stop(self._server)
