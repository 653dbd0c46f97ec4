"""Tensors of the vision towers that vision-language checkpoints store beside the decoder.

vLLM loads the tower with the model (it is part of the served weights), so its parameters count
towards the published total and its bytes towards GPU memory. The towers stay in the float dtype
here: quantized releases of these models keep the tower unquantized as a rule.
"""

from __future__ import annotations

from planner.model.values import ModelSpec, Tensor, VisionSpec

# Qwen3-VL's processor default: images up to 16,777,216 pixels (longest_edge), 32x32 per token
QWEN3_VL_MAX_ITEM_TOKENS = 16384


def vision_tensors(vs: VisionSpec, text_hidden: int) -> list[Tensor]:
    """The tower's tensors for the layout ``vs.kind`` names."""
    if vs.kind == "siglip":
        return _siglip(vs, text_hidden)
    if vs.kind == "pixtral":
        return _pixtral(vs, text_hidden)
    if vs.kind == "llama4":
        return _llama4(vs, text_hidden)
    if vs.kind == "qwen3_vl":
        return _qwen3_vl(vs)
    raise ValueError(f"unknown vision tower kind {vs.kind!r}")  # parse_config never builds one


def _t(name: str, *shape: int) -> Tensor:
    return Tensor(name, tuple(shape), "vision")


def _biased_block(p: str, hv: int, iv: int, out_proj: str, norms: tuple[str, str]) -> list[Tensor]:
    """One ViT encoder layer with biases everywhere (SigLIP, Llama 4's vision model): q/k/v and
    the output projection, two LayerNorms (weight and bias), and a two-layer fc1/fc2 MLP."""
    out: list[Tensor] = []
    for proj in ("q_proj", "k_proj", "v_proj", out_proj):
        out += [_t(f"{p}.self_attn.{proj}.weight", hv, hv), _t(f"{p}.self_attn.{proj}.bias", hv)]
    for ln in norms:
        out += [_t(f"{p}.{ln}.weight", hv), _t(f"{p}.{ln}.bias", hv)]
    return [
        *out,
        _t(f"{p}.mlp.fc1.weight", iv, hv),
        _t(f"{p}.mlp.fc1.bias", iv),
        _t(f"{p}.mlp.fc2.weight", hv, iv),
        _t(f"{p}.mlp.fc2.bias", hv),
    ]


