"""The authenticating proxy generated projects put in front of vLLM (gpuplan_proxy.py), run
for real on loopback in front of an upstream that, like vLLM 0.33, answers /invocations and
/tokenize to anyone."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key-0123456789"


def _load_proxy():
    spec = importlib.util.spec_from_file_location(
        "gpuplan_proxy", ROOT / "templates/_shared/gpuplan_proxy.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Upstream:
    """Answers 200 on every path and records what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                up.seen.append((self.command, self.path, body))
                data = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]


@pytest.fixture
def proxied() -> Iterator[tuple[str, Upstream]]:
    proxy = _load_proxy()
    upstream = Upstream()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(proxy.serve("127.0.0.1", 0, upstream.port, KEY))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", upstream
    _stop(loop, server, thread, upstream)


@pytest.mark.parametrize(
    "path", ["/invocations", "/tokenize", "/metrics", "/v1/completions", "/pooling", "/x"]
)
def test_every_path_but_health_needs_the_key(proxied, path):
    url, upstream = proxied
    body = {"prompt": "hi"}
    assert requests.post(url + path, json=body, timeout=5).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert requests.post(url + path, json=body, headers=bad, timeout=5).status_code == 401
    assert upstream.seen == []  # nothing unauthenticated reached vLLM
    good = {"Authorization": f"Bearer {KEY}"}
    r = requests.post(url + path, json=body, headers=good, timeout=5)
    assert r.status_code == 200 and r.json() == {"ok": True}
    assert upstream.seen == [("POST", path, '{"prompt": "hi"}')]


def test_health_is_open_for_load_balancers(proxied):
    url, upstream = proxied
    assert upstream.seen == []
    assert requests.get(url + "/health", timeout=5).status_code == 200
    assert requests.post(url + "/health", timeout=5).status_code == 401  # GET only
    assert requests.get(url + "/health/../invocations", timeout=5).status_code == 401


def test_a_second_request_on_one_connection_is_not_smuggled_through(proxied):
    url, upstream = proxied
    host, port = url.removeprefix("http://").split(":")
    first = (
        "GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        "POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    )
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(first.encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n")[0]
    assert [p for _, p, _ in upstream.seen] == ["/health"]


def test_chunked_bodies_are_refused(proxied):
    url, upstream = proxied

    def gen():
        yield b'{"prompt": "hi"}'

    r = requests.post(
        url + "/v1/completions",
        data=gen(),
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=5,
    )
    assert r.status_code == 411 and upstream.seen == []


def _limited_proxy(**limits):
    """A proxy with small limits on its own loop thread; yields (host, port)."""
    proxy = _load_proxy()
    upstream = Upstream()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(proxy.serve("127.0.0.1", 0, upstream.port, KEY, **limits))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return proxy, loop, server, thread, upstream


def _stop(loop, server, thread, upstream) -> None:
    """Stop the proxy: connections still being served are cancelled and awaited (a task left
    pending when the loop goes would be reported as destroyed at interpreter exit), then the
    loop is closed and the upstream stopped."""

    async def shutdown() -> None:
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()
    upstream.server.shutdown()
    upstream.server.server_close()


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\n",  # the head never ends
        ("POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY
         + "\r\nContent-Length: 100\r\n\r\n{}").encode(),  # the body never comes
    ],
)  # fmt: skip
def test_a_slow_client_is_answered_408_and_let_go(partial):
    _proxy, loop, server, thread, upstream = _limited_proxy(head_timeout_s=0.2, body_timeout_s=0.2)
    port = server.sockets[0].getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(partial)
            data = _read_all(s)  # the proxy answers and closes; the socket timeout bounds it
        assert data.split(b"\r\n")[0].endswith(b"408 Request Timeout")
        assert upstream.seen == []
    finally:
        _stop(loop, server, thread, upstream)


def test_connections_beyond_the_cap_get_503():
    _proxy, loop, server, thread, upstream = _limited_proxy(max_connections=1)
    port = server.sockets[0].getsockname()[1]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
            idle.sendall(b"GET /health HTTP/1.1\r\n")  # holds the only slot
            for _ in range(1000):  # bounded: until the proxy has counted it
                if server.gpuplan_limits.active == 1:
                    break
                threading.Event().wait(0.01)
            assert server.gpuplan_limits.active == 1
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                status = _read_all(s).split(b"\r\n")[0]  # answered before any request
            assert status.endswith(b"503 Service Unavailable")
            assert server.gpuplan_limits.active == 1
    finally:
        _stop(loop, server, thread, upstream)


def test_all_addresses_means_ipv6_too_when_the_host_has_it():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    proxy = _load_proxy()
    upstream = Upstream()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(proxy.serve_all("0.0.0.0", 0, upstream.port, KEY))
    families = sorted({s.family for s in server.sockets})
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        assert families == sorted({socket.AF_INET, socket.AF_INET6})
        port6 = next(s.getsockname()[1] for s in server.sockets if s.family == socket.AF_INET6)
        r = requests.get(f"http://[::1]:{port6}/health", timeout=5)
        assert r.status_code == 200
    finally:
        _stop(loop, server, thread, upstream)


