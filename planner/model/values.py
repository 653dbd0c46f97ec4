"""Frozen domain values that flow through the pipeline (model -> footprint -> ... -> plan)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

# A Hugging Face repository id (org/name): what vLLM on a machine can download a model by
HF_ID = re.compile(r"^[\w.\-]+/[\w.\-]+$")

# Roles a tensor plays. Quantization formats decide by role what they quantize, and tensor
# parallelism decides by role how a tensor is split (see footprint.py).
Role = Literal[
    "embed",  # token embedding (vocab-parallel under TP)
    "lm_head",  # output projection (vocab-parallel)
    "norm",  # RMSNorm / LayerNorm weights (replicated)
    "attn_q",  # query-side linear (column-parallel over heads)
    "attn_kv",  # key/value linear (split over KV heads, replicated when kv_heads < tp)
    "attn_o",  # output projection (row-parallel)
    "attn_latent",  # MLA down-projections (ReplicatedLinear in vLLM)
    "mlp",  # dense MLP linear (split)
    "expert",  # routed expert linear (split)
    "shared_expert",  # always-on expert linear (split)
    "router",  # MoE gate (replicated, never quantized)
    "bias",  # a linear's bias (kept in the activation dtype)
    "sink",  # gpt-oss attention sinks (split over heads)
    "vision",  # vision tower / projector (split)
    "mtp",  # multi-token-prediction extras stored in the checkpoint, unused when serving
    "ssm",  # Mamba / Gated DeltaNet per-channel or per-head parameters (split over heads)
    "indexer",  # DeepSeek-V3.2 indexer head weights (replicated, never quantized)
]

TensorDtype = str  # "bf16", "fp16", "fp32", "fp8", "int8", "int4", "fp4", or "gguf:<TYPE>"


@dataclass(frozen=True, slots=True)
class Tensor:
    """One stored tensor: a name, a logical shape (out, in for linears) and its role.

    ``moe_fraction`` < 1 marks routed-expert tensors: the share of them a token activates.
    ``nbytes`` is set only when the bytes are known exactly from a file (GGUF).
    """

    name: str
    shape: tuple[int, ...]
    role: Role
    linear: bool = False
    moe_fraction: float = 1.0
    in_mtp: bool = False
    dtype: TensorDtype | None = None
    nbytes: int | None = None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True, slots=True)
class VisionSpec:
    """A vision tower and its projector, stored beside the language model.

    ``kind`` picks the tensor layout in architecture.py: "siglip" (Gemma 3: SigLIP with an
    RMS-normed linear projector), "pixtral" (Mistral 3: Pixtral encoder, patch merger and a
    two-layer projector), "llama4" (Llama 4: a ViT with a class token, a pixel-shuffle
    adapter and a one-matrix projector), "qwen3_vl" (Qwen3-VL: a ViT with 3-D patches, a 2x2
    patch merger and DeepStack mergers).
    """

    hidden_size: int
    intermediate_size: int
    num_layers: int
    patch_size: int
    image_size: int
    num_channels: int = 3
    kind: str = "siglip"
    spatial_merge_size: int = 1  # pixtral: patches merged 2x2 before the projector
    projector_bias: bool = False
    # llama4: the pixel-shuffle adapter's widths and the projector's input width
    projector_input_dim: int = 0
    projector_output_dim: int = 0  # qwen3_vl: the mergers' output width (out_hidden_size)
    vision_output_dim: int = 0
    # qwen3_vl: video patches span temporal_patch_size frames; a learned position table; one
    # extra "deepstack" merger per layer named in deepstack_visual_indexes
    temporal_patch_size: int = 1
    num_position_embeddings: int = 0
    deepstack_mergers: int = 0


@dataclass(frozen=True, slots=True)
class RecurrentSpec:
    """The recurrent mixer of hybrid models: Gated DeltaNet (Qwen3-Next) or Mamba-2 (Nemotron-H,
    Granite 4.0-H). Each such layer keeps a fixed per-sequence state instead of a KV cache.

    Gated DeltaNet: ``num_heads`` value heads of ``head_dim``, ``num_k_heads`` key heads of
    ``head_k_dim``. Mamba-2: ``num_heads`` heads of ``head_dim`` (d_inner = heads x head_dim),
    ``n_groups`` B/C groups of ``state_size``.
    """

    kind: str  # "gdn" | "mamba2"
    num_heads: int
    head_dim: int
    conv_kernel: int
    num_k_heads: int = 0
    head_k_dim: int = 0
    n_groups: int = 0
    state_size: int = 0
    conv_bias: bool = False  # Mamba-2 conv1d bias
    state_dtype: str | None = None  # SSM/recurrent state dtype when the config pins one (fp32)

    @property
    def inner_size(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def conv_dim(self) -> int:
        if self.kind == "gdn":
            return 2 * self.num_k_heads * self.head_k_dim + self.inner_size
        return self.inner_size + 2 * self.n_groups * self.state_size


@dataclass(frozen=True, slots=True)
class QuantConfig:
    """How a checkpoint's weights are stored, or how a user asks them to be.

    ``format`` is a key of ``planner.model.quant.FORMATS``; the other fields override the format's
    defaults when a checkpoint's quantization config says otherwise.
    """

    format: str
    group_size: int | None = None
    block: tuple[int, int] | None = None
    keep_unquantized: tuple[str, ...] = ()  # module-name patterns left at the float dtype
    static_activation_scales: bool = False
    source: str = "checkpoint"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Architecture facts of one model, nothing about how it is served."""

    name: str
    family: str  # llama, mistral, mixtral, qwen2, qwen3, qwen3_moe, gemma2, gemma3, phi3, ...
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    dtype: str = "bf16"
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    # OLMo 2 / MiniMax-M2 normalise q and k over all heads at once (weights num_heads x head_dim)
    # instead of Qwen3's per-head (head_dim) norm.
    qk_norm_full_width: bool = False
    norms_per_layer: int = 2
    fused_qkv: bool = False
    fused_gate_up: bool = False
    # Mixture of experts
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    num_shared_experts: int = 0
    shared_expert_intermediate_size: int = 0
    first_dense_layers: int = 0
    # Llama 4 interleaves: layer i is MoE when (i + 1) % moe_layer_step == 0, dense otherwise.
    moe_layer_step: int = 1
    expert_bias: bool = False  # gpt-oss experts carry biases
    router_bias: bool = False
    router_score_bias: bool = False  # DeepSeek-V3 e_score_correction_bias (fp32)
    # Multi-head latent attention (DeepSeek)
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # DeepSeek-V3.2 sparse attention: a lightning indexer per layer with its own per-token cache
    index_n_heads: int = 0
    index_head_dim: int = 0
    mtp_layers: int = 0
    # Attention layout
    # Per layer: attention "full" / "sliding" / "chunked", recurrent "linear" (Gated DeltaNet) or
    # "mamba", or "none" (no mixer: Nemotron-H MLP layers). Empty = all full attention.
    layer_types: tuple[str, ...] = ()
    # Per layer FFN "dense" / "moe" / "none" when the config says so (Nemotron-H); empty = derive.
    ffn_types: tuple[str, ...] = ()
    recurrent: RecurrentSpec | None = None
    attn_output_gate: bool = False  # Qwen3-Next: q_proj also emits a per-channel output gate
    shared_expert_gate: bool = False  # Qwen2-MoE style sigmoid gate on the shared expert
    mlp_gated: bool = True  # False: up/down only (Nemotron-H squared-ReLU MLP)
    # DeciLM / Nemotron-NAS: each layer's own MLP width (0 where the layer has no MLP)
    layer_intermediate_sizes: tuple[int, ...] = ()
    mtp_style: str = "deepseek"  # "deepseek": own embedding + head copies; "qwen3_next": fc + norms
    sliding_window: int | None = None
    # rope_scaling of type "linear" (Gemma 3's global layers); see scaled_rope_cache_bytes
    linear_rope_factor: float = 0.0
    # Llama 4 chunked local attention: "chunked" layers attend within chunks of this many tokens.
    attention_chunk_size: int | None = None
    attention_sinks: bool = False
    # vLLM must run code from the model's repository (`--trust-remote-code`): Kimi K2's
    # tokenizer (hfconfig.REMOTE_CODE says why, per model type)
    trust_remote_code: bool = False
    vision: VisionSpec | None = None
    quant: QuantConfig | None = None
    # Provenance
    source: str = "config"  # registry | config | hf | gguf | guess
    source_ref: str = ""
    # The Hub commit the config was read at (hf source): the plan serves that commit
    revision: str | None = None
    is_guess: bool = False
    notes: tuple[str, ...] = ()
    published_params: int | None = None  # from the registry, with its source
    checkpoint_total_size: int | None = None  # safetensors index total_size, when known
    # Exact tensors when read from a file (GGUF); otherwise derived from the shape.
    tensors: tuple[Tensor, ...] | None = None
    gguf_file_type: str | None = None

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def sliding_layer_count(self) -> int:
        return sum(1 for t in self.layer_types if t == "sliding")

    def is_moe_layer(self, i: int) -> bool:
        """Whether decoder layer ``i`` has routed experts (MTP layers count as their index)."""
        if self.ffn_types and i < len(self.ffn_types):
            return self.ffn_types[i] == "moe"
        if not self.is_moe or i < self.first_dense_layers:
            return False
        return (i + 1) % self.moe_layer_step == 0

    @property
    def scaled_rope_cache_bytes(self) -> int:
        """A linearly scaled RoPE's cos/sin cache, on every GPU from load on: vLLM builds
        max_position_embeddings x factor rows of head_dim fp32 values
        (LinearScalingRotaryEmbedding._compute_cos_sin_cache, torch.float; charged at fp32), and
        the sliding layers' unscaled cache beside it. 0 without linear scaling."""
        if not self.linear_rope_factor:
            return 0
        rows = self.max_position_embeddings * (self.linear_rope_factor + bool(self.sliding_window))
        return int(rows) * self.head_dim * 4

    def ffn_kind(self, i: int) -> str:
        """ "dense", "moe" or "none" for decoder layer ``i``."""
        if self.ffn_types and i < len(self.ffn_types):
            return self.ffn_types[i]
        return "moe" if self.is_moe_layer(i) else "dense"

    def mixer_kind(self, i: int) -> str:
        """ "attention", "linear", "mamba" or "none" for decoder layer ``i`` (MTP: attention)."""
        if i >= len(self.layer_types):
            return "attention"
        t = self.layer_types[i]
        return t if t in {"linear", "mamba", "none"} else "attention"

    @property
    def attention_layer_count(self) -> int:
        return sum(1 for i in range(self.num_layers) if self.mixer_kind(i) == "attention")

    @property
    def recurrent_layer_count(self) -> int:
        return sum(1 for t in self.layer_types if t in {"linear", "mamba"})


