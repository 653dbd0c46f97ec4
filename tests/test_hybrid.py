"""Hybrid models (issue 15): attention KV only on attention layers, a fixed per-sequence
recurrent state on the others, laid out as vLLM's hybrid KV cache manager pads it, and charged
per concurrent request when planning. Expected values are derived by hand in the comments from
the configs and vLLM's formulas (planner/model/recurrent.py and footprint.hybrid_layout cite
them)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from planner.decide.plan import Need
from planner.decide.rank import candidates_for, recommend
from planner.model.architecture import list_tensors
from planner.model.footprint import estimate_footprint, overhead_bytes, per_gpu_weight_bytes
from planner.model.kvcache import (
    hybrid_layout,
    kv_bytes_per_request,
    kv_bytes_per_token,
    state_bytes_per_request,
)
from planner.model.recurrent import state_bytes_per_layer
from planner.model.sources import find_registry_entry, spec_from_registry
from planner.offers.gpus import gpu_table
from planner.offers.offer import Offer
from planner.present.report import footprint_to_dict

QWEN3_NEXT = "Qwen/Qwen3-Next-80B-A3B-Instruct"
NEMOTRON_H = "nvidia/NVIDIA-Nemotron-Nano-9B-v2"
GRANITE_H = "ibm-granite/granite-4.0-h-small"
NEMOTRON_3_NANO = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"


def spec(model_id: str):
    entry = find_registry_entry(model_id)
    assert entry is not None
    return spec_from_registry(entry)


@pytest.mark.parametrize(
    ("model_id", "published", "attention", "recurrent"),
    [
        (QWEN3_NEXT, 81324862720, 12, 36),  # full attention every 4th layer; MTP included
        (NEMOTRON_H, 8888227328, 4, 27),  # 4 '*', 27 'M', 25 '-' (MLP-only) layers
        (GRANITE_H, 32207337984, 4, 36),
        (NEMOTRON_3_NANO, 31577940288, 6, 23),  # 23 'M', 23 'E' (MoE-only), 6 '*'
    ],
)
def test_hybrid_totals_equal_published_and_layers_split(model_id, published, attention, recurrent):
    s = spec(model_id)
    assert estimate_footprint(s).total_params == published
    assert (s.attention_layer_count, s.recurrent_layer_count) == (attention, recurrent)
    # KV per token only over the attention layers
    _, layers = kv_bytes_per_token(s, 1, "auto")
    assert layers == attention


@pytest.mark.parametrize(
    ("model_id", "tp", "per_layer"),
    [
        # Gated DeltaNet: conv (4-1) x (2*16*128 + 32*128) x 2 B + SSM 32 x 128 x 128 x 2 B
        (QWEN3_NEXT, 1, 3 * 8192 * 2 + 32 * 128 * 128 * 2),
        # Mamba-2: conv 3 x (128*80 + 2*8*128) x 2 B + SSM 128 x 80 x 128 x 4 B: the config
        # pins no mamba_ssm_cache_dtype, and vLLM's default for Nemotron-H is float32 (#39032)
        (NEMOTRON_H, 1, 3 * 12288 * 2 + 128 * 80 * 128 * 4),
        (GRANITE_H, 1, 3 * (8192 + 2 * 128) * 2 + 128 * 64 * 128 * 2),
        # TP=4 with one B/C group: vLLM replicates it to 4 groups, so the conv width per GPU is
        # (8192 + 2*4*128) / 4 = 2304, the SSM heads 128 / 4 = 32.
        (GRANITE_H, 4, 3 * 2304 * 2 + 32 * 64 * 128 * 2),
        # mamba_ssm_cache_dtype float32: conv 3 x (64*64 + 2*8*128) x 2 B + SSM 64x64x128 x 4 B
        (NEMOTRON_3_NANO, 1, 3 * 6144 * 2 + 64 * 64 * 128 * 4),
    ],
)
def test_state_bytes_per_layer_by_hand(model_id, tp, per_layer):
    s = spec(model_id)
    assert s.recurrent is not None
    assert state_bytes_per_layer(s.recurrent, tp, s.dtype) == per_layer


def _offer(gpu_name: str, price: float, vcpus: int = 16, ram_gib: int = 128) -> Offer:
    """One single-GPU hourly offer of ``gpu_name`` (the tests' own, not the catalog's)."""
    gpu = gpu_table()[gpu_name]
    return Offer(
        provider="runpod", instance_type=f"1x{gpu_name}", region="r1", gpu=gpu_name, gpu_count=1,
        gpu_memory_gb=gpu.memory_gb, vcpus=vcpus, ram_gib=ram_gib, disk_gb=None,
        price_usd_per_hour=price, spot_price_usd_per_hour=None, billing="hourly",
        source="test", fetched_at="2026-11-30",
    )  # fmt: skip


def test_qwen3_next_hybrid_page_alignment_by_hand():
    s = spec(QWEN3_NEXT)
    lay = hybrid_layout(s, 1, "auto")
    assert lay is not None
    # one attention layer: 2 x 2 KV heads x 256 x 2 B = 2048 B/token; state 1,097,728 B;
    # block = 16 x ceil(1,097,728 / (16 x 2048)) = 544 tokens; page 544 x 2048 = 1,114,112 B;
    # 12 attention + 36 GDN layers -> groups of 12: 1 attention group, 3 state groups.
    assert (lay.block_tokens, lay.page_bytes, lay.group_size) == (544, 1114112, 12)
    assert (lay.attention_groups, lay.state_groups) == (1, 3)
    assert state_bytes_per_request(s, 1) == 12 * 1114112 * 3
    # 8192 tokens -> ceil(8192 / 544) = 16 attention blocks, plus one state page per layer
    assert kv_bytes_per_request(s, 1, "auto", 8192) == 12 * 1114112 * (16 + 3)


def test_nemotron_h_state_groups_are_padded():
    lay = hybrid_layout(spec(NEMOTRON_H), 1, "auto")
    assert lay is not None
    # 4 attention vs 27 Mamba layers: groups of 4, the Mamba layers padded to 7 x 4 = 28;
    # block = 16 x ceil(5,316,608 / (16 x 4096)) = 1,312 tokens (fp32 SSM state).
    assert (lay.group_size, lay.state_groups, lay.block_tokens) == (4, 7, 1312)
    assert lay.page_bytes == 1312 * 4096


def test_state_is_fixed_per_sequence_and_scales_with_concurrency():
    s = spec(NEMOTRON_H)
    state = state_bytes_per_request(s, 1)
    short = estimate_footprint(s, context=1024, concurrency=1)
    long = estimate_footprint(s, context=65536, concurrency=1)
    assert short.state_bytes_per_request == long.state_bytes_per_request == state > 0
    # the attention part grows with context, the state part does not
    # (1,312-token blocks: ceil(65536 / 1312) = 50, ceil(1024 / 1312) = 1)
    assert long.kv_bytes_per_request - short.kv_bytes_per_request == 4 * 1312 * 4096 * (50 - 1)
    many = estimate_footprint(s, context=1024, concurrency=8)
    assert many.per_tp[0].kv_bytes_per_gpu == 8 * short.kv_bytes_per_request
    doc = footprint_to_dict(many)
    assert doc["schema"] == "gpuplan.footprint/1"
    assert doc["kv_cache"]["state_bytes_per_request"] == state
    assert doc["kv_cache"]["recurrent_layers"] == 27
    assert doc["tensor_parallel"][0]["state_bytes_per_request_per_gpu"] == state


def test_pure_attention_models_keep_their_kv_figures():
    s = spec("meta-llama/Llama-3.1-8B-Instruct")
    assert state_bytes_per_request(s, 1) == 0 and hybrid_layout(s, 1, "auto") is None
    # 32 layers x 2 x 8 x 128 x 2 B x 8192 tokens, unchanged by the hybrid path
    assert kv_bytes_per_request(s, 1, "auto", 8192) == 32 * 2 * 8 * 128 * 2 * 8192


def test_planning_charges_the_state_per_concurrent_request():
    s = spec(NEMOTRON_H)
    offer = _offer("l40s", 1.0, vcpus=8, ram_gib=64)
    need = Need(context=1024, prompt_tokens=500, output_tokens=100)
    [cand] = candidates_for(s, None)
    plan = recommend([cand], [offer], need).plans[0]
    free = (
        int(gpu_table()["l40s"].usable_memory_bytes * need.gpu_memory_utilization)
        - per_gpu_weight_bytes(s, cand.weights, 1)[0]
        - overhead_bytes(s, 1)
    )
    per_request = kv_bytes_per_request(s, 1, "auto", 1024)
    assert plan.estimate.max_concurrency == free // per_request
    # Without the state each request would cost only its two attention blocks.
    attention_only = per_request - state_bytes_per_request(s, 1)
    assert plan.estimate.max_concurrency < free // attention_only


def test_recurrent_heads_must_divide_by_tp():
    s = spec(NEMOTRON_H)  # 40 attention heads, 8 KV heads, 128 Mamba heads
    fp = estimate_footprint(s, tp_degrees=(1, 8))
    assert all(t.valid for t in fp.per_tp)
    odd = replace(s, recurrent=replace(s.recurrent, num_heads=100))
    bad = estimate_footprint(odd, tp_degrees=(8,)).per_tp[0]
    assert not bad.valid and "recurrent-layer heads" in (bad.reason or "")


def test_mamba_groups_must_divide_by_tp_unless_one():
    """vLLM's MambaMixer2 asserts (n_groups % tp_size) == 0 or n_groups == 1: one group is
    replicated to every head shard (Granite 4.0-H), others must split evenly."""
    s = spec(NEMOTRON_H)  # n_groups 8
    two = replace(s, recurrent=replace(s.recurrent, n_groups=2))
    valid = {t.tp: t.valid for t in estimate_footprint(two, tp_degrees=(1, 2, 4, 8)).per_tp}
    assert valid == {1: True, 2: True, 4: False, 8: False}
    reason = estimate_footprint(two, tp_degrees=(4,)).per_tp[0].reason or ""
    assert "Mamba groups" in reason
    granite = spec(GRANITE_H)  # n_groups 1: replicated, any TP that splits the heads
    assert granite.recurrent is not None and granite.recurrent.n_groups == 1
    assert all(t.valid for t in estimate_footprint(granite, tp_degrees=(1, 2, 4, 8)).per_tp)


def test_nemotron_3_nano_moe_experts_are_up_down_only():
    s = spec(NEMOTRON_3_NANO)
    names = {t.name for t in list_tensors(s)}
    # layer 1 is 'E': router + bias, experts up/down (squared ReLU, no gate), shared up/down
    assert "model.layers.1.mlp.experts.up_proj.weight" in names
    assert "model.layers.1.mlp.experts.gate_proj.weight" not in names
    assert "model.layers.1.mlp.shared_experts.gate_proj.weight" not in names
    assert "model.layers.1.mlp.gate.e_score_correction_bias" in names
    # 'M' and '*' layers carry no MLP at all
    assert not any(n.startswith("model.layers.0.mlp") for n in names)


@pytest.mark.parametrize("model_id", [NEMOTRON_H, NEMOTRON_3_NANO])
def test_nemotron_h_runs_no_repository_code(model_id):
    """Nemotron-H's config class ships with the transformers the pinned vLLM (0.33.0) requires,
    so vLLM builds it without the repository's configuration_nemotron_h.py (hfconfig.REMOTE_CODE
    cites the sources): the plan passes no --trust-remote-code, and its project is written
    without --allow-remote-code, running no code from the model's repository on the server."""
    from infra.emit import render_project
    from infra.options import ProjectOptions

    s = spec(model_id)
    assert not s.trust_remote_code
    assert not any("trust-remote-code" in n for n in s.notes)
    offer = _offer("h100-sxm", 3.0)
    plan = recommend(candidates_for(s, None)[:1], [offer], Need()).plans[0]
    assert "--trust-remote-code" not in plan.vllm_args and not plan.runs_remote_code
    files = render_project(plan, ProjectOptions(allowed_cidrs=("203.0.113.7/32",)))
    assert not any("trust-remote-code" in text for text in files.values())


def test_a_hybrid_plan_says_its_speed_is_optimistic():
    # 1,024 at once ran 77% slower than the estimate (benchmarks/speed_accuracy.py hx004)
    from planner.decide.planbuild import HYBRID_SPEED_NOTE

    offer = _offer("h100-sxm", 3.0)
    hybrid = recommend(candidates_for(spec(NEMOTRON_3_NANO), None)[:1], [offer], Need()).plans[0]
    assert HYBRID_SPEED_NOTE in hybrid.notes
    dense = recommend(candidates_for(spec("Qwen/Qwen3-8B"), None)[:1], [offer], Need()).plans[0]
    assert HYBRID_SPEED_NOTE not in dense.notes
