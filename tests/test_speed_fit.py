"""benchmarks/speed_accuracy.py fits the speed model's constants on published measurements: the
points of one source are not independent, so a large source must not set the constants every
other source is predicted with."""

from __future__ import annotations

import math

import pytest

from planner.decide import perf
from tests.conftest import benchmark_module


@pytest.fixture()
def sa():
    """The benchmark script; the constants its fits change are put back afterwards."""
    saved = {n: c["value"] for n, c in perf.calibration()["constants"].items()}
    try:
        with benchmark_module("speed_accuracy") as module:
            yield module
    finally:
        for name, value in saved.items():
            perf.calibration()["constants"][name]["value"] = value


def _points(source: str, n: int, value: float) -> list[dict]:
    return [
        {"id": f"{source}-{i}", "source": f"https://{source}.example/run", "value": value}
        for i in range(n)
    ]


def test_a_source_weighs_the_square_root_of_its_points(sa):
    pts = _points("big", 16, 1.0) + _points("one", 1, 1.0)
    weights = sa.source_weights(pts)
    assert weights["big-0"] == pytest.approx(0.25)
    assert sum(w for i, w in weights.items() if i.startswith("big")) == pytest.approx(4.0)
    assert weights["one-0"] == pytest.approx(1.0)


def test_one_large_source_does_not_outvote_several_small_ones(sa, monkeypatch):
    # Nine points of one source say 20 ms, four single-point sources say 5 ms. Counted point by
    # point the large source wins (9 against 4); with sqrt weights it has 3 votes against 4.
    pts = _points("big", 9, 20.0) + [q for s in "abcd" for q in _points(s, 1, 5.0)]
    monkeypatch.setattr(sa, "predict", lambda p: perf._c("request_overhead_ms"))
    fitted = sa.fit(pts)["request_overhead_ms"]
    assert math.isclose(fitted, 5.0, rel_tol=0.1), fitted
