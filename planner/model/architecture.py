"""The tensors a model's checkpoint stores, derived from its shape.

Every parameter count and weight size in gpuplan is a sum over this list, so one inventory
serves all quantization formats and tensor-parallel layouts. Shapes are (out, in) for linears,
as in PyTorch. Stacked experts are one tensor with a leading expert dimension.
"""

from __future__ import annotations

from planner.model.recurrent import recurrent_tensors
from planner.model.values import ModelSpec, Role, Tensor
from planner.model.vision import vision_tensors


def list_tensors(spec: ModelSpec) -> list[Tensor]:
    """All tensors the checkpoint stores (the exact list from the file for GGUF)."""
    if spec.tensors is not None:
        return list(spec.tensors)
    h, v = spec.hidden_size, spec.vocab_size
    out = [Tensor("model.embed_tokens.weight", (v, h), "embed")]
    for i in range(spec.num_layers):
        out += _decoder_layer(spec, i, in_mtp=False)
    out.append(Tensor("model.norm.weight", (h,), "norm"))
    if not spec.tie_word_embeddings:
        out.append(Tensor("lm_head.weight", (v, h), "lm_head"))
    for m in range(spec.mtp_layers):
        i = spec.num_layers + m
        p = f"model.layers.{i}"
        out += _decoder_layer(spec, i, in_mtp=True)
        if spec.mtp_style == "qwen3_next":
            # Qwen3-Next's MTP: a full-attention layer, a projection of [embedding; hidden] and
            # three norms; it shares the embedding and lm_head (vLLM qwen3_next_mtp.py).
            out += [
                Tensor(f"mtp.fc.weight.{m}", (h, 2 * h), "mtp", in_mtp=True),
                Tensor(f"mtp.pre_fc_norm_embedding.weight.{m}", (h,), "norm", in_mtp=True),
                Tensor(f"mtp.pre_fc_norm_hidden.weight.{m}", (h,), "norm", in_mtp=True),
                Tensor(f"mtp.norm.weight.{m}", (h,), "norm", in_mtp=True),
            ]
            continue
        # DeepSeek-V3's MTP module: its own embedding and head copies, two norms, a projection.
        out += [
            Tensor(f"{p}.embed_tokens.weight", (v, h), "embed", in_mtp=True),
            Tensor(f"{p}.enorm.weight", (h,), "norm", in_mtp=True),
            Tensor(f"{p}.hnorm.weight", (h,), "norm", in_mtp=True),
            Tensor(f"{p}.eh_proj.weight", (h, 2 * h), "mtp", in_mtp=True),
            Tensor(f"{p}.shared_head.norm.weight", (h,), "norm", in_mtp=True),
            Tensor(f"{p}.shared_head.head.weight", (v, h), "lm_head", in_mtp=True),
        ]
    if spec.vision is not None:
        out += vision_tensors(spec.vision, spec.hidden_size)
    return out


def _lin(
    name: str, out_f: int, in_f: int, role: Role, mtp: bool, lead: int = 0, frac: float = 1.0
) -> Tensor:
    shape = (lead, out_f, in_f) if lead else (out_f, in_f)
    return Tensor(name, shape, role, linear=True, moe_fraction=frac, in_mtp=mtp)


def _vec(
    name: str,
    n: int,
    role: Role,
    mtp: bool,
    lead: int = 0,
    frac: float = 1.0,
    dtype: str | None = None,
) -> Tensor:
    shape = (lead, n) if lead else (n,)
    return Tensor(name, shape, role, moe_fraction=frac, in_mtp=mtp, dtype=dtype)


def _decoder_layer(spec: ModelSpec, i: int, in_mtp: bool) -> list[Tensor]:
    p = f"model.layers.{i}"
    h = spec.hidden_size
    norm_names = [
        "input_layernorm",
        "post_attention_layernorm",
        "pre_feedforward_layernorm",
        "post_feedforward_layernorm",
    ]
    mixer = spec.mixer_kind(i)
    ffn = spec.ffn_kind(i)
    norms = spec.norms_per_layer
    if mixer == "none" or ffn == "none":
        # Layers missing a block (Nemotron-H, DeciLM) carry only the missing block's norm's
        # partner: one norm per block present (vLLM nemotron_h.py, nemotron_nas.py).
        norms = (mixer != "none") + (ffn != "none")
    names = norm_names if mixer != "none" else norm_names[1:]
    out = [_vec(f"{p}.{n}.weight", h, "norm", in_mtp) for n in names[:norms]]
    if mixer == "attention":
        out += _mla(spec, p, in_mtp) if spec.is_mla else _gqa(spec, p, in_mtp)
    elif mixer in {"linear", "mamba"} and spec.recurrent is not None:
        out += recurrent_tensors(spec.recurrent, h, p, in_mtp)
    if ffn == "moe":
        out += _moe(spec, p, in_mtp)
    elif ffn == "dense":
        out += _dense_mlp(spec, p, in_mtp, i)
    return out


