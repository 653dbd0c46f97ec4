"""Turn a Hugging Face ``config.json`` (and ``hf_quant_config.json``) into a ModelSpec.

One parser serves every source: local files, the Hub, and the embedded registry (which stores
the same config dicts), so a registry model and its downloaded config give the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.errors import ModelSpecError, short
from planner.model.sources.fields import DTYPES, check_factor, check_int, opt_int
from planner.model.sources.fields import get_field as _get
from planner.model.sources.layouts import (
    VISION_KINDS,
    hybrid_note,
    parse_block_configs,
    parse_hybrid,
    parse_vision,
)
from planner.model.sources.quantconfig import parse_modelopt, parse_quantization_config
from planner.model.values import ModelSpec

# model_type -> family. Families decide layout details below.
FAMILIES = {
    "llama": "llama", "mistral": "llama", "mistral3": "llama", "qwen2": "qwen2",
    "qwen3": "qwen3", "qwen3_moe": "qwen3_moe", "mixtral": "mixtral", "gemma2": "gemma2",
    "gemma3": "gemma3", "gemma3_text": "gemma3", "phi3": "phi3", "deepseek_v3": "deepseek_v3",
    "deepseek_v2": "deepseek_v2", "gpt_oss": "gpt_oss", "granite": "llama",
    # SmolLM3 is Llama-shaped; its NoPE layers (every 4th skips RoPE) change no tensor or cache.
    "smollm3": "llama",
    "olmo2": "olmo2", "glm4_moe": "glm4_moe", "llama4": "llama4", "llama4_text": "llama4",
    "minimax_m2": "minimax_m2",
    # hybrid: recurrent layers with a per-sequence state beside a few attention layers
    "qwen3_next": "qwen3_next", "nemotron_h": "nemotron_h", "granitemoehybrid": "granite_hybrid",
    # Qwen3-VL wraps a Qwen3 / Qwen3-MoE decoder
    "qwen3_vl": "qwen3", "qwen3_vl_moe": "qwen3_moe",
    "deepseek_v32": "deepseek_v3",  # + the sparse-attention indexer (index_head_dim)
    "nemotron-nas": "decilm",  # Llama layers with per-layer attention / MLP choices
    "ernie4_5_moe": "ernie4_5_moe",
}  # fmt: skip

# architectures[0] -> family, for configs whose model_type is a new name for a supported layout
# (Kimi K2: model_type 'kimi_k2', architectures ['DeepseekV3ForCausalLM']). vLLM itself picks
# the model class by this field (vllm/model_executor/models/registry.py).
ARCHITECTURES = {
    "LlamaForCausalLM": "llama", "MistralForCausalLM": "llama", "GraniteForCausalLM": "llama",
    "Mistral3ForConditionalGeneration": "llama", "SmolLM3ForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "Qwen3MoeForCausalLM": "qwen3_moe",
    "MixtralForCausalLM": "mixtral", "Gemma2ForCausalLM": "gemma2",
    "Gemma3ForCausalLM": "gemma3", "Gemma3ForConditionalGeneration": "gemma3",
    "Phi3ForCausalLM": "phi3", "DeepseekV3ForCausalLM": "deepseek_v3",
    "DeepseekV2ForCausalLM": "deepseek_v2", "GptOssForCausalLM": "gpt_oss",
    "Olmo2ForCausalLM": "olmo2", "Glm4MoeForCausalLM": "glm4_moe",
    "Llama4ForConditionalGeneration": "llama4", "Llama4ForCausalLM": "llama4",
    "MiniMaxM2ForCausalLM": "minimax_m2", "Qwen3NextForCausalLM": "qwen3_next",
    "NemotronHForCausalLM": "nemotron_h", "GraniteMoeHybridForCausalLM": "granite_hybrid",
    "Qwen3VLForConditionalGeneration": "qwen3", "Qwen3VLMoeForConditionalGeneration": "qwen3_moe",
    "DeepseekV32ForCausalLM": "deepseek_v3", "DeciLMForCausalLM": "decilm",
    "Ernie4_5_MoeForCausalLM": "ernie4_5_moe",
}  # fmt: skip

# model_type -> why `vllm serve` needs --trust-remote-code: code that ships only in the model's
# repository. Kimi K2: the tokenizer is tokenization_kimi.TikTokenTokenizer (auto_map); vLLM's
# recipe passes the flag in every command
# (https://github.com/vllm-project/recipes/blob/main/moonshotai/Kimi-K2.md) and
# vllm-project/recipes#116 shows `vllm serve` failing without it.
# Not Nemotron-H (nemotron_h) nor MiniMax-M2 (minimax_m2), although their configs name the
# repository's code in auto_map and older vLLM stopped without the flag (vLLM 0.11.0: "contains
# custom code which must be executed", github.com/evdcush/vllm-openwebui gotchas.md): vLLM 0.33.0
# requires transformers>=5.16.1,<5.21.0 (its wheel's Requires-Dist), whose models/auto maps
# nemotron_h -> NemotronHConfig and minimax_m2 -> MiniMaxM2Config (transformers
# docs/source/en/model_doc/nemotron_h.md: added 2026-03-02; minimax_m2.md: 2026-01-09), and
# vLLM's HFConfigParser (vllm/transformers_utils/config.py) calls AutoConfig.from_pretrained with
# trust_remote_code=False, for which transformers takes its own class of a known model_type over
# auto_map. Checked: transformers 5.16.1 builds both registry configs, auto_map included, into
# those classes with every attribute vLLM 0.33.0's nemotron_h.py and minimax_m2.py read; the
# flag would only swap in the repository's config class, run on the server for nothing.
REMOTE_CODE = {
    "kimi_k2": "its tokenizer (tokenization_kimi.py) ships in the model repository",
}

# What a family needs that an unknown one may lack: named in the "not supported" hint.
_UNSUPPORTED_HINTS = {
    "hybrid": "per-sequence recurrent/SSM state of linear-attention or Mamba layers",
    "vision": "its vision tower layout",
}


def parse_config(
    config: Mapping[str, Any],
    *,
    name: str,
    source: str,
    source_ref: str,
    hf_quant_config: Mapping[str, Any] | None = None,
) -> ModelSpec:
    """Build a ModelSpec from a config.json dict; errors name the missing or malformed field."""
    where = f"config of {short(name).strip() or 'the model'}"
    try:
        return _parse_config(config, name, source, source_ref, hf_quant_config, where)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, ZeroDivisionError,
            OverflowError, RecursionError) as exc:  # fmt: skip
        # The checked accessors name the field in the usual cases; a value of a wrong type in a
        # rarely read field still gets one line, never an internal error.
        raise ModelSpecError(
            f"{where}: malformed config ({type(exc).__name__}: {short(exc, 120)})",
            "check the config file against the model's published config.json",
        ) from None


def _parse_config(
    config: Mapping[str, Any],
    name: str,
    source: str,
    source_ref: str,
    hf_quant_config: Mapping[str, Any] | None,
    where: str,
) -> ModelSpec:
    if not isinstance(config, Mapping):
        raise ModelSpecError(f"{where}: expected a JSON object")
    model_type = config.get("model_type")
    text_cfg, family = _unwrap(config, where)
    vision = None
    if text_cfg is not config and isinstance(config.get("vision_config"), Mapping):
        vision = parse_vision(config, str(model_type), where)
    c = text_cfg
    decilm: dict[str, Any] = {}
    if family == "decilm":
        decilm = parse_block_configs(c, where)
        c = {**c, "num_key_value_heads": decilm.pop("num_kv_heads"),
             "intermediate_size": max(decilm["layer_intermediate_sizes"]) or 1}  # fmt: skip
    hidden = _get(c, "hidden_size", where)
    heads = _get(c, "num_attention_heads", where)
    kv_heads = _get(c, "num_key_value_heads", where, default=heads)
    head_dim = opt_int(c, "head_dim", where, default=hidden // heads)
    if head_dim <= 0:
        raise ModelSpecError(f"{where}: field 'head_dim' must be a positive integer")
    layers = _get(c, "num_hidden_layers", where)
    if heads % kv_heads:
        raise ModelSpecError(
            f"{where}: num_attention_heads ({heads}) is not a multiple of "
            f"num_key_value_heads ({kv_heads})"
        )
    tie_default = family in {"gemma2", "gemma3"}
    tie = config.get("tie_word_embeddings", c.get("tie_word_embeddings"))
    dtype_raw = c.get("torch_dtype") or c.get("dtype") or config.get("torch_dtype") or "bfloat16"
    dtype = DTYPES.get(str(dtype_raw))
    if dtype is None:
        raise ModelSpecError(f"{where}: unknown torch_dtype {dtype_raw!r}")
    fields: dict[str, Any] = dict(
        name=name, family=family, hidden_size=hidden,
        intermediate_size=_get(c, "intermediate_size", where, default=0),
        num_layers=layers, num_attention_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
        vocab_size=_get(c, "vocab_size", where),
        tie_word_embeddings=bool(tie_default if tie is None else tie),
        max_position_embeddings=_get(c, "max_position_embeddings", where, default=4096),
        dtype=dtype, source=source, source_ref=source_ref, vision=vision,
    )  # fmt: skip
    bias = bool(c.get("attention_bias", False) or (family == "ernie4_5_moe" and c.get("use_bias")))
    fields["qkv_bias"] = bias or family == "qwen2"
    # GLM-4.5's attention_bias covers q/k/v only; o_proj is bias-free (vLLM glm4_moe.py).
    fields["o_bias"] = bias and family not in {"glm4_moe", "ernie4_5_moe"}
    if family in {"qwen3", "qwen3_moe", "gemma3"}:
        fields["qk_norm"] = True
    if family == "minimax_m2":
        # qk_norm_type "per_layer": one norm over all q (k) heads, as OLMo 2 (vLLM minimax_m2.py)
        fields.update(qk_norm=bool(c.get("use_qk_norm", True)), qk_norm_full_width=True)
    if family == "olmo2":
        # OLMo 2 normalises q and k across all heads (q_norm: heads*head_dim weights).
        # https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/models/olmo2.py
        fields.update(qk_norm=True, qk_norm_full_width=True)
    if family == "glm4_moe":
        fields["qk_norm"] = bool(c.get("use_qk_norm", False))
    if family in {"gemma2", "gemma3"}:
        fields["norms_per_layer"] = 4
    rope = c.get("rope_scaling") or {}
    if isinstance(rope, dict) and (rope.get("rope_type") or rope.get("type")) == "linear":
        factor = rope.get("factor")
        fields["linear_rope_factor"] = (
            1.0 if factor is None else check_factor(factor, "rope_scaling.factor", where)
        )
    if family == "phi3":
        fields.update(fused_qkv=True, fused_gate_up=True)
    notes: list[str] = []
    if vision is None and text_cfg is not config and "vision_config" in config:
        notes.append(
            f"the vision tower of '{model_type}' is not modelled: parameters and weight bytes "
            "cover the language model only"
        )
    parse_hybrid(c, family, fields, where, layers, dtype)
    _parse_moe(c, family, fields, where, notes)
    _parse_mla(c, family, fields, where)
    _parse_layer_types(c, family, fields, layers, where)
    if family == "gpt_oss":
        fields.update(attention_sinks=True, router_bias=True, expert_bias=True)
    remote = REMOTE_CODE.get(str(model_type))
    if remote:
        fields["trust_remote_code"] = True
        notes.append(f"vLLM runs with --trust-remote-code: {remote}; that code runs on the server")
    fields.update(decilm)
    if fields.get("recurrent") is not None:
        notes.append(hybrid_note(fields))
    if not fields["intermediate_size"] and not fields.get("num_experts"):
        raise ModelSpecError(f"{where}: missing field 'intermediate_size'")
    qc_raw = c.get("quantization_config") or config.get("quantization_config")
    quant = None
    if hf_quant_config:
        quant = parse_modelopt(hf_quant_config, where)
    elif qc_raw:
        quant = parse_quantization_config(qc_raw, where)
    fields["quant"] = quant
    fields["notes"] = tuple(notes)
    return ModelSpec(**fields)


def _unwrap(config: Mapping[str, Any], where: str) -> tuple[Mapping[str, Any], str]:
    """The decoder's config and its family.

    Vision-language wrappers (Gemma 3, Mistral 3, Llama 4, Qwen3-VL) nest the decoder under
    ``text_config``; the family comes from the wrapper's model_type, else the nested one, else
    the declared architecture.
    """
    text_cfg: Mapping[str, Any] = config
    if isinstance(config.get("text_config"), Mapping):
        text_cfg = {**config["text_config"]}
    raw_archs = config.get("architectures") or []
    archs = [str(a) for a in raw_archs] if isinstance(raw_archs, list) else []
    candidates = [
        FAMILIES.get(str(config.get("model_type"))),
        FAMILIES.get(str(text_cfg.get("model_type"))),
    ]
    candidates += [ARCHITECTURES.get(a) for a in archs]
    family = next((f for f in candidates if f), None)
    if family is None and not archs and not config.get("model_type"):
        raise ModelSpecError(
            f"{where}: neither model_type nor architectures is set: not a transformers config.json",
            "point at the config.json of a Hugging Face checkpoint (its repository's, unedited)",
        )
    if family is None:
        raise ModelSpecError(
            f"{where}: model_type '{short(config.get('model_type'), 60)}' "
            f"({short(', '.join(archs), 60) or 'no architecture'}) is not supported yet",
            _unsupported_hint(config, text_cfg),
        )
    return text_cfg, family


def _unsupported_hint(config: Mapping[str, Any], text_cfg: Mapping[str, Any]) -> str:
    """Name the closest supported family and what the config has that gpuplan cannot size."""
    import difflib

    name = str(config.get("model_type") or "")
    names = sorted(FAMILIES) + sorted(ARCHITECTURES)
    raw_archs = config.get("architectures") or []
    archs = [str(a) for a in raw_archs] if isinstance(raw_archs, list) else []
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.4) or [
        m for a in archs for m in difflib.get_close_matches(a, names, n=1, cutoff=0.5)
    ]
    missing = []
    keys = set(text_cfg)
    if keys & {
        "layers_block_type",
        "hybrid_override_pattern",
        "linear_num_value_heads",
        "mamba_d_state",
        "ssm_state_size",
        "mamba_n_heads",
        "attn_layer_period",
    }:
        missing.append(_UNSUPPORTED_HINTS["hybrid"])
    if "vision_config" in config and name not in VISION_KINDS:
        missing.append(_UNSUPPORTED_HINTS["vision"])
    hint = f"closest supported: {close[0]}" if close else "no close supported family"
    if missing:
        hint += "; not modelled yet: " + ", ".join(missing)
    return hint + f" (supported model types: {', '.join(sorted(FAMILIES))})"


def _parse_moe(
    c: Mapping[str, Any], family: str, f: dict[str, Any], where: str, notes: list[str]
) -> None:
    if family in {"mixtral", "gpt_oss", "minimax_m2"}:
        f["num_experts"] = _get(c, "num_local_experts", where)
        f["experts_per_token"] = opt_int(c, "num_experts_per_tok", where, 0) or _get(
            c, "experts_per_token", where
        )
        f["moe_intermediate_size"] = f["intermediate_size"]
        # MiniMax-M2 routes by sigmoid plus e_score_correction_bias (use_routing_bias).
        f["router_score_bias"] = bool(c.get("use_routing_bias", False))
    elif family == "qwen3_moe":
        f["num_experts"] = _get(c, "num_experts", where)
        f["experts_per_token"] = _get(c, "num_experts_per_tok", where)
        f["moe_intermediate_size"] = _get(c, "moe_intermediate_size", where)
        if c.get("mlp_only_layers") or c.get("decoder_sparse_step", 1) != 1:
            raise ModelSpecError(
                f"{where}: qwen3_moe with dense layers (mlp_only_layers / decoder_sparse_step) "
                "is not supported yet"
            )
    elif family in {"deepseek_v3", "deepseek_v2", "glm4_moe"}:
        f["num_experts"] = _get(c, "n_routed_experts", where)
        f["experts_per_token"] = _get(c, "num_experts_per_tok", where)
        f["moe_intermediate_size"] = _get(c, "moe_intermediate_size", where)
        f["num_shared_experts"] = opt_int(c, "n_shared_experts", where, 0)
        f["first_dense_layers"] = opt_int(c, "first_k_dense_replace", where, 0)
        # GLM-4.5 routes like DeepSeek-V3 (sigmoid + e_score_correction_bias, vLLM glm4_moe.py)
        f["router_score_bias"] = c.get("topk_method") == "noaux_tc" or family in {
            "deepseek_v3",
            "glm4_moe",
        }
        f["mtp_layers"] = opt_int(c, "num_nextn_predict_layers", where, 0)
        if (c.get("moe_layer_freq") or 1) != 1:
            raise ModelSpecError(f"{where}: moe_layer_freq != 1 is not supported yet")
    elif family in {"qwen3_next", "granite_hybrid"} and (
        c.get("num_experts") or c.get("num_local_experts")
    ):
        # Qwen3-Next: every layer MoE with one gated shared expert (vLLM qwen3_next.py).
        # Granite 4.0-H: block_sparse_moe plus an always-on shared_mlp per layer
        # (vLLM granitemoehybrid.py); stored fused, counted as gate/up/down.
        f["num_experts"] = opt_int(c, "num_experts", where, 0) or opt_int(
            c, "num_local_experts", where, 0
        )
        f["experts_per_token"] = _get(c, "num_experts_per_tok", where)
        if family == "qwen3_next":
            f["moe_intermediate_size"] = _get(c, "moe_intermediate_size", where)
            f["shared_expert_intermediate_size"] = _get(c, "shared_expert_intermediate_size", where)
            f["shared_expert_gate"] = True
            if c.get("mlp_only_layers") or c.get("decoder_sparse_step", 1) != 1:
                raise ModelSpecError(f"{where}: qwen3_next with dense layers is not supported yet")
        else:
            f["moe_intermediate_size"] = _get(c, "intermediate_size", where)
            f["shared_expert_intermediate_size"] = _get(c, "shared_intermediate_size", where)
        f["num_shared_experts"] = 1 if f["shared_expert_intermediate_size"] else 0
    elif family == "ernie4_5_moe":
        # vLLM ernie45_moe.py: MoE where start <= i <= end and (i + 1) % interval == 0, dense
        # (intermediate_size) elsewhere; shared experts moe_intermediate_size x their count;
        # the router always carries e_score_correction_bias.
        f["num_experts"] = _get(c, "moe_num_experts", where)
        f["experts_per_token"] = _get(c, "moe_k", where)
        f["moe_intermediate_size"] = _get(c, "moe_intermediate_size", where)
        f["num_shared_experts"] = opt_int(c, "moe_num_shared_experts", where, 0)
        f["router_score_bias"] = True
        layers = f["num_layers"]
        start = opt_int(c, "moe_layer_start_index", where, 0)
        end = c.get("moe_layer_end_index")
        end = layers - 1 if end is None else check_int(end, "moe_layer_end_index", where, minimum=0)
        every = opt_int(c, "moe_layer_interval", where, 1, minimum=1)
        f["ffn_types"] = tuple(
            "moe" if start <= i <= end and (i + 1) % every == 0 else "dense" for i in range(layers)
        )
        if c.get("num_nextn_predict_layers"):
            notes.append(
                "the checkpoint's multi-token-prediction block is not counted (its layout is "
                "not modelled); vLLM does not load it for plain serving"
            )
    elif family == "llama4":
        # Experts and the shared expert are intermediate_size wide; dense layers use
        # intermediate_size_mlp. MoE every interleave_moe_layer_step-th layer (Scout 1,
        # Maverick 2). vLLM llama4.py: is_moe_layer = (layer_idx + 1) % step == 0.
        f["num_experts"] = _get(c, "num_local_experts", where)
        f["experts_per_token"] = _get(c, "num_experts_per_tok", where)
        f["moe_intermediate_size"] = _get(c, "intermediate_size", where)
        f["num_shared_experts"] = 1
        f["shared_expert_intermediate_size"] = f["moe_intermediate_size"]
        f["intermediate_size"] = _get(c, "intermediate_size_mlp", where)
        f["moe_layer_step"] = opt_int(c, "interleave_moe_layer_step", where, 1, minimum=1)
    if f.get("num_experts") and f["experts_per_token"] > f["num_experts"]:
        raise ModelSpecError(f"{where}: num_experts_per_tok exceeds the number of experts")


def _parse_mla(c: Mapping[str, Any], family: str, f: dict[str, Any], where: str) -> None:
    if family not in {"deepseek_v3", "deepseek_v2"}:
        return
    f["kv_lora_rank"] = _get(c, "kv_lora_rank", where)
    f["q_lora_rank"] = opt_int(c, "q_lora_rank", where, 0)
    f["qk_rope_head_dim"] = _get(c, "qk_rope_head_dim", where)
    f["qk_nope_head_dim"] = _get(c, "qk_nope_head_dim", where)
    f["v_head_dim"] = _get(c, "v_head_dim", where)
    f["head_dim"] = f["qk_nope_head_dim"] + f["qk_rope_head_dim"]
    f["num_kv_heads"] = f["num_attention_heads"]
    if c.get("index_head_dim"):
        if not f["q_lora_rank"]:
            raise ModelSpecError(f"{where}: an indexer (index_head_dim) needs q_lora_rank")
        f["index_head_dim"] = _get(c, "index_head_dim", where)
        f["index_n_heads"] = _get(c, "index_n_heads", where)


def _parse_layer_types(
    c: Mapping[str, Any], family: str, f: dict[str, Any], layers: int, where: str
) -> None:
    """Which layers use sliding-window attention, as vLLM applies it.

    vLLM caps a layer's KV at the window only where the model marks it sliding: explicit
    ``layer_types``, Gemma 2's alternation, Gemma 3's 5-local-1-global pattern. A bare
    ``sliding_window`` on Llama-style configs (Mistral v0.1, Phi-3) is not applied per layer.
    """
    window = opt_int(c, "sliding_window", where, 0) or opt_int(c, "sliding_window_size", where, 0)
    types: list[str] | None = None
    raw = c.get("layer_types")
    if isinstance(raw, list) and len(raw) == layers:
        types = ["sliding" if "sliding" in str(t) else "full" for t in raw]
    elif family == "gemma2":
        types = ["sliding" if i % 2 == 0 else "full" for i in range(layers)]
    elif family == "gemma3":
        pattern = opt_int(c, "sliding_window_pattern", where, 6, minimum=1)
        types = ["full" if (i + 1) % pattern == 0 else "sliding" for i in range(layers)]
    if types and window and "sliding" in types:
        f["layer_types"] = tuple(types)
        f["sliding_window"] = int(window)
    chunk = opt_int(c, "attention_chunk_size", where, 0)
    nope = c.get("no_rope_layers")
    if family == "llama4" and chunk and isinstance(nope, list) and len(nope) == layers:
        # vLLM llama4.py: a layer uses chunked local attention when it uses RoPE
        # (no_rope_layers[i] == 1); the NoPE layers (every 4th) attend globally.
        f["layer_types"] = tuple("chunked" if r else "full" for r in nope)
        f["attention_chunk_size"] = int(chunk)
