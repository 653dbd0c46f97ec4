"""Local fake servers shaped like the providers' real APIs, and factories that point each
provider at one. Every registered provider must have a route here (or, for AWS, a stubbed
session) and fixtures under tests/fixtures/providers/<name>/ (tests/test_providers.py fails
otherwise)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.fakes.server import LoopbackServer, QuietHandler

FIXTURES = Path(__file__).parents[1] / "fixtures" / "providers"

# (method, path, body, headers) -> (status, JSON-able or bytes[, content type])
Route = Callable[[str, str, bytes, dict[str, str]], tuple[Any, ...]]


def fixture(provider: str, name: str) -> Any:
    return json.loads((FIXTURES / provider / name).read_text())


class FakeApi(LoopbackServer):
    """A loopback HTTP server answering with a route function.

    A route answering status None closes the connection without an answer (a lost answer).
    Fault modes: ``fail_first`` answers that many requests with ``fail_status`` first;
    ``mode`` "malformed" sends invalid JSON, "empty" an empty list/object, "hang" sleeps
    ``hang_s`` before answering; ``latency_s`` delays every answer.
    """

    def __init__(self, route: Route, *, latency_s: float = 0.0) -> None:
        self.route = route
        self.latency_s = latency_s
        self.fail_first = 0
        self.fail_status = 503
        self.mode = "ok"
        self.hang_s = 5.0
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        super().__init__(self._handler())

    def _handler(self) -> type[QuietHandler]:
        api = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                with api._lock:
                    api.requests.append((self.command, self.path, headers))
                    failing = api.fail_first > 0
                    if failing:
                        api.fail_first -= 1
                if api.latency_s:
                    time.sleep(api.latency_s)
                if api.mode == "hang":
                    time.sleep(api.hang_s)
                if failing:
                    return self._send(api.fail_status, b'{"error": "injected"}')
                answer = api.route(self.command, self.path, body, headers)
                status, payload = answer[0], answer[1]
                if status is None:  # the request was taken, the answer never comes
                    self.close_connection = True
                    return None
                ctype = answer[2] if len(answer) > 2 else "application/json"
                if api.mode == "malformed" and status == 200:
                    return self._send(200, b'{"this is": not json')
                if api.mode == "empty" and status == 200:
                    payload = _emptied(payload)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self._send(status, data, ctype)

            def _send(self, status: int, data: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler


def _emptied(payload: Any) -> Any:
    """The same answer with every list emptied: a well-formed reply that lists nothing."""
    if isinstance(payload, list):
        return []
    if isinstance(payload, dict):
        return {k: _emptied(v) for k, v in payload.items()}
    return payload


# ------------------------------------------------------------------ routes per provider
def runpod_route(method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    if method != "POST" or not path.startswith("/graphql"):
        return 404, {"error": "not found"}
    if headers.get("authorization") != "Bearer rp_test":
        return 401, {"errors": [{"message": "unauthorized"}]}
    query = json.loads(body)
    text, variables = query.get("query", ""), query.get("variables")
    if "gpuTypes" not in text or not isinstance(variables, dict):
        return 400, {"errors": [{"message": "bad query"}]}
    # Each aliased lowestPrice(input: $var) is answered from the fixture's inventory, as the
    # API answers it for that input: the stock of that many GPUs in that tier, on hosts whose
    # CUDA is at least minCudaVersion (null: none).
    asked = re.findall(r"(\w+): lowestPrice\(input: \$(\w+)\)", text)
    types = []
    for g in fixture("runpod", "gpu_types.json")["data"]["gpuTypes"]:
        answer = {k: v for k, v in g.items() if not k.startswith("_")}
        for alias, var in asked:
            inp = variables.get(var)
            if not isinstance(inp, dict) or not isinstance(inp.get("gpuCount"), int):
                return 400, {"errors": [{"message": f"${var}: GpuLowestPriceInput expected"}]}
            tier = "secure" if inp.get("secureCloud") else "community"
            status = g.get("_stock", {}).get(tier, {}).get(str(inp["gpuCount"]))
            host = g.get("_hostCuda", {}).get(tier, "13.0")
            needed = inp.get("minCudaVersion")
            if needed and tuple(map(int, needed.split("."))) > tuple(map(int, host.split("."))):
                status = None
            answer[alias] = {"stockStatus": status}
        types.append(answer)
    return 200, {"data": {"gpuTypes": types}}


def vast_route(method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    if method != "POST" or path.rstrip("/") != "/api/v0/bundles":
        return 404, {"error": "not found"}
    if headers.get("authorization") != "Bearer vast_test":
        return 401, {"error": "unauthorized"}
    return 200, {"offers": vast_search(fixture("vast", "bundles.json")["offers"], json.loads(body))}


VAST_OPS = {
    "eq": lambda a, b: a == b, "neq": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
    "in": lambda a, b: a in b, "notin": lambda a, b: a not in b,
}  # fmt: skip


def vast_search(offers: list[dict[str, Any]], q: dict[str, Any]) -> list[dict[str, Any]]:
    """Vast's offer search as the API answers it: every {field: {op: value}} applies (the query
    field ``verified`` is the offer's ``verification == "verified"``; ``external`` is a scope),
    then ``order`` sorts and ``limit`` cuts (vastai api/offers.py search_offers)."""

    def value(o: dict[str, Any], field: str) -> Any:
        return o.get("verification") == "verified" if field == "verified" else o.get(field)

    kept = [
        o
        for o in offers
        if all(
            value(o, f) is not None and VAST_OPS[op](value(o, f), v)
            for f, cond in q.items()
            if isinstance(cond, dict) and f != "external"
            for op, v in cond.items()
        )
    ]
    for field, direction in reversed(q.get("order") or []):
        kept.sort(key=lambda o: o.get(field) or 0, reverse=direction == "desc")
    return kept[: int(q.get("limit") or 64)]


def hetzner_route(method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    import base64

    expected = "Basic " + base64.b64encode(b"robot_user:robot_pass").decode()
    if headers.get("authorization") != expected:
        return 401, {"error": {"status": 401, "code": "UNAUTHORIZED", "message": "Unauthorized"}}
    if method == "GET" and path.split("?")[0] == "/order/server/product":
        return 200, fixture("hetzner", "products.json")
    return 404, {"error": {"status": 404, "code": "NOT_FOUND", "message": "Not found"}}


def gcp_route(method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    api = fixture("gcp", "api.json")
    p = path.split("?")[0]
    if headers.get("authorization") != "Bearer ya29.test":
        return 401, {"error": {"code": 401, "message": "Request had invalid credentials."}}
    if p.endswith("/aggregated/machineTypes"):
        return 200, api["machineTypes"]
    if p.endswith("/aggregated/acceleratorTypes"):
        return 200, api["acceleratorTypes"]
    if p == "/v1/services/6F81-5844-456A/skus":
        return 200, {"skus": api["skus"], "nextPageToken": ""}
    return 404, {"error": {"code": 404, "message": "not found"}}


def aws_pricing_route(
    method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[Any, ...]:
    """The Price List API's JSON 1.1 protocol: POST / with X-Amz-Target ...GetProducts."""
    if headers.get("x-amz-target") != "AWSPriceListService.GetProducts":
        return 400, {"__type": "UnknownOperationException"}, "application/x-amz-json-1.1"
    request = json.loads(body)
    region = next(f["Value"] for f in request["Filters"] if f["Field"] == "regionCode")
    # Regions without fixtures answer with the us-east-1 documents under their own region code.
    prices = fixture("aws", "price_list.json")
    docs = prices.get(region) or json.loads(
        json.dumps(prices["us-east-1"]).replace('"us-east-1"', json.dumps(region))
    )
    return (
        200,
        {"FormatVersion": "aws_v1", "PriceList": [json.dumps(d) for d in docs]},
        "application/x-amz-json-1.1",
    )