def _siglip(vs: VisionSpec, text_hidden: int) -> list[Tensor]:
    """Gemma 3: SigLIP encoder (biased linears, LayerNorms, learned positions) and a projector
    of one RMSNorm and one matrix (vllm/model_executor/models/gemma3_mm.py, siglip.py)."""
    hv, iv = vs.hidden_size, vs.intermediate_size
    patches = (vs.image_size // vs.patch_size) ** 2
    e = "vision_tower.vision_model.embeddings"
    out = [
        _t(f"{e}.patch_embedding.weight", hv, vs.num_channels, vs.patch_size, vs.patch_size),
        _t(f"{e}.patch_embedding.bias", hv),
        _t(f"{e}.position_embedding.weight", patches, hv),
    ]
    for i in range(vs.num_layers):
        out += _biased_block(
            f"vision_tower.vision_model.encoder.layers.{i}", hv, iv, "out_proj",
            ("layer_norm1", "layer_norm2"),
        )  # fmt: skip
    out += [
        _t("vision_tower.vision_model.post_layernorm.weight", hv),
        _t("vision_tower.vision_model.post_layernorm.bias", hv),
        _t("multi_modal_projector.mm_input_projection_weight", hv, text_hidden),
        _t("multi_modal_projector.mm_soft_emb_norm.weight", hv),
    ]
    return out


def _pixtral(vs: VisionSpec, text_hidden: int) -> list[Tensor]:
    """Mistral 3 (Mistral-Small-3.1/3.2): the Pixtral encoder - a bias-free patch conv, RMSNorms,
    bias-free attention and a SwiGLU MLP per layer, 2-D RoPE so no position table - then the
    projector: RMSNorm, a patch merger (spatial_merge_size^2 patches -> one, bias-free) and a
    two-layer MLP into the text width.
    https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/models/pixtral.py
    https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/models/mistral3.py
    """
    hv, iv, ps = vs.hidden_size, vs.intermediate_size, vs.patch_size
    out = [
        _t("vision_tower.patch_conv.weight", hv, vs.num_channels, ps, ps),
        _t("vision_tower.ln_pre.weight", hv),
    ]
    for i in range(vs.num_layers):
        p = f"vision_tower.transformer.layers.{i}"
        out += [_t(f"{p}.attention.{n}.weight", hv, hv) for n in ("q_proj", "k_proj", "v_proj")]
        out += [
            _t(f"{p}.attention.o_proj.weight", hv, hv),
            _t(f"{p}.attention_norm.weight", hv),
            _t(f"{p}.ffn_norm.weight", hv),
            _t(f"{p}.feed_forward.gate_proj.weight", iv, hv),
            _t(f"{p}.feed_forward.up_proj.weight", iv, hv),
            _t(f"{p}.feed_forward.down_proj.weight", hv, iv),
        ]
    merged = hv * vs.spatial_merge_size**2
    m = "multi_modal_projector"
    out += [
        _t(f"{m}.norm.weight", hv),
        _t(f"{m}.patch_merger.merging_layer.weight", hv, merged),
        _t(f"{m}.linear_1.weight", text_hidden, hv),
        _t(f"{m}.linear_2.weight", text_hidden, text_hidden),
    ]
    if vs.projector_bias:
        out += [_t(f"{m}.linear_1.bias", text_hidden), _t(f"{m}.linear_2.bias", text_hidden)]
    return out


def _llama4(vs: VisionSpec, text_hidden: int) -> list[Tensor]:
    """Llama 4: an unfold-convolution patch embedding (one bias-free linear), a class token and
    a learned position table (patches + 1), LayerNorms with biases, biased attention and GELU
    MLP per layer, the pixel-shuffle adapter (two bias-free linears) and a bias-free projector.
    https://github.com/huggingface/transformers/blob/main/src/transformers/models/llama4/modeling_llama4.py
    https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/models/mllama4.py
    """
    hv, iv, ps = vs.hidden_size, vs.intermediate_size, vs.patch_size
    patches = (vs.image_size // ps) ** 2 + 1
    v = "vision_model"
    out = [
        _t(f"{v}.patch_embedding.linear.weight", hv, vs.num_channels * ps * ps),
        _t(f"{v}.class_embedding", hv),
        _t(f"{v}.positional_embedding_vlm", patches, hv),
    ]
    for ln in ("layernorm_pre", "layernorm_post"):
        out += [_t(f"{v}.{ln}.weight", hv), _t(f"{v}.{ln}.bias", hv)]
    for i in range(vs.num_layers):
        out += _biased_block(
            f"{v}.model.layers.{i}", hv, iv, "o_proj",
            ("input_layernorm", "post_attention_layernorm"),
        )  # fmt: skip
    a = f"{v}.vision_adapter.mlp"
    out += [
        _t(f"{a}.fc1.weight", vs.projector_input_dim, iv),
        _t(f"{a}.fc2.weight", vs.projector_output_dim, vs.projector_output_dim),
        _t("multi_modal_projector.linear_1.weight", text_hidden, vs.vision_output_dim),
    ]
    return out


def _qwen3_vl(vs: VisionSpec) -> list[Tensor]:
    """Qwen3-VL: a Conv3d patch embedding with bias (temporal_patch_size frames), a learned
    position table, blocks of LayerNorm (with bias) + fused biased qkv + proj + a two-matrix
    GELU MLP, then a merger (LayerNorm, 4h -> 4h -> out_hidden_size, biased) and one DeepStack
    merger per deepstack layer whose LayerNorm is over the merged 4h width.
    https://github.com/vllm-project/vllm/blob/main/vllm/model_executor/models/qwen3_vl.py
    """
    hv, iv, ps = vs.hidden_size, vs.intermediate_size, vs.patch_size
    merged = hv * vs.spatial_merge_size**2
    out_dim = vs.projector_output_dim
    v = "model.visual"
    out = [
        _t(f"{v}.patch_embed.proj.weight", hv, vs.num_channels, vs.temporal_patch_size, ps, ps),
        _t(f"{v}.patch_embed.proj.bias", hv),
        _t(f"{v}.pos_embed.weight", vs.num_position_embeddings, hv),
    ]
    for i in range(vs.num_layers):
        p = f"{v}.blocks.{i}"
        out += [
            _t(f"{p}.norm1.weight", hv), _t(f"{p}.norm1.bias", hv),
            _t(f"{p}.norm2.weight", hv), _t(f"{p}.norm2.bias", hv),
            _t(f"{p}.attn.qkv.weight", 3 * hv, hv), _t(f"{p}.attn.qkv.bias", 3 * hv),
            _t(f"{p}.attn.proj.weight", hv, hv), _t(f"{p}.attn.proj.bias", hv),
            _t(f"{p}.mlp.linear_fc1.weight", iv, hv), _t(f"{p}.mlp.linear_fc1.bias", iv),
            _t(f"{p}.mlp.linear_fc2.weight", hv, iv), _t(f"{p}.mlp.linear_fc2.bias", hv),
        ]  # fmt: skip
    mergers = [(f"{v}.merger", hv)]
    mergers += [(f"{v}.deepstack_merger_list.{k}", merged) for k in range(vs.deepstack_mergers)]
    for name, norm_width in mergers:
        out += [
            _t(f"{name}.norm.weight", norm_width),
            _t(f"{name}.norm.bias", norm_width),
            _t(f"{name}.linear_fc1.weight", merged, merged),
            _t(f"{name}.linear_fc1.bias", merged),
            _t(f"{name}.linear_fc2.weight", out_dim, merged),
            _t(f"{name}.linear_fc2.bias", out_dim),
        ]
    return out


def max_tokens_per_item(vs: VisionSpec) -> int:
    """Embeddings one image of the processor's largest size yields, as vLLM's multimodal budget
    counts them: Gemma 3 pools SigLIP's patches 4x4 (256); Pixtral merges patches 2x2 and adds
    one break per row (an upper bound); Llama 4 pixel-shuffles each 336-px tile to a quarter of
    its patches, up to 16 tiles and a global one; Qwen3-VL's 16,384 (its processor default)."""
    side = vs.image_size // vs.patch_size if vs.image_size else 0
    if vs.kind == "siglip":
        return side * side // 16
    if vs.kind == "pixtral":
        n = side // vs.spatial_merge_size
        return n * n + n
    if vs.kind == "llama4":
        return 17 * (side * side // 4)
    return QWEN3_VL_MAX_ITEM_TOKENS


def encoder_output_bytes(spec: ModelSpec, max_num_batched_tokens: int) -> int:
    """Vision embeddings vLLM's profile run keeps through the language model's dummy run, on
    each GPU: as many largest images as the encoder budget takes, the budget being
    max(max_num_batched_tokens, tokens per item) embeddings (compute_mm_encoder_budget in
    vllm/v1/core/encoder_cache_manager.py; profile_run in vllm/v1/worker/gpu_model_runner.py
    stores them in encoder_cache until the dummy run ends), each of the text width in the model
    dtype (Qwen3-VL: its merger width, once per DeepStack merger too). 0 without a tower."""
    vs = spec.vision
    if vs is None:
        return 0
    per_item = max_tokens_per_item(vs)
    budget = max(max_num_batched_tokens, per_item)
    width = vs.projector_output_dim if vs.kind == "qwen3_vl" else spec.hidden_size
    return budget // per_item * per_item * width * 2 * (1 + vs.deepstack_mergers)
