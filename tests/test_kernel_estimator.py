"""benchmarks/kernel_estimator.py maps each published point to the AIConfigurator query that asks
the same question (metric, load, quantization), or says why there is none; these run without
aiconfigurator installed (it is optional and never in the test extra)."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import benchmark_module


@pytest.fixture(scope="module")
def ke():
    with benchmark_module("kernel_estimator") as module:
        yield module


def _point(ke, pid: str) -> dict:
    return next(p for p in ke.sa.points() if p["id"] == pid)


def test_ttft_alone_is_one_request_at_batch_one(ke):
    # np068: Qwen3-8B on an H100, TTFT at --max-concurrency 1, 233-token prompts.
    q = ke.aic_query(_point(ke, "np068"))
    assert (q.model, q.system, q.backend, q.mode, q.batch, q.read) == (
        "Qwen/Qwen3-8B", "h100_sxm", "vllm", "agg", 1, "ttft"
    )  # fmt: skip
    assert (q.isl, q.osl, q.tp) == (233, 221, 1)


def test_itl_at_a_stated_batch_reads_tpot_at_that_batch(ke):
    q = ke.aic_query(_point(ke, "gt12"))  # Llama-3.1-8B-Instruct, TPOT p50 at concurrency 16
    assert (q.model, q.mode, q.batch, q.read) == ("meta-llama/Meta-Llama-3.1-8B", "agg", 16, "tpot")


def test_benchmark_latency_is_one_static_batch_end_to_end(ke):
    # np012: vLLM benchmark_latency (LLM class), batch 16, end-to-end tokens/s of one stream.
    q = ke.aic_query(_point(ke, "np012"))
    assert (q.mode, q.batch, q.read, q.moe, q.tp) == ("static", 16, "e2e", True, 8)
    assert q.model == "mistralai/Mixtral-8x7B-v0.1"


def test_a_poisson_rate_is_kept_for_littles_law(ke):
    q = ke.aic_query(_point(ke, "np024"))  # ITL at 6 requests/s
    assert q.rate == 6.0 and q.read == "tpot"


def test_throughput_batch_is_capped_like_speed_accuracy(ke):
    # tp015: 1000 prompts at once, gpt-oss-120b on one H100: the KV cache, not the 1000, caps it.
    p = _point(ke, "tp015")
    q = ke.aic_query(p)
    assert q.read == "output" and 1 <= q.batch < p["concurrency"]
    assert q.batch == ke.serving_batch(p)
    assert ke.aic_query(_point(ke, "np079")).read == "total"


def test_fp8_uses_a_bundled_fp8_checkpoint_or_on_the_fly_fp8(ke):
    q = ke.aic_query(_point(ke, "tp024"))  # Qwen3-235B-A22B FP8 checkpoint (block FP8)
    assert q.model == "Qwen/Qwen3-235B-A22B-FP8" and q.gemm_quant is None
    q = ke.aic_query(_point(ke, "np080"))  # Qwen3-8B with vLLM's dynamic FP8
    assert (q.model, q.gemm_quant) == ("Qwen/Qwen3-8B", "fp8")
    q = ke.aic_query(_point(ke, "np081"))  # bf16 weights, FP8 KV cache
    assert (q.gemm_quant, q.kv_quant) == (None, "fp8")


def test_unbundled_dense_model_goes_through_its_registry_config(ke):
    q = ke.aic_query(_point(ke, "gs001"))  # Qwen3-14B: not bundled with AIConfigurator
    assert q.model == "registry:Qwen/Qwen3-14B"
    assert ke.registry_config("Qwen/Qwen3-14B")["architectures"] == ["Qwen3ForCausalLM"]


@pytest.mark.parametrize(
    ("pid", "reason"),
    [
        ("tp011", "mi300x"),  # AMD: no AIConfigurator system
        ("np047", "80 GB"),  # A100 40GB: the a100_sxm tables are the 80 GB card
        ("tp038", "spec sheet"),  # H100 PCIe: no measured kernels
        ("tp030", "awq"),  # no int4 weight-only GEMM tables
        ("gs054", "GLM-4.5-Air"),  # Glm4Moe: an architecture AIConfigurator does not model
    ],
)
def test_uncovered_points_say_why(ke, pid, reason):
    why = ke.aic_query(_point(ke, pid))
    assert isinstance(why, str) and reason in why


def test_other_engines_use_their_own_backend(ke):
    assert ke.backend_of("SGLang 0.5.3") == "sglang"
    assert ke.backend_of("TensorRT-LLM ~v1.0") == "trtllm"
    assert ke.backend_of("vLLM 0.11.0") == "vllm"
    assert ke.backend_of("llama.cpp b4000") is None


def test_all_at_once_runs_are_told_apart_from_steady_loads(ke):
    assert ke.all_at_once(_point(ke, "gs001"))  # 100 prompts, all sent at t=0
    assert not ke.all_at_once({"num_prompts": 500, "concurrency": 64})  # a stated concurrency
    assert not ke.all_at_once({"concurrency": 256})  # no finite run stated


def test_without_aiconfigurator_it_says_so_and_exits_zero(ke, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "aiconfigurator", None)  # import fails, installed or not
    monkeypatch.setitem(sys.modules, "aiconfigurator.cli.api", None)
    assert ke.main([]) == 0
    assert capsys.readouterr().out.strip() == ke.MISSING
    assert ke.MISSING == "aiconfigurator is not installed: pip install aiconfigurator (optional)"


def test_errors_are_summarised_by_the_batch_asked_about(ke):
    rows = [{"batch": 1, "e": -10.0}, {"batch": 64, "e": 20.0}, {"batch": 65, "e": -30.0},
            {"batch": 256, "e": 50.0}, {"batch": 257, "e": 120.0}]  # fmt: skip
    assert ke._by_batch(rows, "e") == (
        "batch 1 10.0% (n=1); batch 2-64 20.0% (n=1); batch 65-256 40.0% (n=2); "
        "batch >256 120.0% (n=1)"
    )
