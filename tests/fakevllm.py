"""A local HTTP server that behaves like a starting vLLM: not listening at first, then 503 on
/health while "loading", then 200, with /v1/models behind the API key."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeVllm:
    def __init__(
        self,
        model: str,
        api_key: str,
        *,
        start_after_s: float = 0.0,
        loading_polls: int = 0,
        never_healthy: bool = False,
        served_model: str | None = None,
    ) -> None:
        self.model, self.api_key = model, api_key
        self.served = served_model or model
        self.start_after_s, self.loading_polls = start_after_s, loading_polls
        self.never_healthy = never_healthy
        self.port = free_port()
        self.requests: list[tuple[str, int]] = []
        self.server: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeVllm:
        if self.start_after_s:
            self._timer = threading.Timer(self.start_after_s, self._start)
            self._timer.start()
        else:
            self._start()
        return self

    def _start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __exit__(self, *exc: object) -> None:
        if self._timer:
            self._timer.cancel()
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict | None = None) -> None:
                data = json.dumps(body or {}).encode()
                fake.requests.append((self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/health":
                    polls = sum(1 for p, _ in fake.requests if p == "/health")
                    if fake.never_healthy or polls < fake.loading_polls:
                        return self._send(503, {"error": "loading"})
                    return self._send(200)
                if self.path == "/v1/models":
                    if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                        return self._send(401, {"error": "Unauthorized"})
                    return self._send(
                        200, {"object": "list", "data": [{"id": fake.served, "object": "model"}]}
                    )
                self._send(404)

        return Handler
