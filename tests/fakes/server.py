"""The one base every fake HTTP server in the tests shares.

A ThreadingHTTPServer bound to 127.0.0.1 (port 0 = any free port unless one is given), with
daemon handler threads and a short poll interval: socketserver's default poll_interval of
0.5 s made every ``shutdown()`` wait up to half a second, which added up to a large share of
the suite's wall time. Used as a context manager: entering starts serving, leaving stops.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

# How often serve_forever checks for shutdown(): the bound on how long stop() waits.
POLL_INTERVAL_S = 0.01


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (the fakes' requests are recorded by the fakes)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (the timeout and hang tests) is expected; anything else is a
        bug in a fake and is reported as socketserver does."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class LoopbackServer:
    """A loopback HTTP server for one handler class.

    The socket is bound at construction, so ``port`` and ``url`` are known (and reserved)
    before serving starts. ``listen()`` and ``start()`` can be split: a bound socket that is
    not listening refuses connections, like a machine whose server has not started yet.
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self.server = _Server(("127.0.0.1", port), handler, bind_and_activate=False)
        self.server.server_bind()
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen and serve from a daemon thread."""
        self.server.server_activate()
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL_S},
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
            self._thread = None
        self.server.server_close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