def proxy_route(upstream: str) -> Route:
    """Forward every request to ``upstream`` (e.g. a moto server), so a FakeApi in front of it
    adds latency or faults to a real implementation."""
    import requests

    def route(method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[Any, ...]:
        keep = {k: v for k, v in headers.items() if k not in {"host", "content-length"}}
        resp = requests.request(method, upstream + path, data=body, headers=keep, timeout=30)
        return resp.status_code, resp.content, resp.headers.get("Content-Type", "text/xml")

    return route


ROUTES: dict[str, Route] = {
    "runpod": runpod_route,
    "vast": vast_route,
    "hetzner": hetzner_route,
    "gcp": gcp_route,
}

# Credentials each HTTP provider reads, as the fakes above accept them.
ENV = {
    "gcp": {"GOOGLE_CLOUD_PROJECT": "gpuplan-test", "GOOGLE_OAUTH_ACCESS_TOKEN": "ya29.test"},
    "runpod": {"RUNPOD_API_KEY": "rp_test"},
    "vast": {"VAST_API_KEY": "vast_test"},
    "hetzner": {"HETZNER_ROBOT_USER": "robot_user", "HETZNER_ROBOT_PASSWORD": "robot_pass"},
}


@contextlib.contextmanager
def provider_env(
    name: str, monkeypatch: Any, route: Route | None = None, **api_kw: Any
) -> Iterator[FakeApi]:
    """Start the provider's fake (or ``route``) and set the environment so that from_env()
    reaches it."""
    with FakeApi(route or ROUTES[name], **api_kw) as api:
        monkeypatch.setenv(f"GPUPLAN_{name.upper()}_URL", api.url)
        for k, v in ENV.get(name, {}).items():
            monkeypatch.setenv(k, v)
        yield api


@contextlib.contextmanager
def aws_provider(regions: tuple[str, ...] = ("us-east-1",), pricing_error: bool = False):
    """AwsProvider on moto's EC2 with botocore's Stubber answering the Price List API (moto does
    not implement it)."""
    import os

    import boto3
    from botocore.stub import Stubber
    from moto import mock_aws

    from planner.offers.providers.aws import AwsProvider, pricing_filters

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    try:
        with mock_aws():
            session = boto3.Session(region_name="us-east-1")
            pricing = session.client("pricing", region_name="us-east-1")
            stub = Stubber(pricing)
            docs = fixture("aws", "price_list.json")
            for region in regions:
                expected = {
                    "ServiceCode": "AmazonEC2",
                    "Filters": pricing_filters(region),
                    "FormatVersion": "aws_v1",
                    "MaxResults": 100,
                }
                if pricing_error:
                    stub.add_client_error(
                        "get_products",
                        "ThrottlingException",
                        "Rate exceeded",
                        400,
                        expected_params=expected,
                    )
                    continue
                items = [json.dumps(d) for d in docs.get(region, [])]
                stub.add_response(
                    "get_products", {"FormatVersion": "aws_v1", "PriceList": items}, expected
                )
            with stub:
                yield AwsProvider(session, pricing_client=pricing), stub
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
