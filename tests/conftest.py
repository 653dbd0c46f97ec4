from __future__ import annotations

import json
from pathlib import Path
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
    from tests.fakehub import FakeHub

    with FakeHub() as fake:
        monkeypatch.setenv("GPUPLAN_HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        yield fake
