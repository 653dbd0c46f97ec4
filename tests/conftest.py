from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner

from planner.cli import main

DATA = Path(__file__).parent / "data"


def sample_models() -> list[dict[str, Any]]:
    """shared/reference/models-sample.json (copied into tests/data): configs with published
    counts and sizes, each with its source."""
    return json.loads((DATA / "models-sample.json").read_text())["models"]


def sample_config(entry: dict[str, Any]) -> dict[str, Any]:
    """The sample's config as a config.json dict (null = key absent, _extra merged in)."""
    raw = entry["config"]
    cfg = {k: v for k, v in raw.items() if v is not None and k != "_extra"}
    cfg.update(raw["_extra"])
    return cfg


@contextlib.contextmanager
def benchmark_module(name: str) -> Iterator[ModuleType]:
    """benchmarks/<name>.py loaded as a module (the scripts are not a package), registered in
    sys.modules while in use (their dataclasses resolve annotations through it)."""
    path = Path(__file__).parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


CLOUD_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "GOOGLE_OAUTH_ACCESS_TOKEN",
    "RUNPOD_API_KEY",
    "VAST_API_KEY",
    "HETZNER_ROBOT_USER",
    "HETZNER_ROBOT_PASSWORD",
    "HF_TOKEN",
)


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No test sees the developer's credentials or caches, and nothing probes a cloud: the GCE
    metadata check is off and points at a closed loopback port; AWS config files are empty."""
    for name in CLOUD_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in list(__import__("os").environ):
        if name.startswith("GPUPLAN_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GPUPLAN_CACHE_DIR", str(tmp_path / "cache"))
    # The Hub client's cache is per test too (several suites may run at once on one machine),
    # and offline: only the `hub` fixture (a local fake) lets a test reach "the Hub".
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # huggingface_hub reads HF_HOME once, when first imported, and then keeps the first test's
    # cache for the whole session: its cache folder is set per test as well
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GPUPLAN_RETRY_BACKOFF_S", "0.01")
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    # gpuhunt's public catalogs and its live Vast query: a closed loopback port unless a test
    # serves a fake (tests/fakegpuhunt.py).
    monkeypatch.setenv("GPUHUNT_CATALOG_URL", "http://127.0.0.1:9/v3")
    monkeypatch.setenv("GPUPLAN_VAST_URL", "http://127.0.0.1:9")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return run


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from tests.fakes.hub import FakeHub

    with FakeHub() as fake:
        monkeypatch.setenv("GPUPLAN_HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield fake
