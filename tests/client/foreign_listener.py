"""Another program on the gateway's port, for the client's verification tests: a raw TCP server on a loopback port
that records every byte it receives and answers every request with the JSON `answer(challenge)` returns (today's
t-koma `/health` body without a proof, a wrong proof, …)."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from t_koma import __version__
from t_koma.handshake import health_proof

Answer = Callable[[str | None], dict[str, Any]]


def like_t_koma(challenge: str | None) -> dict[str, Any]:
    """Exactly what a t-koma gateway answered on `/health` before the challenge existed."""
    return {"status": "ok", "version": __version__}


def wrong_proof(challenge: str | None) -> dict[str, Any]:
    """A proof made with another token."""
    return {**like_t_koma(challenge), "proof": health_proof("another-token-0123456789abcdef", challenge or "")}


class ForeignListener(socketserver.ThreadingTCPServer):
    """`received` holds each connection's bytes, in order; `url` is `http://127.0.0.1:PORT`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: Answer, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.answer = answer
        self.received: list[bytes] = []
        self.port: int = self.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()

    def record(self, data: bytes) -> None:
        with self._lock:
            self.received.append(data)

    def saw(self, secret: str) -> bool:
        """Whether `secret` is in any byte received, in one connection or split across two."""
        with self._lock:
            return any(secret.encode() in chunk for chunk in (*self.received, b"".join(self.received)))


class _Handler(socketserver.BaseRequestHandler):
    server: ForeignListener

    def handle(self) -> None:
        data = self._read_head()
        self.server.record(data)
        target = data.split(b" ", 2)[1].decode("latin-1") if data.count(b" ") >= 2 else "/"
        challenge = parse_qs(urlsplit(target).query).get("challenge", [None])[0]
        body = json.dumps(self.server.answer(challenge)).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.request.sendall(head.encode() + b"Connection: close\r\n\r\n" + body)
        self._drain()

    def _read_head(self) -> bytes:
        self.request.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            try:
                chunk = self.request.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        return data

    def _drain(self) -> None:
        """Keep recording whatever else the client sends on this connection until it closes."""
        self.request.settimeout(0.5)
        try:
            while chunk := self.request.recv(65536):
                self.server.record(chunk)
        except OSError:
            return


@contextmanager
def foreign_listener(answer: Answer = like_t_koma, port: int = 0) -> Iterator[ForeignListener]:
    """A listener on `port` (a free one by default) for the duration of the block."""
    server = ForeignListener(answer, port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