def test_the_connection_cap_is_the_argument_gpuplan_passes(monkeypatch):
    """gpuplan passes the cap as the 4th argument (twice the sequences vLLM runs at once): the
    proxy serves that many, and raises its descriptor limit for them (two per connection)."""
    proxy = _load_proxy()
    seen: dict[str, object] = {}

    async def fake_serve_all(host, port, upstream, key, max_connections=proxy.MAX_CONNECTIONS):
        seen["cap"] = max_connections
        raise SystemExit(0)  # stop main() before it serves

    monkeypatch.setattr(proxy, "serve_all", fake_serve_all)
    monkeypatch.setattr(proxy, "raise_descriptor_limit", lambda n: seen.setdefault("fds", n))
    monkeypatch.setenv("VLLM_API_KEY", KEY)
    monkeypatch.setattr("sys.argv", ["gpuplan_proxy.py", "0.0.0.0", "8000", "8001", "4096"])
    with pytest.raises(SystemExit):
        proxy.main()
    assert seen == {"cap": 4096, "fds": 4096}
    seen.clear()
    monkeypatch.setattr("sys.argv", ["gpuplan_proxy.py", "0.0.0.0", "8000", "8001"])
    with pytest.raises(SystemExit):
        proxy.main()
    assert seen == {"cap": proxy.MAX_CONNECTIONS, "fds": proxy.MAX_CONNECTIONS}


def test_the_descriptor_limit_is_raised_within_the_hard_limit(monkeypatch):
    import resource

    proxy = _load_proxy()
    state = {"soft": 1024, "hard": 524288}
    monkeypatch.setattr(resource, "getrlimit", lambda _r: (state["soft"], state["hard"]))
    monkeypatch.setattr(resource, "setrlimit", lambda _r, v: state.update(soft=v[0]))
    assert proxy.raise_descriptor_limit(4096) == 2 * 4096 + 64 == state["soft"]
    state.update(soft=1024, hard=2000)
    assert proxy.raise_descriptor_limit(4096) == 2000  # never above the hard limit
    state.update(soft=100_000)
    assert proxy.raise_descriptor_limit(512) == 100_000  # never lowered


def test_while_vllm_is_not_listening_yet_the_client_gets_502():
    """During the model download nothing listens on vLLM's port: the client (and a load
    balancer's health check) gets a 502 saying so, not a connection closed without a reply."""
    proxy = _load_proxy()
    upstream = Upstream()
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(proxy.serve("127.0.0.1", 0, closed, KEY))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = server.sockets[0].getsockname()[1]
    try:
        for path, headers in (("/health", {}), ("/v1/models", {"Authorization": f"Bearer {KEY}"})):
            r = requests.get(f"http://127.0.0.1:{port}{path}", headers=headers, timeout=10)
            assert r.status_code == 502 and "not answering yet" in r.json()["error"]
        r = requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=10)
        assert r.status_code == 401  # the key is still checked first
    finally:
        _stop(loop, server, thread, upstream)


def test_the_proxys_own_failure_to_connect_is_not_called_vllm_loading(monkeypatch):
    """Out of descriptors (or any other local error) is a 503 naming it, not 'vLLM is not
    answering yet', which would send the operator to the wrong place."""
    proxy, loop, server, thread, upstream = _limited_proxy()

    async def no_descriptors(*_args, **_kwargs):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(proxy.asyncio, "open_connection", no_descriptors)
    port = server.sockets[0].getsockname()[1]
    try:
        r = requests.get(f"http://127.0.0.1:{port}/health", timeout=10)
        assert r.status_code == 503 and "Too many open files" in r.json()["error"]
    finally:
        _stop(loop, server, thread, upstream)


def test_a_key_file_replaced_by_mv_is_read_again(tmp_path):
    """The generated machines give the proxy its key as a file that vLLM's unit rewrites
    (write beside it, then mv) before every vLLM start: after a rotation the old key is
    refused and the new one passes, without restarting the proxy; no file, no access."""
    proxy = _load_proxy()
    key = tmp_path / "key"
    key.write_text(KEY + "\n")
    upstream = Upstream()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        proxy.serve("127.0.0.1", 0, upstream.port, proxy.KeyFile(str(key)))
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1/models"

    def status(k: str) -> int:
        return requests.get(url, headers={"Authorization": f"Bearer {k}"}, timeout=5).status_code

    try:
        assert status(KEY) == 200 and status("new-key-9876543210") == 401
        (tmp_path / "key.tmp").write_text("new-key-9876543210\n")
        (tmp_path / "key.tmp").rename(key)
        assert status("new-key-9876543210") == 200 and status(KEY) == 401
        key.unlink()
        assert status("new-key-9876543210") == 401
    finally:
        _stop(loop, server, thread, upstream)


def test_the_proxy_refuses_to_start_without_a_key(tmp_path, monkeypatch):
    proxy = _load_proxy()
    monkeypatch.setenv("GPUPLAN_KEY_FILE", str(tmp_path / "absent"))
    monkeypatch.setattr("sys.argv", ["gpuplan_proxy.py", "127.0.0.1", "0", "1"])
    with pytest.raises(SystemExit, match="absent is empty"):
        proxy.main()
