"""A local HTTP server that behaves like a starting vLLM: not listening at first, then 503 on
/health while "loading", then 200, with /v1/models behind the API key (401 for any other
key, as vLLM's --api-key middleware answers). ``health_needs_key``: /health behind the key too
(a gateway that guards every path); ``models_redirect``: /v1/models answers 302 to that URL;
``models_answer``: /v1/models answers this JSON instead of a model list."""

from __future__ import annotations

import json
import threading
from typing import Self

from tests.fakes.server import LoopbackServer, QuietHandler


class FakeVllm(LoopbackServer):
    def __init__(
        self,
        model: str,
        api_key: str,
        *,
        start_after_s: float = 0.0,
        loading_polls: int = 0,
        never_healthy: bool = False,
        served_model: str | None = None,
        health_needs_key: bool = False,
        models_redirect: str | None = None,
        models_answer: object = None,
    ) -> None:
        self.model, self.api_key = model, api_key
        self.served = served_model or model
        self.start_after_s, self.loading_polls = start_after_s, loading_polls
        self.never_healthy = never_healthy
        self.health_needs_key, self.models_redirect = health_needs_key, models_redirect
        self.models_answer = models_answer
        self.requests: list[tuple[str, int]] = []
        self._timer: threading.Timer | None = None
        # Bound now (the port is known and reserved), listening only from start(): until then
        # a connection is refused, like a machine that is still booting.
        super().__init__(self._handler())

    @property
    def endpoint(self) -> str:
        return f"{self.url}/v1"

    def __enter__(self) -> Self:
        if self.start_after_s:
            self._timer = threading.Timer(self.start_after_s, self.start)
            self._timer.daemon = True
            self._timer.start()
        else:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer:
            self._timer.cancel()
            self._timer.join()
        self.stop()

    def _handler(self) -> type[QuietHandler]:
        fake = self

        class Handler(QuietHandler):
            def _send(self, status: int, body: object = None) -> None:
                data = json.dumps({} if body is None else body).encode()
                fake.requests.append((self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                keyed = self.headers.get("Authorization") == f"Bearer {fake.api_key}"
                if self.path == "/health" and fake.health_needs_key and not keyed:
                    return self._send(401, {"error": "Unauthorized"})
                if self.path == "/v1/models" and fake.models_redirect:
                    fake.requests.append((self.path, 302))
                    self.send_response(302)
                    self.send_header("Location", fake.models_redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if self.path == "/health":
                    polls = sum(1 for p, _ in fake.requests if p == "/health")
                    if fake.never_healthy or polls < fake.loading_polls:
                        return self._send(503, {"error": "loading"})
                    return self._send(200)
                if self.path == "/v1/models":
                    if not keyed:
                        return self._send(401, {"error": "Unauthorized"})
                    if fake.models_answer is not None:
                        return self._send(200, fake.models_answer)
                    return self._send(
                        200, {"object": "list", "data": [{"id": fake.served, "object": "model"}]}
                    )
                self._send(404)

        return Handler