def _gqa(spec: ModelSpec, p: str, mtp: bool) -> list[Tensor]:
    h, hd = spec.hidden_size, spec.head_dim
    q, kv = spec.num_attention_heads * hd, spec.num_kv_heads * hd
    a = f"{p}.self_attn"
    # A fused qkv_proj (Phi-3) is listed as its q/k/v slices: same elements, same bytes, and
    # tensor parallelism splits the slices the way vLLM's QKVParallelLinear does.
    qn, kn, vn = (
        (f"{a}.qkv_proj.weight[q]", f"{a}.qkv_proj.weight[k]", f"{a}.qkv_proj.weight[v]")
        if spec.fused_qkv
        else (f"{a}.q_proj.weight", f"{a}.k_proj.weight", f"{a}.v_proj.weight")
    )
    # Qwen3-Next's gated attention: q_proj emits the query and a same-sized output gate.
    q_out = 2 * q if spec.attn_output_gate else q
    out = [
        _lin(qn, q_out, h, "attn_q", mtp),
        _lin(kn, kv, h, "attn_kv", mtp),
        _lin(vn, kv, h, "attn_kv", mtp),
        _lin(f"{a}.o_proj.weight", h, q, "attn_o", mtp),
    ]
    if spec.qkv_bias:
        out += [
            _vec(f"{a}.q_proj.bias", q, "bias", mtp),
            _vec(f"{a}.k_proj.bias", kv, "bias", mtp),
            _vec(f"{a}.v_proj.bias", kv, "bias", mtp),
        ]
    if spec.o_bias:
        out.append(_vec(f"{a}.o_proj.bias", h, "bias", mtp))
    if spec.qk_norm:
        # Per-head norms (Qwen3, Gemma 3) hold head_dim weights; full-width ones (OLMo 2,
        # MiniMax-M2) hold one weight per q / k channel.
        qw, kw = (q, kv) if spec.qk_norm_full_width else (hd, hd)
        out += [
            _vec(f"{a}.q_norm.weight", qw, "norm", mtp),
            _vec(f"{a}.k_norm.weight", kw, "norm", mtp),
        ]
    if spec.attention_sinks:
        out.append(_vec(f"{a}.sinks", spec.num_attention_heads, "sink", mtp))
    return out


def _mla(spec: ModelSpec, p: str, mtp: bool) -> list[Tensor]:
    h, n = spec.hidden_size, spec.num_attention_heads
    qk = spec.qk_nope_head_dim + spec.qk_rope_head_dim
    a = f"{p}.self_attn"
    out: list[Tensor] = []
    if spec.q_lora_rank:
        out += [
            _lin(f"{a}.q_a_proj.weight", spec.q_lora_rank, h, "attn_latent", mtp),
            _vec(f"{a}.q_a_layernorm.weight", spec.q_lora_rank, "norm", mtp),
            _lin(f"{a}.q_b_proj.weight", n * qk, spec.q_lora_rank, "attn_q", mtp),
        ]
    else:
        out.append(_lin(f"{a}.q_proj.weight", n * qk, h, "attn_q", mtp))
    out += [
        _lin(
            f"{a}.kv_a_proj_with_mqa.weight",
            spec.kv_lora_rank + spec.qk_rope_head_dim,
            h,
            "attn_latent",
            mtp,
        ),
        _vec(f"{a}.kv_a_layernorm.weight", spec.kv_lora_rank, "norm", mtp),
        _lin(
            f"{a}.kv_b_proj.weight",
            n * (spec.qk_nope_head_dim + spec.v_head_dim),
            spec.kv_lora_rank,
            "attn_q",
            mtp,
        ),
        _lin(f"{a}.o_proj.weight", h, n * spec.v_head_dim, "attn_o", mtp),
    ]
    if spec.index_head_dim:
        # DeepSeek-V3.2 lightning indexer (vLLM deepseek_v2.py Indexer): wq_b and wk are
        # replicated FP8 linears, k_norm a LayerNorm with bias, weights_proj stays bf16.
        ih, hd = spec.index_n_heads, spec.index_head_dim
        x = f"{a}.indexer"
        out += [
            _lin(f"{x}.wq_b.weight", ih * hd, spec.q_lora_rank, "attn_latent", mtp),
            _lin(f"{x}.wk.weight", hd, h, "attn_latent", mtp),
            _vec(f"{x}.k_norm.weight", hd, "norm", mtp),
            _vec(f"{x}.k_norm.bias", hd, "norm", mtp),
            Tensor(f"{x}.weights_proj.weight", (ih, h), "indexer", in_mtp=mtp),
        ]
    return out


