"""benchmarks/speed_accuracy.py fits the speed model's constants on published measurements: the
points of one source are not independent, so a large source must not set the constants every
other source is predicted with."""

from __future__ import annotations

import math
import re

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
    monkeypatch.setattr(sa, "predict", lambda p: perf.constant("request_overhead_ms"))
    fitted = sa.fit(pts)["request_overhead_ms"]
    assert math.isclose(fitted, 5.0, rel_tol=0.1), fitted


@pytest.mark.parametrize(
    ("engine", "host"),
    [
        ("vLLM v0.5.4 (docker vllm/vllm-openai:v0.5.4, V0 engine)", "pre-0.6"),
        ("vLLM main of 2024-06-04 (~0.4.3/0.5.0)", "pre-0.6"),
        ("vLLM 0.7.4.dev181+gf35f8e22 (nightly)", "v0"),
        ("vLLM 0.6.6 (V0), benchmark_throughput.py", "v0"),
        ("vLLM (V0 engine, release not stated)", "v0"),
        ("vLLM (pip, 2024; version not recorded)", "v0"),  # before V1 became the default
        ("vLLM (version not stated; page of 2025)", "v1"),
        ("vLLM 0.11.0", "v1"),
        ("SGLang 0.5.3", "v1"),  # another engine's version is not vLLM's
    ],
)
def test_a_measurement_is_modelled_with_the_host_design_of_its_vllm_release(sa, engine, host):
    assert sa.host_engine(engine) == host


def test_a_measurement_stating_multi_step_scheduling_is_modelled_with_it(sa):
    # the flag in the engine string, or the point's field when the command is in its note
    points = {p["id"]: p for p in sa.points()}
    assert [sa.scheduler_steps(points[i]) for i in ("mb03", "mb04", "na001", "na115")] == [
        1,
        10,
        10,
        12,
    ]
    assert sa.scheduler_steps({"engine": "vLLM 0.6.6 (V0)"}) == 1
    # ... and the model receives it: the ROCm README's throughput rows ran 10 steps a schedule
    hw = sa._setup("na001")[1]
    assert hw.scheduler_steps == 10


def test_replicas_behind_a_router_each_run_their_share_of_the_benchmark(sa):
    # 900 prompts at once over four replicas: each serves 225, so the run reports four times
    # what one replica does with its share (not four times a replica draining all 900: with
    # dataset lengths the drain does not scale with the prompts).
    four = {**next(p for p in sa.points() if p["id"] == "nd01"), "lengths": "sharegpt"}
    assert (four["replicas"], four["num_prompts"], four.get("rate")) == (4, 900, None)
    one = {**four, "replicas": 1, "num_prompts": 225, "concurrency": 225}
    assert sa.predict(four) == pytest.approx(4 * sa.predict(one), rel=1e-12)
    capped = {**four, "concurrency": 40}  # a client cap of 40 in flight: 10 at each
    assert sa.predict(capped) == pytest.approx(
        4 * sa.predict({**one, "concurrency": 10}), rel=1e-12
    )
    paced = {**four, "rate": 30.0}  # arriving at 30/s: 7.5/s at each
    assert sa.predict(paced) == pytest.approx(4 * sa.predict({**one, "rate": 7.5}), rel=1e-12)


def test_a_measurement_of_an_older_engine_is_predicted_with_its_host_cost(sa):
    # lb07: vLLM 0.5.4, 640 ShareGPT prompts at once on one H100 (256 in flight): the older
    # engine's host cost per sequence and step must reach the prediction; a current engine's
    # measurement (gs003, vLLM 0.11) does not depend on it.
    old, new = (next(p for p in sa.points() if p["id"] == i) for i in ("lb07", "gs003"))
    before = sa.predict(old), sa.predict(new)
    perf.calibration()["constants"]["legacy_per_sequence_overhead_ms"]["value"] *= 2
    sa._setup.cache_clear()
    assert sa.predict(old) < 0.9 * before[0]
    assert sa.predict(new) == pytest.approx(before[1], rel=1e-12)


def test_a_poisson_rate_fills_the_batch_only_up_to_the_runs_requests(sa):
    # TPOT at a rate far above what the machine serves (Llama-70B on 2x H100 PCIe): Little's law
    # would put thousands in flight; a run of 12 requests has at most 12, and a longer run at
    # most what the engine admits (its KV cache), however many requests it sends.
    base = {**next(q for q in sa.points() if q["id"] == "tp038"), "rate": 1000.0}
    _cand, hw, load, _free = sa._setup("tp038")
    twelve = perf.loaded_token_latency_s(load, hw, 12, base["prompt"], base["output"]) * 1000
    assert sa.predict({**base, "num_prompts": 12}) == pytest.approx(twelve, rel=1e-12)
    long_runs = [sa.predict({**base, "num_prompts": n}) for n in (500, 100_000)]
    assert long_runs[0] == long_runs[1] > twelve


def _result_file(p: dict) -> str:
    """A GitHub source's path inside its repository (the commit left out)."""
    return p["source"].split("/blob/")[-1].split("/", 1)[-1]


