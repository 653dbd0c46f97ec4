"""The 2025-26 model families (issue 15): dispatch by architecture, vision-language wrappers,
Llama 4, GLM-4.5, SmolLM3, OLMo 2. Expected counts are the published checkpoint totals (sources
in planner/model/registry/models.json) or derived by hand in the comments."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from planner.errors import ModelSpecError
from planner.model.architecture import list_tensors
from planner.model.footprint import count_params, estimate_footprint
from planner.model.kvcache import kv_bytes_per_request
from planner.model.sources import find_registry_entry, spec_from_registry
from planner.model.sources.hfconfig import parse_config

CONFIGS = Path(__file__).parent / "data" / "configs"


def parse(cfg: dict, name: str = "t"):
    return parse_config(cfg, name=name, source="config", source_ref="test")


def registry_spec(model_id: str):
    entry = find_registry_entry(model_id)
    assert entry is not None, model_id
    return spec_from_registry(entry)


# (registry id, family, published total, what the published total includes)
PUBLISHED = [
    ("mistralai/Mistral-Small-3.2-24B-Instruct-2506", "llama", 24011361280, "vision"),
    ("meta-llama/Llama-4-Scout-17B-16E-Instruct", "llama4", 108641793536, "vision"),
    ("meta-llama/Llama-4-Maverick-17B-128E-Instruct", "llama4", 401583781376, "vision"),
    ("zai-org/GLM-4.5", "glm4_moe", 358337791296, "mtp"),
    ("zai-org/GLM-4.5-Air", "glm4_moe", 110468824832, "mtp"),
    ("HuggingFaceTB/SmolLM3-3B", "llama", 3075098624, ""),
    ("allenai/OLMo-2-1124-7B-Instruct", "olmo2", 7298617344, ""),
    ("allenai/OLMo-2-1124-13B-Instruct", "olmo2", 13716198400, ""),
    ("MiniMaxAI/MiniMax-M2", "minimax_m2", 228689764864, ""),
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen3", 8767123696, "vision"),
    ("Qwen/Qwen3-VL-30B-A3B-Instruct", "qwen3_moe", 31070754032, "vision"),
]


@pytest.mark.parametrize(("model_id", "family", "published", "includes"), PUBLISHED)
def test_new_family_totals_equal_published_checkpoints(model_id, family, published, includes):
    spec = registry_spec(model_id)
    assert spec.family == family
    fp = estimate_footprint(spec)
    assert fp.total_params == published
    # The published figure includes the vision tower / MTP block: dropping it must change it.
    if includes == "vision":
        assert estimate_footprint(replace(spec, vision=None)).total_params < published
    if includes == "mtp":
        assert fp.mtp_params > 0


@pytest.mark.parametrize(
    ("fixture", "model_id", "tower_params"),
    [
        # Pixtral: conv 1024*3*14*14 + ln_pre 1024 + 24 x (4*1024^2 + 3*1024*4096 + 2*1024)
        # + projector norm 1024 + merger 1024*4096 + linear_1 5120*1024 + linear_2 5120^2
        ("mistral-small-3.1-24b-instruct-2503.json", None, 438958080),
        # Llama 4 ViT: unfold 1408*588 + class 1408 + positions 577*1408 + 2 LayerNorms (w+b)
        # + 34 x (4*(1408^2+1408) + 2*2*1408 + 2*1408*5632 + 5632 + 1408)
        # + adapter 4096*5632 + 4096^2 + projector 5120*4096
        (
            "llama-4-scout-17b-16e-instruct.json",
            "meta-llama/Llama-4-Scout-17B-16E-Instruct",
            871932416,
        ),
    ],
)
def test_nested_vision_configs_unwrap_and_count_the_tower(fixture, model_id, tower_params):
    config = json.loads((CONFIGS / fixture).read_text())
    spec = parse(config)
    assert spec.vision is not None and spec.hidden_size == config["text_config"]["hidden_size"]
    tower = sum(t.numel for t in list_tensors(spec) if t.role == "vision")
    assert tower == tower_params
    if model_id:  # the stored fixture and the registry entry are the same model
        assert count_params(spec) == count_params(registry_spec(model_id))


def test_mistral3_nested_config_no_longer_fails_on_hidden_size():
    # Before issue 15 the nested config stopped with "missing field 'hidden_size'".
    config = json.loads((CONFIGS / "mistral-small-3.1-24b-instruct-2503.json").read_text())
    assert count_params(parse(config))[0] == 24011361280


def test_kimi_k2_dispatches_by_architecture_to_deepseek_v3():
    spec = registry_spec("moonshotai/Kimi-K2-Instruct")
    assert spec.family == "deepseek_v3" and spec.is_mla and spec.num_experts == 384
    assert spec.quant is not None and spec.quant.format == "fp8-block"
    # 1,026,408,232,448 weights: the published 1,026,408,235,864 minus the named 3,416.
    assert estimate_footprint(spec).total_params == 1026408235864 - 3416


def test_unknown_architecture_names_the_closest_family_and_what_is_missing():
    cfg = {
        "model_type": "qwen3_5_moe",
        "architectures": ["Qwen3_5MoeForConditionalGeneration"],
        "text_config": {"model_type": "qwen3_5_moe_text", "linear_num_value_heads": 32},
        "vision_config": {"hidden_size": 1152},
    }
    with pytest.raises(ModelSpecError) as err:
        parse(cfg)
    assert "qwen3_5_moe" in err.value.message and "not supported yet" in err.value.message
    assert "closest supported: qwen3_moe" in err.value.hint
    assert "recurrent/SSM state" in err.value.hint and "vision tower" in err.value.hint


def test_olmo2_full_width_qk_norm_by_hand():
    # hidden 8, 2 heads of 4, 1 KV head, MLP 16, vocab 10, one layer, untied:
    # embed 80 + lm_head 80 + final norm 8 + attn (64+32+32+64) + mlp 3*8*16 + 2 norms 16
    # + q_norm 8 (2 heads x 4) + k_norm 4 (1 KV head x 4) = 772
    cfg = {
        "model_type": "olmo2", "hidden_size": 8, "num_attention_heads": 2,
        "num_key_value_heads": 1, "intermediate_size": 16, "vocab_size": 10,
        "num_hidden_layers": 1, "tie_word_embeddings": False,
    }  # fmt: skip
    spec = parse(cfg)
    assert count_params(spec)[0] == 772
    norms = {t.name.rsplit(".", 2)[-2]: t.shape for t in list_tensors(spec) if "_norm" in t.name}
    assert norms["q_norm"] == (8,) and norms["k_norm"] == (4,)


def test_llama4_interleaved_moe_layers_and_shared_expert():
    scout = registry_spec("meta-llama/Llama-4-Scout-17B-16E-Instruct")
    maverick = registry_spec("meta-llama/Llama-4-Maverick-17B-128E-Instruct")
    assert all(scout.is_moe_layer(i) for i in range(48))
    assert [maverick.is_moe_layer(i) for i in range(4)] == [False, True, False, True]
    names = [t.name for t in list_tensors(maverick)]
    # dense layers use intermediate_size_mlp (16384); MoE layers add a shared expert (8192)
    dense = next(
        t for t in list_tensors(maverick) if t.name == "model.layers.0.mlp.gate_proj.weight"
    )
    assert dense.shape == (16384, 5120)
    assert "model.layers.1.mlp.shared_experts.gate_proj.weight" in names
    assert "model.layers.0.mlp.shared_experts.gate_proj.weight" not in names


def test_llama4_chunked_layers_hold_one_chunk():
    """vLLM 0.33 runs its hybrid KV cache manager for chunked local attention
    (VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to 1 since vllm#29627):
    Llama 4's 36 chunked layers hold at most one 8,192-token chunk, the 12 NoPE layers the
    whole context. Sizing them all as full attention put Scout at 131,072 tokens x 8 streams
    on 8 H100s instead of 4."""
    from planner.model.kvcache import sliding_prefill_reserve

    spec = registry_spec("meta-llama/Llama-4-Scout-17B-16E-Instruct")
    assert spec.layer_types.count("chunked") == 36 and spec.attention_chunk_size == 8192
    per_layer = 2 * 8 * 128 * 2  # K and V x 8 KV heads x head_dim 128 x bf16
    assert kv_bytes_per_request(spec, 1, "auto", 32768) == (12 * 32768 + 36 * 8192) * per_layer
    # below one chunk every layer holds the request (in 16-token blocks)
    assert kv_bytes_per_request(spec, 1, "auto", 1000) == 48 * 1008 * per_layer
    # start-up: ChunkedLocalAttentionSpec charges min(chunk + max_num_batched_tokens,
    # max_model_len) tokens per chunked layer, i.e. 8,192 + 8,192 beyond the chunk held
    assert sliding_prefill_reserve(spec, 1, "auto", 131072, 8192) == 36 * 8192 * per_layer
    assert sliding_prefill_reserve(spec, 1, "auto", 10000, 8192) == 36 * (10000 - 8192) * per_layer
    fp = estimate_footprint(spec, context=32768)
    assert any("holds at most one chunk" in n for n in fp.notes)


def test_glm45_bias_and_qk_norm_follow_the_config():
    glm, air = registry_spec("zai-org/GLM-4.5"), registry_spec("zai-org/GLM-4.5-Air")
    assert glm.qkv_bias and not glm.o_bias and glm.qk_norm and not air.qk_norm
    assert glm.mtp_layers == 1 and glm.router_score_bias


def test_minimax_m2_fp8_experts_and_full_width_qk_norm():
    spec = registry_spec("MiniMaxAI/MiniMax-M2")
    assert spec.qk_norm_full_width and spec.router_score_bias and spec.quant is not None
    fp = estimate_footprint(spec)
    # The ignore list names the router "gate": the experts' gate_proj must stay FP8, so the
    # FP8 bytes are all linears but the lm_head: 62 x (attention 2*48*128*3072 + 2*8*128*3072
    # + experts 256*3*1536*3072) = 227,410,968,576.
    assert fp.weight_bytes_by_dtype["fp8"] == 227410968576
    # M2.5's published total (same shapes) counts the block scales: stored elements match it.
    assert fp.stored_elements == 228703644928


def test_deepseek_v32_indexer_weights_and_second_cache():
    exp, final = (
        registry_spec("deepseek-ai/DeepSeek-V3.2-Exp"),
        registry_spec("deepseek-ai/DeepSeek-V3.2"),
    )
    assert exp.index_n_heads == 64 and exp.index_head_dim == 128
    fp = estimate_footprint(exp)
    # per layer (61 + the MTP layer): wq_b 8192 x 1536 + wk 128 x 7168 + k_norm 2 x 128
    # + weights_proj 64 x 7168 = 13,959,424 weights, + FP8 block scales 64*12 + 1*56 = 824
    indexer = sum(t.numel for t in list_tensors(exp) if ".indexer." in t.name)
    assert indexer == 62 * 13959424
    assert fp.stored_elements == 685396921376  # V3.2-Exp's published total (with scales)
    assert estimate_footprint(final).total_params == 685355329792  # V3.2's (weights only)
    # the latent (512 + 64) x 2 B plus the indexer cache 128 + 4 B, on all 61 layers
    assert fp.kv_bytes_per_token == 61 * (1152 + 132)
    # FP8 KV: FlashMLA's fp8_ds_mla record is 656 B; the indexer cache stays 132 B
    assert estimate_footprint(exp, kv_cache_dtype="fp8").kv_bytes_per_token == 61 * (656 + 132)
    # weights_proj is never quantized and is replicated under tensor parallelism
    wp = next(t for t in list_tensors(exp) if t.name.endswith("indexer.weights_proj.weight"))
    assert wp.role == "indexer" and not wp.linear


DECILM = {
    "architectures": ["DeciLMForCausalLM"], "model_type": "nemotron-nas",
    "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": None,
    "intermediate_size": None, "num_hidden_layers": 3, "vocab_size": 10,
    "tie_word_embeddings": False,
    "block_configs": [
        {"attention": {"n_heads_in_group": 2, "no_op": False}, "ffn": {"ffn_mult": 1.0}},
        {"attention": {"n_heads_in_group": None, "no_op": True}, "ffn": {"ffn_mult": 2.0}},
        {"attention": {"n_heads_in_group": 2, "no_op": False}, "ffn": {"no_op": True}},
    ],
}  # fmt: skip


def test_decilm_heterogeneous_layers_by_hand():
    spec = parse(DECILM)
    assert spec.family == "decilm" and spec.num_kv_heads == 2
    # MLP widths: int(2 * 1.0 * 64 / 3) = 42 and int(2 * 2.0 * 64 / 3) = 85, both -> 256
    assert spec.layer_intermediate_sizes == (256, 256, 0)
    # layer 0: 2 norms 128 + attention (64*64 + 2*32*64 + 64*64 = 12,288) + MLP 3*64*256
    # layer 1: no attention -> 1 norm 64 + MLP 49,152; layer 2: no MLP -> 1 norm + 12,288
    # + embed 640 + lm_head 640 + final norm 64 = 124,480
    assert count_params(spec)[0] == 124480
    # KV only on the 2 attention layers: 2 x 2 KV heads x 16 x 2 B = 128 B each
    assert estimate_footprint(spec).kv_bytes_per_token == 2 * 128


def test_decilm_unsupported_blocks_are_named():
    mixed = json.loads(json.dumps(DECILM))
    mixed["block_configs"][2]["attention"]["n_heads_in_group"] = 4
    with pytest.raises(ModelSpecError, match="different KV head counts"):
        parse(mixed)
    linear = json.loads(json.dumps(DECILM))
    linear["block_configs"][0]["ffn"] = {"replace_with_linear": True}
    with pytest.raises(ModelSpecError, match="replace_with_linear"):
        parse(linear)


def test_llama4_maverick_activation_peak_uses_its_dense_layers():
    from planner.model.footprint import (
        PROFILE_BATCHED_TOKENS,
        PROFILE_MAX_SEQS,
        SAMPLER_BYTES_PER_LOGIT,
        activation_bytes,
    )

    mav = registry_spec("meta-llama/Llama-4-Maverick-17B-128E-Instruct")
    logits = PROFILE_MAX_SEQS * 202048 * SAMPLER_BYTES_PER_LOGIT
    # MoE layers: 1 expert x 8192 + shared 8192 = 16384, equal to the dense layers' width
    assert activation_bytes(mav, 1) == PROFILE_BATCHED_TOKENS * (3 * 16384 + 4 * 5120) * 2 + logits
    # a wider dense MLP on the alternate layers sets the peak (Scout, all-MoE, would not)
    wide = replace(mav, intermediate_size=20480)
    assert activation_bytes(wide, 1) == PROFILE_BATCHED_TOKENS * (3 * 20480 + 4 * 5120) * 2 + logits
    scout = replace(
        registry_spec("meta-llama/Llama-4-Scout-17B-16E-Instruct"), intermediate_size=20480
    )
    assert (
        activation_bytes(scout, 1) == PROFILE_BATCHED_TOKENS * (3 * 16384 + 4 * 5120) * 2 + logits
    )
    granite = registry_spec("ibm-granite/granite-4.0-h-small")
    # fused-MoE workspace: 10 experts x (max(2 x 768, hidden 4096) + 768), beside the 1536-wide
    # shared MLP; the down-projection output (10 x hidden per token) dominates small experts
    assert activation_bytes(granite, 1) == (
        PROFILE_BATCHED_TOKENS * (10 * (4096 + 768) + 3 * 1536 + 4 * 4096) * 2
        + PROFILE_MAX_SEQS * 100352 * SAMPLER_BYTES_PER_LOGIT
    )
    # ... and tensor parallelism splits the experts' width, not that output
    assert activation_bytes(granite, 4) == (
        PROFILE_BATCHED_TOKENS * (10 * (4096 + 192) + 3 * 1536 // 4 + 4 * 4096) * 2
        + PROFILE_MAX_SEQS * 100352 * SAMPLER_BYTES_PER_LOGIT
    )


def test_ernie45_moe_layer_placement_by_hand():
    cfg = {
        "architectures": ["Ernie4_5_MoeForCausalLM"], "model_type": "ernie4_5_moe",
        "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 8, "vocab_size": 10, "tie_word_embeddings": True, "use_bias": False,
        "moe_num_experts": 4, "moe_k": 2, "moe_num_shared_experts": 2,
        "moe_layer_start_index": 1, "moe_layer_end_index": 2, "moe_layer_interval": 1,
    }  # fmt: skip
    spec = parse(cfg)
    assert [spec.ffn_kind(i) for i in range(4)] == ["dense", "moe", "moe", "dense"]
    # attention 32*32 + 2*16*32 + 32*32 = 3072, norms 64 per layer
    # dense layer: 3*32*64 = 6144; MoE layer: router 4*32 + bias 4 + experts 4*3*16*32
    # + shared (2 x 16 = 32 wide) 3*32*32 = 128 + 4 + 6144 + 3072 = 9348
    # + embed 320 (tied) + final norm 32
    expected = 2 * (3072 + 64 + 6144) + 2 * (3072 + 64 + 9348) + 320 + 32
    assert count_params(spec)[0] == expected
