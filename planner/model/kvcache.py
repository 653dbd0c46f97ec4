"""KV-cache bytes per token and per request on one GPU, as vLLM's KV cache manager lays them
out (pure): GQA, MLA and sparse-MLA pages, sliding-window and chunked-local layers held at their
window, the recurrent state pages of hybrid models."""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.errors import UsageError
from planner.model.recurrent import state_bytes_per_layer
from planner.model.values import ModelSpec

BLOCK_TOKENS = 16  # vLLM's default KV block size on CUDA
LOCAL_KINDS = ("sliding", "chunked")  # attention layers that hold a window, not the context


def kv_bytes_per_token(spec: ModelSpec, tp: int, kv_cache_dtype: str) -> tuple[int, int]:
    """(bytes per token per GPU of one full-attention layer, number of layers) as vLLM sizes it.

    GQA: 2 (K and V) x max(1, kv_heads // tp) x head_dim x dtype bytes per layer.
    MLA: one latent of kv_lora_rank + qk_rope_head_dim values per layer, not split by TP.
    """
    dtype_bytes = kv_dtype_bytes(kv_cache_dtype)
    if spec.is_mla and spec.index_head_dim:
        # DeepSeek-V3.2 (sparse MLA): FP8 caches use FlashMLA's fp8_ds_mla record of 656 bytes
        # (vllm/v1/attention/backends/mla/flashmla_sparse.py); beside it the indexer keeps
        # index_head_dim FP8 values + one fp32 scale per 128 per token (DeepseekV32IndexerCache:
        # 128 + 4 = 132 bytes), whatever --kv-cache-dtype says.
        latent = 656 if dtype_bytes == 1 else (spec.kv_lora_rank + spec.qk_rope_head_dim) * 2
        per_layer = latent + spec.index_head_dim + spec.index_head_dim // 128 * 4
    elif spec.is_mla:
        per_layer = (spec.kv_lora_rank + spec.qk_rope_head_dim) * dtype_bytes
    else:
        per_layer = 2 * max(1, spec.num_kv_heads // tp) * spec.head_dim * dtype_bytes
    # Recurrent (hybrid) and mixer-less layers keep no per-token cache.
    return per_layer, spec.attention_layer_count


def kv_dtype_bytes(kv_cache_dtype: str) -> int:
    if kv_cache_dtype == "auto":
        return 2
    if kv_cache_dtype in {"fp8", "fp8_e4m3", "fp8_e5m2"}:
        return 1
    raise UsageError(
        f"unknown --kv-cache-dtype '{kv_cache_dtype}'", "valid: auto, fp8, fp8_e4m3, fp8_e5m2"
    )


def _group_size(counts: list[int]) -> int:
    """The layer-group size of vLLM's hybrid KV cache manager: the smallest layer type's
    count, or the largest's when within 1.5x of it. Each type is padded to whole groups and
    every group takes a page in each of its group-size slots, so padding costs memory
    (vllm/v1/core/kv_cache_utils.py _get_kv_cache_groups_uniform_page_size: "Add %d padding
    layers, may waste at most %.2f%% KV cache memory")."""
    group = min(counts)
    return max(counts) if max(counts) < group * 1.5 else group


@dataclass(frozen=True, slots=True)
class HybridLayout:
    """How vLLM's hybrid KV cache manager lays out a model with recurrent layers on one GPU.

    One block pool with one page size: an attention page (block_tokens tokens of one layer)
    must hold a recurrent state, so block_tokens grows to 16 * ceil(state / (16 * per-token
    bytes)) and the state page is padded to the attention page
    (vllm/platforms/interface.py _align_hybrid_block_size). Layers are grouped by type into
    groups of group_size, each type padded to whole groups (see _group_size).
    """

    block_tokens: int
    page_bytes: int  # one layer's page: block_tokens of attention KV, or one padded state
    group_size: int
    attention_groups: int
    state_groups: int
    state_bytes_unpadded: int  # one sequence's state over all recurrent layers


def hybrid_layout(spec: ModelSpec, tp: int, kv_cache_dtype: str) -> HybridLayout | None:
    if spec.recurrent is None or not spec.recurrent_layer_count:
        return None
    per_token, attn_layers = kv_bytes_per_token(spec, tp, kv_cache_dtype)
    state = state_bytes_per_layer(spec.recurrent, tp, spec.dtype)
    block = BLOCK_TOKENS * max(1, math.ceil(state / (BLOCK_TOKENS * per_token)))
    group = _group_size([n for n in (attn_layers, spec.recurrent_layer_count) if n])
    return HybridLayout(
        block_tokens=block,
        page_bytes=block * per_token,
        group_size=group,
        attention_groups=math.ceil(attn_layers / group),
        state_groups=math.ceil(spec.recurrent_layer_count / group),
        state_bytes_unpadded=state * spec.recurrent_layer_count,
    )


def state_bytes_per_request(spec: ModelSpec, tp: int, kv_cache_dtype: str = "auto") -> int:
    """The fixed recurrent state one sequence holds on one GPU, as allocated (padded pages,
    padded groups); 0 for models without recurrent layers. It does not grow with context."""
    lay = hybrid_layout(spec, tp, kv_cache_dtype)
    return 0 if lay is None else lay.group_size * lay.page_bytes * lay.state_groups


def resident_tokens(prompt: int, output: int) -> int:
    """Tokens a request holds in the KV cache on average over its life under saturation: the
    prompt and half the output. vLLM takes KV blocks as tokens are computed (allocate_slots),
    preempting a running request when the cache runs out (docs.vllm.ai/en/v0.14.0/configuration/
    optimization/, "Preemption"), so a saturated cache runs about free / this many at once."""
    return prompt + math.ceil(output / 2)


def kv_bytes_per_request(spec: ModelSpec, tp: int, kv_cache_dtype: str, context: int) -> int:
    """KV bytes one request of `context` tokens holds on one GPU, in whole 16-token blocks;
    sliding-window and chunked-local layers hold at most their window (see _local_tokens).
    For hybrid models: attention KV in the enlarged hybrid blocks plus the per-sequence
    recurrent state, so that charging this per concurrent request charges the state too."""
    lay = hybrid_layout(spec, tp, kv_cache_dtype)
    if lay is not None:
        blocks = math.ceil(context / lay.block_tokens)
        return lay.group_size * lay.page_bytes * (lay.attention_groups * blocks + lay.state_groups)
    per_layer, _ = kv_bytes_per_token(spec, tp, kv_cache_dtype)
    held = attention_layers_held(spec)
    tokens = held["full"] * (math.ceil(context / BLOCK_TOKENS) * BLOCK_TOKENS)
    tokens += sum(held[k] * _local_tokens(spec, k, context) for k in LOCAL_KINDS if held[k])
    return tokens * per_layer


def attention_layers_held(spec: ModelSpec) -> dict[str, int]:
    """Attention layers per kind as vLLM allocates them: "full", "sliding" (within
    sliding_window) and "chunked" (within attention_chunk_size), each padded to whole layer
    groups when there is more than one kind (see _group_size). vLLM's hybrid KV cache
    manager holds the last two at their window, chunked local attention (Llama 4) included:
    in vLLM 0.33,
    VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE defaults to 1 (vllm/envs.py; turned
    on by vllm-project/vllm#29627; #46553, which proposed turning it off again, was closed
    unmerged), so vllm/config/vllm.py no longer disables the manager for such models."""
    counts = {"full": 0, "sliding": 0, "chunked": 0}
    for i in range(spec.num_layers):
        if spec.mixer_kind(i) != "attention":
            continue
        kind = spec.layer_types[i] if i < len(spec.layer_types) else "full"
        if kind == "sliding" and spec.sliding_window:
            counts["sliding"] += 1
        elif kind == "chunked" and spec.attention_chunk_size:
            counts["chunked"] += 1
        else:
            counts["full"] += 1
    present = [n for n in counts.values() if n]
    if len(present) > 1:  # padded to whole layer groups: Gemma 3 27B's 52 sliding layers to 60
        group = _group_size(present)
        counts = {k: math.ceil(n / group) * group for k, n in counts.items()}
    return counts


def _local_tokens(spec: ModelSpec, kind: str, context: int) -> int:
    """Tokens a sliding-window or chunked-local layer holds for a decoding request of
    ``context`` tokens, at most the request's own blocks: the window in whole blocks plus the
    block it straddles; the current chunk (chunks start on block boundaries, and vLLM frees
    the blocks of the chunks before it)."""
    own = math.ceil(context / BLOCK_TOKENS) * BLOCK_TOKENS
    if kind == "chunked":
        return min(own, math.ceil(spec.attention_chunk_size / BLOCK_TOKENS) * BLOCK_TOKENS)
    window = math.ceil((spec.sliding_window - 1) / BLOCK_TOKENS) * BLOCK_TOKENS + BLOCK_TOKENS
    return min(own, window)


def _startup_tokens(spec: ModelSpec, kind: str, context: int, batched_tokens: int) -> int:
    """Tokens vLLM's start-up check charges one such layer (max_memory_usage_bytes in
    vllm/v1/kv_cache_interface.py): min(window - 1 + max_num_batched_tokens, max_model_len)
    in blocks plus one (SlidingWindowSpec); min(chunk + max_num_batched_tokens,
    max_model_len) in blocks (ChunkedLocalAttentionSpec)."""
    if kind == "chunked":
        held = min(spec.attention_chunk_size + batched_tokens, context)
        return math.ceil(held / BLOCK_TOKENS) * BLOCK_TOKENS
    held = min(spec.sliding_window - 1 + batched_tokens, context)
    return (math.ceil(held / BLOCK_TOKENS) + 1) * BLOCK_TOKENS


def sliding_prefill_reserve(
    spec: ModelSpec, tp: int, kv_cache_dtype: str, context: int, batched_tokens: int
) -> int:
    """KV bytes per GPU beyond kv_bytes_per_request's windows that sliding-window and
    chunked-local layers need: prefilling a chunk of up to ``batched_tokens``, such a layer
    holds its window plus the chunk, as vLLM's start-up check charges it (_startup_tokens).
    Decoding requests hold their window again, so this is once per replica. 0 without such
    layers, and for hybrid recurrent layouts (own pages)."""
    held = attention_layers_held(spec)
    if not any(held[k] for k in LOCAL_KINDS) or hybrid_layout(spec, tp, kv_cache_dtype):
        return 0
    per_layer, _ = kv_bytes_per_token(spec, tp, kv_cache_dtype)
    extra = 0
    for k in (k for k in LOCAL_KINDS if held[k]):
        startup = _startup_tokens(spec, k, context, batched_tokens)
        extra += held[k] * max(0, startup - _local_tokens(spec, k, context))
    return extra * per_layer