@dataclass(frozen=True, slots=True)
class TPFootprint:
    """Per-GPU memory of one tensor-parallel layout, in bytes."""

    tp: int
    valid: bool
    reason: str | None
    weight_bytes_per_gpu: int
    kv_bytes_per_gpu: int
    overhead_bytes_per_gpu: int
    kv_bytes_per_token_per_gpu: int
    kv_bytes_per_request_per_gpu: int = 0  # one request of the footprint's context
    state_bytes_per_request_per_gpu: int = 0  # included in the KV figures above

    def max_concurrency(self, capacity_bytes: int, gpu_memory_utilization: float) -> int:
        """Requests of the footprint's context that fit on a card of ``capacity_bytes`` under
        vLLM's ``gpu_memory_utilization`` (0 when this layout cannot run)."""
        if not self.valid or self.kv_bytes_per_request_per_gpu <= 0:
            return 0
        free = int(capacity_bytes * gpu_memory_utilization)
        free -= self.weight_bytes_per_gpu + self.overhead_bytes_per_gpu
        return max(0, free // self.kv_bytes_per_request_per_gpu)

    @property
    def total_bytes_per_gpu(self) -> int:
        return self.weight_bytes_per_gpu + self.kv_bytes_per_gpu + self.overhead_bytes_per_gpu


@dataclass(frozen=True, slots=True)
class Footprint:
    """Exact parameters and bytes of a model at a quantization, with per-TP memory."""

    model: ModelSpec
    quant_format: str
    kv_cache_dtype: str
    context_tokens: int
    concurrency: int
    gpu_memory_utilization: float
    total_params: int
    active_params: int
    mtp_params: int
    stored_elements: int  # parameters plus quantization scales/zeros as stored elements
    weight_bytes: int
    weight_bytes_by_dtype: dict[str, int]
    kv_bytes_per_token: int  # TP=1, summed over full-attention-equivalent layers
    kv_bytes_per_request: int  # TP=1, at context_tokens, sliding layers capped, block-rounded
    per_tp: tuple[TPFootprint, ...]
    notes: tuple[str, ...] = ()
    # Hybrid models: the fixed recurrent state one sequence holds (TP=1, as vLLM pads it to the
    # attention page), included in kv_bytes_per_request; 0 for pure-attention models.
    state_bytes_per_request: int = 0
