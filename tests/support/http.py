"""A raw HTTP client for e2e tests: exact status, headers and bytes, nothing followed or decoded."""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import leakcheck


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)

    def errors(self) -> list[dict]:
        return self.json()["errors"]


def request(method: str, url: str, headers: dict | None = None, body: bytes | None = None, timeout: float = 30) -> Answer:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        answer = Answer(response.status, response.headers, response.read())
        leakcheck.record_answer(url, answer.status, answer.headers, answer.body)
        return answer
    finally:
        conn.close()


def basic(password: str, user: str = "customer") -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer_for(mirror_url: str, license: str, scope: str) -> dict:
    answer = request("GET", f"{mirror_url}/v2/token?service=authmirror&scope={scope}", basic(license))
    assert answer.status == 200, answer.body
    return {"Authorization": f"Bearer {answer.json()['token']}"}