def _dense_mlp(spec: ModelSpec, p: str, mtp: bool, i: int = -1) -> list[Tensor]:
    h, inter = spec.hidden_size, spec.intermediate_size
    if 0 <= i < len(spec.layer_intermediate_sizes):
        inter = spec.layer_intermediate_sizes[i]
    m = f"{p}.mlp"
    if spec.fused_gate_up:
        gate, up = f"{m}.gate_up_proj.weight[gate]", f"{m}.gate_up_proj.weight[up]"
    else:
        gate, up = f"{m}.gate_proj.weight", f"{m}.up_proj.weight"
    if not spec.mlp_gated:  # Nemotron-H: up -> squared ReLU -> down
        return [
            _lin(f"{m}.up_proj.weight", inter, h, "mlp", mtp),
            _lin(f"{m}.down_proj.weight", h, inter, "mlp", mtp),
        ]
    return [
        _lin(gate, inter, h, "mlp", mtp),
        _lin(up, inter, h, "mlp", mtp),
        _lin(f"{m}.down_proj.weight", h, inter, "mlp", mtp),
    ]


def _moe(spec: ModelSpec, p: str, mtp: bool) -> list[Tensor]:
    h, e, inter = spec.hidden_size, spec.num_experts, spec.moe_intermediate_size
    frac = spec.experts_per_token / e
    m = f"{p}.mlp"
    out = [Tensor(f"{m}.gate.weight", (e, h), "router", in_mtp=mtp)]  # routers stay float
    if spec.router_bias:
        out.append(_vec(f"{m}.gate.bias", e, "router", mtp))
    if spec.router_score_bias:
        out.append(_vec(f"{m}.gate.e_score_correction_bias", e, "router", mtp, dtype="fp32"))
    if spec.expert_bias:
        # gpt-oss stores experts fused and stacked: gate_up [E, 2I, H] and down [E, H, I].
        out += [
            _lin(f"{m}.experts.gate_up_proj", 2 * inter, h, "expert", mtp, lead=e, frac=frac),
            _vec(f"{m}.experts.gate_up_proj_bias", 2 * inter, "bias", mtp, lead=e, frac=frac),
            _lin(f"{m}.experts.down_proj", h, inter, "expert", mtp, lead=e, frac=frac),
            _vec(f"{m}.experts.down_proj_bias", h, "bias", mtp, lead=e, frac=frac),
        ]
    else:
        if spec.mlp_gated:  # Nemotron-H experts are up/down only (squared ReLU)
            g = f"{m}.experts.gate_proj.weight"
            out.append(_lin(g, inter, h, "expert", mtp, lead=e, frac=frac))
        out += [
            _lin(f"{m}.experts.up_proj.weight", inter, h, "expert", mtp, lead=e, frac=frac),
            _lin(f"{m}.experts.down_proj.weight", h, inter, "expert", mtp, lead=e, frac=frac),
        ]
    if spec.num_shared_experts:
        si = spec.shared_expert_intermediate_size or spec.num_shared_experts * inter
        s = f"{m}.shared_experts"
        if spec.mlp_gated:
            out.append(_lin(f"{s}.gate_proj.weight", si, h, "shared_expert", mtp))
        out += [
            _lin(f"{s}.up_proj.weight", si, h, "shared_expert", mtp),
            _lin(f"{s}.down_proj.weight", h, si, "shared_expert", mtp),
        ]
        if spec.shared_expert_gate:
            out.append(Tensor(f"{m}.shared_expert_gate.weight", (1, h), "router", in_mtp=mtp))
    return out