def test_held_out_rows_are_new_measurements_each_modelled_with_a_pinned_source(sa):
    calibration = {(_result_file(p), p["metric"]) for p in sa.points()}
    held = sa.holdout_points()
    assert len(held) == len({p["id"] for p in held}) >= 200
    for p in held:
        assert p["source"].startswith("https://github.com/") and "/blob/" in p["source"], p["id"]
        assert len(p["source"].split("/blob/")[1].split("/")[0]) == 40, p["id"]  # a commit
        assert (_result_file(p), p["metric"]) not in calibration
        assert sa.fitted(p) and p["value"] > 0
        # The row's lengths and value are the copied totals of its note, per request.
        tokens = re.search(r"total_input_tokens (\d+), total_output_tokens (\d+)", p["note"])
        assert tokens, p["id"]
        assert p["prompt"] == round(int(tokens[1]) / p["num_prompts"]), p["id"]
        assert p["output"] == round(int(tokens[2]) / p["num_prompts"]), p["id"]
        copied = re.search(r"(mean_tpot_ms|output_throughput) ([\d.]+) \(value\)", p["note"])
        assert copied and p["value"] == pytest.approx(float(copied[2]), abs=0.006), p["id"]
        assert math.isfinite(sa.predict(p)), p["id"]


def test_the_held_out_check_fits_without_any_point_of_the_held_out_source(sa, monkeypatch):
    seen: list[list[dict]] = []
    monkeypatch.setattr(sa, "fit", lambda pts: seen.append(pts) or {})
    sources = {sa.source_of(p) for p in sa.holdout_points()}
    sa.holdout_report()
    (train,) = seen
    assert train and not [p for p in train if sa.source_of(p) in sources]
    assert [p for p in sa.points() if sa.source_of(p) in sources]  # there were some to leave out


def test_a_site_republishing_another_sources_benchmark_is_left_out_with_it(sa):
    # AMD's ROCm-hub page re-runs the ROCm/vllm README's throughput table: one source, so that
    # leaving the README out does not leave its own benchmark in the fit.
    amd = {"source": "https://www.amd.com/en/developer/resources/rocm-hub/dev-ai/x.html"}
    readme = {"source": "https://github.com/ROCm/vllm/blob/abc/docs/dev-docker/README.md"}
    assert sa.source_of(amd) == sa.source_of(readme) == "github.com/rocm/vllm"
    assert sa.source_of({"source": "https://docs.vultr.com/a/b"}) == "docs.vultr.com"
    assert [p for p in sa.points() if "www.amd.com" in p["source"]]  # such points exist


def test_hybrid_models_are_predicted_but_not_fitted(sa, monkeypatch):
    # the Nemotron-3-Nano point (Mamba-2 layers) must not steer the constants all models share
    pts = [p for p in sa.points() if sa.fitted(p)]
    hybrid = [p for p in pts if sa.recurrent(p)]
    # the hybrid points are exactly those of the Nemotron-3-Nano (Mamba-2) checkpoints
    nano = {p["id"] for p in pts if "Nemotron-3-Nano" in p["model"]}
    assert {p["id"] for p in hybrid} == nano and {"hx004", "dc003"} <= nano
    seen: list[set[str]] = []
    monkeypatch.setattr(sa, "FITTED", ())  # no search: the loss is taken once
    monkeypatch.setattr(sa, "_loss", lambda fitted, weights: seen.append(set(weights)) or 0.0)
    sa.fit(pts[:5] + hybrid)
    assert seen == [{p["id"] for p in pts[:5]}]
    assert isinstance(sa.error_pct(hybrid[0]), float)  # still predicted


def test_an_in_process_v0_runs_first_token_is_seen_when_the_next_step_ends(sa):
    # AccelMark drives vLLM's AsyncLLMEngine in its own process. Under V0 (am049: 0.7.3 on an
    # L4) the client sees a prompt's first token only when the first decode step has ended, so
    # the TTFT it reports is the prefill plus one decode step at batch 1. The same runner on V1
    # (am035: 0.19.1rc1) hands tokens over as they come, and eager mode turns V0's async output
    # processing (hence the wait) off.
    points = {p["id"]: p for p in sa.points()}
    v0, v1 = points["am049"], points["am035"]
    assert (sa.first_token_a_step_late(v0), sa.first_token_a_step_late(v1)) == (True, False)
    eager = {**v0, "engine": v0["engine"].replace("enforce_eager=False", "enforce_eager=True")}
    assert eager["engine"] != v0["engine"] and not sa.first_token_a_step_late(eager)
    sync = {
        **v0,
        "engine": v0["engine"].replace("(model,", "(model, disable_async_output_proc=True,"),
    }
    assert sync["engine"] != v0["engine"] and not sa.first_token_a_step_late(sync)
    _cand, hw, load, _free = sa._setup("am049")
    step = perf.token_latency_s(load, hw, 1, v0["prompt"] + 1)
    prefill = perf.prefill_s(load, hw, v0["prompt"])
    assert sa.predict(v0) == pytest.approx((prefill + step) * 1000, rel=1e-12)
    _cand, hw, load, _free = sa._setup("am035")
    assert sa.predict(v1) == pytest.approx(perf.prefill_s(load, hw, v1["prompt"]) * 1000)
