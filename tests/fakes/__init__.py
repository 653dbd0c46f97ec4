"""Fakes the tests (and benchmarks/) run against, all on 127.0.0.1 and all built on one
loopback server base (server.py): the providers' APIs (providers.py), the Hugging Face Hub
(hub.py), a starting vLLM (vllm.py), and a Pulumi engine (engine.py)."""

from tests.fakes.providers import (
    ENV,
    FIXTURES,
    ROUTES,
    FakeApi,
    aws_pricing_route,
    aws_provider,
    fixture,
    provider_env,
    proxy_route,
)

__all__ = [
    "ENV",
    "FIXTURES",
    "ROUTES",
    "FakeApi",
    "aws_pricing_route",
    "aws_provider",
    "fixture",
    "provider_env",
    "proxy_route",
]
