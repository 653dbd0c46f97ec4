"""KV-cache bytes as vLLM sizes them, tensor-parallel splits and the overhead calibration."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from planner.errors import UsageError
from planner.model.footprint import (
    activation_bytes,
    estimate_footprint,
    overhead_bytes,
    resolve_format,
    weight_bytes,
)
from planner.model.kvcache import kv_bytes_per_request, kv_bytes_per_token
from planner.model.sources import find_registry_entry, load_model_spec, spec_from_registry


def spec(name: str):
    return spec_from_registry(find_registry_entry(name))


@pytest.mark.parametrize(
    ("model", "tp", "kv_dtype", "expected"),
    [
        # Derived in shared/reference/vllm-memory-sample.json from vLLM logs: 131072 and 147456.
        ("meta-llama/Llama-3.1-8B-Instruct", 1, "auto", 131072),
        ("Qwen/Qwen3-8B", 1, "auto", 147456),
        # 2 x max(1, 8 // 16) x 128 x 2 bytes x 80 layers: KV heads replicate past TP=8.
        ("meta-llama/Llama-3.1-70B-Instruct", 16, "auto", 80 * 2 * 1 * 128 * 2),
        ("meta-llama/Llama-3.1-70B-Instruct", 4, "fp8", 80 * 2 * 2 * 128 * 1),
        # MLA: one latent of 512 + 64 per layer, 61 layers, not split by TP.
        ("deepseek-ai/DeepSeek-V3", 1, "auto", 61 * 576 * 2),
        ("deepseek-ai/DeepSeek-V3", 8, "auto", 61 * 576 * 2),
        # gpt-oss: 8 KV heads of 64, 24 layers.
        ("openai/gpt-oss-20b", 1, "auto", 24 * 2 * 8 * 64 * 2),
    ],
)
def test_kv_bytes_per_token(model, tp, kv_dtype, expected):
    per_layer, layers = kv_bytes_per_token(spec(model), tp, kv_dtype)
    assert per_layer * layers == expected


def test_sliding_window_layers_are_capped():
    # Gemma 2 9B: 21 global layers hold all 8192 tokens, 21 sliding layers hold the 4096 window
    # plus the block it straddles (4112); 8192 B per token per layer.
    assert kv_bytes_per_request(spec("google/gemma-2-9b-it"), 1, "auto", 8192) == (
        21 * 8192 * 8192 + 21 * 4112 * 8192
    )
    # Below the window, nothing is capped; requests round up to 16-token blocks.
    assert kv_bytes_per_request(spec("google/gemma-2-9b-it"), 1, "auto", 1000) == 42 * 1008 * 8192


def test_gemma3_five_local_one_global():
    s = spec("google/gemma-3-27b-it")
    assert s.sliding_layer_count == 62 - 10 and s.sliding_window == 1024


def test_gemma3_sliding_layers_are_padded_to_whole_layer_groups():
    """vLLM's hybrid KV cache manager groups Gemma 3 27B's 10 full and 52 sliding layers in
    groups of 10 and pads the sliding ones to 6 whole groups: 60 layers take a window each
    (kv_cache_utils._get_kv_cache_groups_uniform_page_size). The project's own start-up log
    m060 (planner/decide/data/vllm_memory_logs.json) shows it: 109.86 GiB of KV cache in
    blocks of 10 layers x 16 tokens x 8,192 bytes, over 7 groups, is the logged 205,696
    tokens (over 6.2 unpadded groups it would be about 230,000)."""
    from planner.model.kvcache import attention_layers_held

    s = spec("google/gemma-3-27b-it")
    assert attention_layers_held(s) == {"full": 10, "sliding": 60, "chunked": 0}
    per_layer = 2 * 16 * 128 * 2
    assert kv_bytes_per_request(s, 1, "auto", 4096) == (10 * 4096 + 60 * 1040) * per_layer
    held = attention_layers_held(s)
    groups = (held["full"] + held["sliding"]) // 10
    blocks = int(109.86 * 2**30) // (10 * 16 * per_layer)
    assert blocks // groups * 16 == 205_696  # "GPU KV cache size: 205,696 tokens" (m060)
    # equal counts need no padding (gpt-oss: 18 and 18; Gemma 2 9B: 21 and 21)
    assert attention_layers_held(spec("openai/gpt-oss-120b"))["sliding"] == 18


def test_gpt_oss_alternating_sliding_window_of_128():
    s = spec("openai/gpt-oss-120b")
    per_layer = 2 * 8 * 64 * 2
    assert kv_bytes_per_request(s, 1, "auto", 4096) == 18 * 4096 * per_layer + 18 * 144 * per_layer


def test_tp_validity_follows_vllm_rules():
    fp = estimate_footprint(spec("microsoft/Phi-3-medium-4k-instruct"))
    valid = {t.tp: t.valid for t in fp.per_tp}
    assert valid == {1: True, 2: True, 4: False, 8: False}  # 10 KV heads
    assert "KV heads" in (fp.per_tp[2].reason or "")
    # Qwen2.5-72B's 29568 intermediate does not split into 128-groups at TP=8; Qwen's AWQ
    # release pads it to 29696 for that reason.
    padded = estimate_footprint(spec("Qwen/Qwen2.5-72B-Instruct-AWQ"))
    assert all(t.valid for t in padded.per_tp)
    unpadded = estimate_footprint(spec("Qwen/Qwen2.5-72B-Instruct"), "awq")
    assert not unpadded.per_tp[3].valid and "group" in (unpadded.per_tp[3].reason or "")


def test_block_fp8_experts_that_do_not_split_are_held_whole_by_expert_parallelism():
    """vLLM refuses MiniMax-M2's 1536-wide FP8 experts split over TP8 (192 per GPU, blocks of
    128): at TP8 they are held whole, 256 / 8 experts a GPU (--enable-expert-parallel); with
    fewer experts than GPUs there is no such way. DeepSeek-R1's 2048 (256) and its dense 18432
    (2304) split at TP8."""
    from dataclasses import replace

    from planner.model.quant import get_format
    from planner.model.tensor_parallel import expert_parallel, tp_problem

    fmt = get_format("fp8-block")
    minimax = spec("MiniMaxAI/MiniMax-M2")
    assert all(t.valid for t in estimate_footprint(minimax).per_tp)
    assert [tp for tp in (1, 2, 4, 8) if expert_parallel(minimax, fmt, None, tp)] == [8]
    few = replace(minimax, num_experts=4, experts_per_token=2)  # 4 experts cannot fill 8 GPUs
    assert "1536 / TP=8 = 192" in (tp_problem(few, fmt, None, 8) or "")
    # one GPU has nothing to spread experts over: a width of partial blocks is refused
    odd = replace(minimax, moe_intermediate_size=1600)
    assert "1600 / TP=1" in (tp_problem(odd, fmt, None, 1) or "")
    deepseek = estimate_footprint(spec("deepseek-ai/DeepSeek-R1"))
    assert all(t.valid for t in deepseek.per_tp)
    assert not expert_parallel(spec("deepseek-ai/DeepSeek-R1"), fmt, None, 8)
    # 16-bit weights have no blocks to keep whole
    assert all(t.valid for t in estimate_footprint(spec("Qwen/Qwen3-235B-A22B")).per_tp)


def test_block_fp8_checks_shared_experts_and_dense_layers_the_checkpoint_quantizes():
    """Every quantized MLP width must split into whole blocks (shared experts and dense first
    layers too); a module the checkpoint keeps in 16 bits has no blocks to keep whole."""
    from dataclasses import replace

    from planner.model.quant import get_format
    from planner.model.tensor_parallel import tp_problem
    from planner.model.values import QuantConfig

    fmt = get_format("fp8-block")
    deepseek = spec("deepseek-ai/DeepSeek-R1")
    assert tp_problem(deepseek, fmt, None, 8) is None
    shared = replace(deepseek, shared_expert_intermediate_size=2112)  # experts stay 2048
    assert "2112 / TP=8 = 264" in (tp_problem(shared, fmt, None, 8) or "")
    dense = replace(deepseek, intermediate_size=18432 + 64)  # the three dense first layers
    assert "18496 / TP=8" in (tp_problem(dense, fmt, None, 8) or "")
    dense_mlps = tuple(f"model.layers.{i}.mlp" for i in range(3))
    kept = QuantConfig("fp8-block", block=(128, 128), keep_unquantized=dense_mlps)
    assert tp_problem(dense, fmt, kept, 8) is None


def test_tp_splits_weights_and_replicates_norms():
    fp = estimate_footprint(spec("meta-llama/Llama-3.1-70B-Instruct"))
    tp1, tp8 = fp.per_tp[0].weight_bytes_per_gpu, fp.per_tp[3].weight_bytes_per_gpu
    norms = (80 * 2 * 8192 + 8192) * 2
    assert tp8 == pytest.approx((tp1 - norms) / 8 + norms, abs=2)


def test_concurrency_scales_kv_and_fits_shrink():
    s = spec("meta-llama/Llama-3.1-8B-Instruct")
    one = estimate_footprint(s, context=4096, concurrency=1).per_tp[0]
    many = estimate_footprint(s, context=4096, concurrency=10).per_tp[0]
    assert many.kv_bytes_per_gpu == 10 * one.kv_bytes_per_gpu
    util = 0.92
    assert one.max_concurrency(80 * 10**9, util) > one.max_concurrency(24 * 10**9, util) > 0


@pytest.mark.parametrize(
    "bad", [{"context": 0}, {"concurrency": -1}, {"tp_degrees": (0,)}, {"kv_cache_dtype": "int2"}]
)
def test_bad_numbers_are_usage_errors(bad):
    with pytest.raises(UsageError):
        estimate_footprint(spec("meta-llama/Llama-3.1-8B-Instruct"), **bad)


CALIBRATION = json.loads(
    (Path(__file__).parents[1] / "planner/model/data/vllm_memory_calibration.json").read_text()
)["points"]


@pytest.mark.parametrize("point", CALIBRATION, ids=lambda p: p["model"])
def test_overhead_is_conservative_on_calibration_logs(point):
    """Predicted KV tokens never exceed what vLLM logged, and stay within 20% of it (the
    overhead is fitted as the largest residual over 25 logs, planner/decide/data/
    vllm_memory_logs.json, so it is conservative on these two)."""
    s = load_model_spec(point["model"])
    fmt, qc = resolve_format(s, None)
    budget = int(point["gpu_total_memory_bytes"] * point["gpu_memory_utilization"])
    free = budget - weight_bytes(s, fmt, qc).served - overhead_bytes(s, 1)
    per_layer, layers = kv_bytes_per_token(s, 1, "auto")
    predicted_tokens = free // (per_layer * layers)
    assert predicted_tokens <= point["logged_kv_tokens"]
    assert predicted_tokens >= 0.8 * point["logged_kv_tokens"]
    assert activation_bytes(s, 1) > 0


def test_sliding_window_layers_reserve_one_prefill_chunk():
    """vLLM's start-up check charges each sliding-window layer min(window - 1 +
    max_num_batched_tokens, max_model_len) tokens plus a block (SlidingWindowSpec.
    max_memory_usage_bytes), not the window alone: gpt-oss-120b (18 sliding layers of 2,048
    bytes a token, window 128) on an H100 (8,192 batched tokens) needs 8,336 tokens there, not
    144. A plan whose KV room lies between the two does not start."""
    from planner.decide.fit import _candidate, fit_layout, memory_budget
    from planner.decide.plan import Layout, Need
    from planner.decide.support import check_support
    from planner.model.footprint import default_batched_tokens
    from planner.model.kvcache import sliding_prefill_reserve
    from planner.offers.gpus import gpu_table

    spec = load_model_spec("gpt-oss-120b")
    assert sliding_prefill_reserve(spec, 1, "auto", 131072, 8192) == 18 * 2048 * (8336 - 144)
    # window - 1 + 2,048 = 2,175 tokens: 136 blocks, plus one
    assert sliding_prefill_reserve(spec, 1, "auto", 131072, 2048) == 18 * 2048 * (2192 - 144)
    assert sliding_prefill_reserve(spec, 1, "auto", 100, 8192) == 18 * 2048 * (128 - 112)
    assert sliding_prefill_reserve(load_model_spec("llama-3.1-8b"), 1, "auto", 8192, 8192) == 0

    gemma = _candidate(load_model_spec("google/gemma-3-27b-it"), None, "google/gemma-3-27b-it")
    gpu = gpu_table()["h100-sxm"]
    need = Need(context=8192)
    per_request = kv_bytes_per_request(gemma.spec, 1, "auto", 8192)
    reserve = sliding_prefill_reserve(
        gemma.spec, 1, "auto", 8192, default_batched_tokens(gpu.usable_memory_bytes, gpu.name)
    )
    assert reserve > 2 * 2**30  # 52 sliding layers at 8,192 tokens instead of 1,040
    weights, _, overhead, _ = memory_budget(gemma, gpu, 1, 1, 0.9)

    def fit_with(kv_room: float):  # the fit at a utilisation that leaves kv_room for the KV
        util = (weights + overhead + kv_room) / gpu.usable_memory_bytes
        support = check_support(gpu, gemma.fmt)
        return fit_layout(
            gemma, gpu, support, Layout(tp=1), replace(need, gpu_memory_utilization=util)
        )

    # room for one request, but not for it and the reserve: vLLM would not start
    refused = fit_with(per_request + reserve / 2)
    assert isinstance(refused, str) and "GiB sliding-window prefill per GPU" in refused
    assert not isinstance(fit_with(per_request + reserve * 1.2), str)


def test_data_parallel_replicas_spread_the_experts_over_all_their_gpus():
    """Data-parallel replicas of an MoE model share its routed experts (vLLM flattens TP across
    DP for MoE layers), so the experts' width must split over all tp x dp GPUs: group-quantized
    experts in whole groups, block-FP8 experts in whole blocks or held whole (expert parallel,
    which needs enough experts). The fused-MoE workspace of each GPU takes every replica's
    tokens, at its share of the width; a dense model's replicas share nothing."""
    from planner.model.quant import get_format
    from planner.model.tensor_parallel import moe_group_problem

    qwen = spec("Qwen/Qwen3-30B-A3B")  # 128 experts of width 768
    awq = get_format("awq")
    assert moe_group_problem(qwen, awq, None, 2) is None  # 384 = 3 groups of 128
    assert "768 over 4 GPUs" in (moe_group_problem(qwen, awq, None, 4) or "")
    block = get_format("fp8-block")
    assert moe_group_problem(qwen, block, None, 8) is None  # 96 wide: 16 whole experts each
    few = replace(qwen, num_experts=4, experts_per_token=2)
    assert "768 over 8 GPUs" in (moe_group_problem(few, block, None, 8) or "")
    # review: any format splits the width over the group, and vLLM asserts it divides
    bf16 = get_format("bf16")
    assert moe_group_problem(qwen, bf16, None, 8) is None
    for gpus in (5, 9):
        assert "768 does not divide over" in (moe_group_problem(qwen, bf16, None, gpus) or "")
    alone = overhead_bytes(qwen, 1, 8192, 256)
    shared = overhead_bytes(qwen, 1, 8192, 256, moe_dp=4)
    act_alone, act_shared = (activation_bytes(qwen, 1, 8192, 256, False, d) for d in (1, 4))
    assert act_shared > act_alone  # 4 replicas' tokens through a quarter of the width
    from planner.model.footprint import moe_workspace_elements

    # ... plus the gathered hidden states and the combine buffer of the 3 other replicas' tokens
    workspace = 4 * moe_workspace_elements(qwen, 4) - moe_workspace_elements(qwen, 1)
    assert act_shared - act_alone == 8192 * 2 * (workspace + 2 * 3 * qwen.hidden_size)
    assert shared - alone > act_shared - act_alone  # and the collectives' buffers
    dense = spec("meta-llama/Llama-3.1-8B-Instruct")
    assert overhead_bytes(dense, 1, 8192, 256, moe_dp=4) == overhead_bytes(dense, 1, 8192, 256)
