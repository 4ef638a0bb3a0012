"""A canary listener for tests: records every connection made to it (and what was sent), and
answers any HTTP request with 200 and a fixed body. A test that must prove the mirror never
contacts a host points the attempt at the canary and asserts `connections == []`.

    canary = Canary().start()
    ... hostile requests naming canary.address ...
    assert canary.connections == []
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field

BODY = b"canary says hello"


@dataclass
class Canary:
    connections: list[bytes] = field(default_factory=list)  # the first bytes each connection sent
    body: bytes = BODY

    def start(self) -> "Canary":
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._stopped = False
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                pass
            self.connections.append(data)
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(self.body), self.body))
            except OSError:
                pass

    def stop(self) -> None:
        self._stopped = True
        self._socket.close()
