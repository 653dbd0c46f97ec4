"""Config layouts beyond the plain decoder: vision towers of wrapper configs, hybrid
(recurrent) layer patterns and DeciLM's per-layer block configs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.errors import ModelSpecError
from planner.model.sources.fields import DTYPES, check_int, opt_int
from planner.model.sources.fields import get_field as _get
from planner.model.values import RecurrentSpec, VisionSpec

# Wrapper model_type -> the vision tower layout its vision_config describes.
VISION_KINDS = {
    "gemma3": "siglip", "mistral3": "pixtral", "llama4": "llama4",
    "qwen3_vl": "qwen3_vl", "qwen3_vl_moe": "qwen3_vl",
}  # fmt: skip


def parse_vision(config: Mapping[str, Any], model_type: str, where: str) -> VisionSpec | None:
    """The vision tower of a wrapper config, or None when its layout is not modelled."""
    kind = VISION_KINDS.get(model_type)
    if kind is None:
        return None
    vc = config["vision_config"]
    w = where + " vision_config"
    if kind == "qwen3_vl":  # Qwen3-VL names its fields differently (depth, out_hidden_size)
        return VisionSpec(
            hidden_size=_get(vc, "hidden_size", w),
            intermediate_size=_get(vc, "intermediate_size", w),
            num_layers=_get(vc, "depth", w),
            patch_size=_get(vc, "patch_size", w),
            image_size=0,
            num_channels=opt_int(vc, "in_channels", w, 3),
            kind=kind,
            spatial_merge_size=_get(vc, "spatial_merge_size", w),
            projector_output_dim=_get(vc, "out_hidden_size", w),
            temporal_patch_size=_get(vc, "temporal_patch_size", w),
            num_position_embeddings=_get(vc, "num_position_embeddings", w),
            deepstack_mergers=check_int(
                len(vc.get("deepstack_visual_indexes") or []),
                "deepstack_visual_indexes",
                w,
                minimum=0,
            ),
        )
    return VisionSpec(
        hidden_size=_get(vc, "hidden_size", w),
        intermediate_size=_get(vc, "intermediate_size", w),
        num_layers=_get(vc, "num_hidden_layers", w),
        patch_size=_get(vc, "patch_size", w),
        image_size=_get(vc, "image_size", w),
        num_channels=opt_int(vc, "num_channels", w, 3),
        kind=kind,
        spatial_merge_size=opt_int(config, "spatial_merge_size", w, 1),
        projector_bias=bool(config.get("multimodal_projector_bias", False)),
        projector_input_dim=opt_int(vc, "projector_input_dim", w, 0),
        projector_output_dim=opt_int(vc, "projector_output_dim", w, 0),
        vision_output_dim=opt_int(vc, "vision_output_dim", w, 0),
    )


# The config keys of a Mamba-2 mixer's shape, per family: (heads, head dim, conv kernel, groups,
# state size, conv bias).
_NEMOTRON_H_MAMBA = (
    "mamba_num_heads", "mamba_head_dim", "conv_kernel", "n_groups", "ssm_state_size",
    "use_conv_bias",
)  # fmt: skip
_GRANITE_MAMBA = (
    "mamba_n_heads", "mamba_d_head", "mamba_d_conv", "mamba_n_groups", "mamba_d_state",
    "mamba_conv_bias",
)  # fmt: skip


def _mamba2(
    c: Mapping[str, Any], where: str, keys: tuple[str, ...], state_dtype: str | None
) -> RecurrentSpec:
    heads, head_dim, conv, groups, state, bias = keys
    return RecurrentSpec(
        kind="mamba2", num_heads=_get(c, heads, where), head_dim=_get(c, head_dim, where),
        conv_kernel=_get(c, conv, where), n_groups=_get(c, groups, where),
        state_size=_get(c, state, where), conv_bias=bool(c.get(bias, True)),
        state_dtype=state_dtype,
    )  # fmt: skip


def parse_hybrid(
    c: Mapping[str, Any], family: str, f: dict[str, Any], where: str, layers: int, dtype: str
) -> None:
    """Which layers are recurrent (Gated DeltaNet / Mamba-2) and the shape of their state."""
    if family not in {"qwen3_next", "nemotron_h", "granite_hybrid"}:
        return
    pinned = c.get("mamba_ssm_cache_dtype") or c.get("mamba_ssm_dtype")
    state_dtype = DTYPES.get(str(pinned)) if pinned else None
    if family == "qwen3_next":
        raw = c.get("layer_types")
        if isinstance(raw, list) and len(raw) == layers:
            types = ["linear" if "linear" in str(t) else "full" for t in raw]
        else:  # vLLM/HF: layer i is full attention when (i + 1) % full_attention_interval == 0
            every = opt_int(c, "full_attention_interval", where, 4, minimum=1)
            types = ["full" if (i + 1) % every == 0 else "linear" for i in range(layers)]
        f.update(qk_norm=True, attn_output_gate=True, mtp_style="qwen3_next")
        f["mtp_layers"] = (
            1
            if "num_nextn_predict_layers" not in c
            else opt_int(c, "num_nextn_predict_layers", where, 0)
        )
        f["recurrent"] = RecurrentSpec(
            kind="gdn",
            num_heads=_get(c, "linear_num_value_heads", where),
            head_dim=_get(c, "linear_value_head_dim", where),
            conv_kernel=_get(c, "linear_conv_kernel_dim", where),
            num_k_heads=_get(c, "linear_num_key_heads", where),
            head_k_dim=_get(c, "linear_key_head_dim", where),
            state_dtype=state_dtype,
        )
    elif family == "nemotron_h":
        # hybrid_override_pattern: one character per layer; M = Mamba-2 mixer, * = attention,
        # - = MLP, E = MoE. Each layer is one norm plus one block (vLLM nemotron_h.py).
        pattern = str(c.get("hybrid_override_pattern") or "")
        if len(pattern) != layers or set(pattern) - set("M*-E"):
            raise ModelSpecError(
                f"{where}: 'hybrid_override_pattern' must name each of the {layers} layers "
                "with M, *, - or E"
            )
        types = [{"M": "mamba", "*": "full"}.get(ch, "none") for ch in pattern]
        f["ffn_types"] = tuple({"-": "dense", "E": "moe"}.get(ch, "none") for ch in pattern)
        if "E" in pattern:
            # Nemotron 3 Nano: sigmoid router with e_score_correction_bias, squared-ReLU experts
            # (up/down) and one shared expert (vLLM nemotron_h.py NemotronHMoE)
            f["num_experts"] = _get(c, "n_routed_experts", where)
            f["experts_per_token"] = _get(c, "num_experts_per_tok", where)
            f["moe_intermediate_size"] = _get(c, "moe_intermediate_size", where)
            f["num_shared_experts"] = opt_int(c, "n_shared_experts", where, 0)
            f["shared_expert_intermediate_size"] = opt_int(
                c, "moe_shared_expert_intermediate_size", where, 0
            )
            f["router_score_bias"] = True
        f.update(norms_per_layer=1, mlp_gated=False)
        # vLLM keeps Nemotron-H's SSM state in fp32 unless the config pins another dtype
        # (NemotronHForCausalLMConfig: DEFAULT_MAMBA_SSM_CACHE_DTYPE = "float32", "Only
        # float32 is known to have no accuracy issues", vllm-project/vllm#39032, 2026-04;
        # float16 before): Nemotron Nano 9B v2's config names none.
        f["recurrent"] = _mamba2(c, where, _NEMOTRON_H_MAMBA, state_dtype or "fp32")
    else:
        raw = c.get("layer_types")
        if not (isinstance(raw, list) and len(raw) == layers):
            raise ModelSpecError(f"{where}: 'layer_types' must name each of the {layers} layers")
        types = ["mamba" if str(t) == "mamba" else "full" for t in raw]
        if not opt_int(c, "num_local_experts", where, 0):
            # Granite 4.0-H Micro: no experts, the shared_mlp is the layer's dense MLP
            f["intermediate_size"] = _get(c, "shared_intermediate_size", where)
        f["recurrent"] = _mamba2(c, where, _GRANITE_MAMBA, state_dtype)
    f["layer_types"] = tuple(types)


def parse_block_configs(c: Mapping[str, Any], where: str) -> dict[str, Any]:
    """DeciLM / Nemotron-NAS (Llama-3.3-Nemotron-Super-49B): per-layer block_configs.

    As vLLM nemotron_nas.py builds them: attention.no_op drops the layer's attention (and its
    input norm), ffn.no_op drops the MLP (and its norm); an attention layer has
    num_attention_heads // n_heads_in_group KV heads; an MLP is ffn_mult wide:
    intermediate = int(2 * ffn_mult * hidden / 3) rounded up to a multiple of 256.
    """
    blocks = c.get("block_configs")
    layers = c.get("num_hidden_layers")
    if not isinstance(blocks, list) or len(blocks) != layers:
        raise ModelSpecError(f"{where}: 'block_configs' must describe each of the {layers} layers")
    hidden = _get(c, "hidden_size", where)
    heads = _get(c, "num_attention_heads", where)
    types, ffns, sizes, kv = [], [], [], set()
    for b in blocks:
        if not isinstance(b, Mapping):
            raise ModelSpecError(f"{where}: each of 'block_configs' must be a JSON object")
        attn, ffn = b.get("attention") or {}, b.get("ffn") or {}
        if attn.get("replace_with_linear") or ffn.get("replace_with_linear"):
            raise ModelSpecError(
                f"{where}: DeciLM replace_with_linear blocks are not supported yet"
            )
        if attn.get("no_op"):
            types.append("none")
        else:
            types.append("full")
            kv.add(heads // opt_int(attn, "n_heads_in_group", where, 1, minimum=1))
        if ffn.get("no_op"):
            ffns.append("none")
            sizes.append(0)
        else:
            ffns.append("dense")
            mult = ffn.get("ffn_mult")
            if isinstance(mult, bool) or not isinstance(mult, int | float) or not 0 < mult <= 64:
                raise ModelSpecError(f"{where}: 'ffn_mult' must be a number in (0, 64]")
            inter = int(2 * float(mult) * hidden / 3)
            sizes.append(-(-inter // 256) * 256)
    if len(kv) > 1:
        raise ModelSpecError(
            f"{where}: attention layers with different KV head counts ({sorted(kv)}) are not "
            "supported yet"
        )
    return {
        "layer_types": tuple(types),
        "ffn_types": tuple(ffns),
        "layer_intermediate_sizes": tuple(sizes),
        "num_kv_heads": kv.pop() if kv else heads,
    }


def hybrid_note(f: dict[str, Any]) -> str:
    rec = f["layer_types"].count("linear") + f["layer_types"].count("mamba")
    attn = sum(1 for t in f["layer_types"] if t in {"full", "sliding", "chunked"})
    return (
        f"hybrid: {attn} attention layers hold KV per token; {rec} recurrent layers hold a fixed "
        "per-sequence state (counted once per concurrent request, padded to vLLM's attention "
        "page); needs a vLLM with the hybrid KV cache manager (V1)"
    )
