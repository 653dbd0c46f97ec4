"""Parameters, weight bytes, KV-cache bytes and runtime overhead of a model under vLLM (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.errors import UsageError
from planner.model.architecture import list_tensors
from planner.model.kvcache import (
    hybrid_layout,
    kv_bytes_per_request,
    kv_bytes_per_token,
    kv_dtype_bytes,
    state_bytes_per_request,
)
from planner.model.quant import FORMATS, QuantFormat, get_format, layer_index, tensor_bytes
from planner.model.tensor_parallel import expert_gpus, tp_problem
from planner.model.values import Footprint, ModelSpec, QuantConfig, Tensor, TPFootprint
from planner.model.vision import encoder_output_bytes

GIB = 1 << 30
# gpuplan's default, a little above vLLM's own 0.9 (--gpu-memory-utilization in
# https://docs.vllm.ai/en/latest/configuration/engine_args.html); projects always pass it.
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92
DEFAULT_CONTEXT = 8192
DEFAULT_TP_DEGREES = (1, 2, 4, 8)

# Runtime overhead inside vLLM's budget, besides weights and KV cache:
#   activation peak of the profile run (max_num_batched_tokens through the MLP or fused-MoE
#   workspace, plus fp32 logits for max_num_seqs sequences in the sampler), a constant for
#   non-torch memory and CUDA graphs, and TP and Blackwell allowances, fitted to the logs in
#   planner/decide/data/vllm_memory_logs.json as the largest residual, so the predicted KV cache
#   never exceeds a logged one (`python benchmarks/memory_accuracy.py` prints each margin). The
#   Blackwell cards of those logs (RTX 5090, RTX PRO 6000, compute capability 12.0) leave up to
#   1.1 GiB more outside the KV cache than the others; newer cards get that allowance too.
PROFILE_BATCHED_TOKENS = 2048  # vLLM V1 default max_num_batched_tokens for online serving
LARGE_GPU_BATCHED_TOKENS = 8192  # its default on >= 70 GiB cards but A100 (see below)
PROFILE_MAX_SEQS = 256  # vLLM default max_num_seqs
LARGE_GPU_MAX_NUM_SEQS = 1024  # ... and on the cards with the larger batched-token default
# The sampler warm-up holds several fp32 copies of the (max_num_seqs x vocab) logits (logits,
# softmax, sorted top-k/top-p, log-probs): fitted to the logged activation peaks.
SAMPLER_BYTES_PER_LOGIT = 36
# MXFP4 routed experts as loaded / as stored, besides the padding of the intermediate size to
# MXFP4_PAD: fitted as the largest ratio on the logged gpt-oss loads (see loaded_weight_bytes).
MXFP4_REPACK_FACTOR = 1.072
MXFP4_PAD = 128
OVERHEAD_CONSTANT_BYTES = int(0.75 * GIB)
BLACKWELL_ALLOWANCE_BYTES = int(1.1 * GIB)  # compute capability >= 10
# Tensor parallel adds NCCL / all-reduce buffers outside torch: little over PCIe (non-torch 0.25
# GiB at TP2 on RTX 4090s, m025; 0.21 at TP8 on L40S, m037: an assumption they do not contradict),
# more on NVSwitch (0.13 GiB at TP1 -> 0.54 at TP2 on H100, m009/m015; 1.38 at TP2 on H200, m044),
# fitted as the largest TP > 1 residual (m020, 4x H100, 7.96 GiB outside weights and KV).
TP_ALLOWANCE_BYTES = int(0.25 * GIB)
NVSWITCH_TP_ALLOWANCE_BYTES = int(1.3 * GIB)
# Data-parallel replicas of an MoE model (the experts shared, tokens exchanged every MoE layer):
# memory outside this model's terms that the one start-up record of the layout needs. gpustack's
# DeepSeek-V3.2 at TP1 x DP8 with expert parallelism on 8 H200 (vLLM 0.13.0, utilization 0.9)
# ran out of memory at its full 163,840-token context and started at 81,920 (its performance
# lab page, deepseek-v3.2/h200.md): without it the model starts the first with 3.35 GiB per GPU
# to spare. 4 GiB refuses it and keeps the second: an in-sample bound from one record (both of
# its sides), on the side of not over-promising; the cause (all2all buffers, sparse-attention
# workspaces) is not identified.
DP_MOE_ALLOWANCE_BYTES = int(4 * GIB)


@dataclass(frozen=True, slots=True)
class WeightBytes:
    total: int
    served: int  # what vLLM loads: everything but the multi-token-prediction extras
    by_dtype: dict[str, int]
    stored_elements: int
    tensors: tuple[tuple[Tensor, int], ...]  # each tensor with its bytes (served ones only)
    # The served bytes summed by (layer or FIRST/LAST stage, TP rule, routed expert?), so that
    # per-GPU sizes for any TP x PP are a short sum (ranking evaluates thousands of layouts).
    groups: tuple[tuple[int, str, bool, int], ...] = ()


FIRST_STAGE, LAST_STAGE = -1, -2


def count_params(spec: ModelSpec) -> tuple[int, int, int]:
    """(total, active, mtp) parameters. Total counts every stored tensor (MTP included),
    active counts what one token uses when serving (routed experts scaled by top-k / E)."""
    total = active = mtp = 0
    for t in list_tensors(spec):
        total += t.numel
        if t.in_mtp:
            mtp += t.numel
        else:
            active += round(t.numel * t.moe_fraction)
    return total, active, mtp


def resolve_format(spec: ModelSpec, quant: str | None) -> tuple[QuantFormat, QuantConfig | None]:
    """The format to size the model at: the checkpoint's own unless the user names another."""
    if spec.tensors is not None:
        fmt = QuantFormat(
            "gguf-file",
            "gguf",
            f"GGUF file ({spec.gguf_file_type})",
            0,
            quality_note="as stored in the GGUF file",
        )
        if quant and quant.lower() not in {"auto", "gguf", (spec.gguf_file_type or "").lower()}:
            raise UsageError(
                f"a GGUF file is sized as stored ({spec.gguf_file_type}); --quant {quant} "
                "does not apply",
                "drop --quant, or size the original model instead",
            )
        return fmt, None
    if spec.quant is not None:
        fmt = FORMATS[spec.quant.format]
        if quant and quant.lower() != "auto" and get_format(quant).name != fmt.name:
            raise UsageError(
                f"{spec.name} is a pre-quantized {fmt.name} checkpoint; it cannot be served "
                f"as {get_format(quant).name}",
                "use the unquantized base model to compare formats",
            )
        return fmt, spec.quant
    if quant and quant.lower() != "auto":
        fmt = get_format(quant)
        if fmt.kind == "mxfp4" and not spec.is_moe:
            raise UsageError(
                "mxfp4 quantizes MoE experts only (gpt-oss style)",
                "use nvfp4, awq or fp8 for dense models",
            )
        return fmt, None
    return FORMATS["bf16" if spec.dtype == "fp32" else spec.dtype], None


def weight_bytes(spec: ModelSpec, fmt: QuantFormat, qc: QuantConfig | None) -> WeightBytes:
    total = served = elements = 0
    by_dtype: dict[str, int] = {}
    served_tensors: list[tuple[Tensor, int]] = []
    for t in list_tensors(spec):
        parts = tensor_bytes(t, fmt, qc, spec)
        nbytes = sum(p.nbytes for p in parts)
        total += nbytes
        elements += t.numel + sum(p.scale_elements for p in parts)
        for p in parts:
            by_dtype[p.dtype] = by_dtype.get(p.dtype, 0) + p.nbytes
        if not t.in_mtp:
            served += nbytes
            served_tensors.append((t, nbytes))
    return WeightBytes(
        total,
        served,
        dict(sorted(by_dtype.items())),
        elements,
        tuple(served_tensors),
        _group(spec, served_tensors),
    )


def _tp_rule(t: Tensor) -> str:
    if t.role == "attn_kv":
        return "kv"
    if t.role in {"norm", "router", "attn_latent", "mtp", "indexer"}:
        return "replicate"  # MLA's down-projections are ReplicatedLinear in vLLM
    return "shard"


def _group(
    spec: ModelSpec, tensors: list[tuple[Tensor, int]]
) -> tuple[tuple[int, str, bool, int], ...]:
    sums: dict[tuple[int, str, bool], int] = {}
    for t, nbytes in tensors:
        layer = layer_index(t.name)
        if layer is None or layer >= spec.num_layers:
            layer = LAST_STAGE if t.role in {"lm_head", "norm"} else FIRST_STAGE
        expert = t.role == "expert" or (t.role == "bias" and t.moe_fraction < 1)
        key = (layer, _tp_rule(t), expert)
        sums[key] = sums.get(key, 0) + nbytes
    return tuple((k[0], k[1], k[2], v) for k, v in sorted(sums.items()))


def _rule_fraction(rule: str, spec: ModelSpec, tp: int) -> float:
    """Share of a tensor one GPU holds under tensor parallelism, as vLLM splits it."""
    if tp == 1 or rule == "replicate":
        return 1.0
    if rule == "kv":
        # KV heads split while there are enough; past that each GPU keeps one (replicated)
        return max(1, spec.num_kv_heads // tp) / spec.num_kv_heads
    return 1.0 / tp


def per_gpu_weight_bytes(spec: ModelSpec, wb: WeightBytes, tp: int, pp: int = 1) -> tuple[int, int]:
    """(weight bytes, routed-expert bytes) on the most loaded GPU of a TP x PP layout.

    Pipeline stages take contiguous layers; the embedding (and vision tower) sit on the first
    stage, the final norm and lm_head on the last."""
    totals = [0.0] * pp
    experts = [0.0] * pp
    for layer, rule, expert, nbytes in wb.groups:
        if layer == FIRST_STAGE:
            stage = 0
        elif layer == LAST_STAGE:
            stage = pp - 1
        else:
            stage = min(pp - 1, layer * pp // spec.num_layers)
        share = nbytes * _rule_fraction(rule, spec, tp)
        totals[stage] += share
        if expert:
            experts[stage] += share
    worst = max(range(pp), key=lambda i: totals[i])
    return math.ceil(totals[worst]), math.ceil(experts[worst])


def activation_bytes(
    spec: ModelSpec,
    tp: int,
    max_num_batched_tokens: int = PROFILE_BATCHED_TOKENS,
    max_num_seqs: int = PROFILE_MAX_SEQS,
    expert_parallel: bool = False,
    moe_dp: int = 1,
) -> int:
    """Peak activation of vLLM's profile run on one GPU: ``max_num_batched_tokens`` through the
    MLP (for MoE, the fused-MoE kernel's workspace, see moe_workspace_elements; with expert
    parallelism each GPU runs whole experts) and the sampler warm-up over ``max_num_seqs`` fp32
    logits rows (see the calibration note above). ``moe_dp`` data-parallel replicas share the
    MoE layers (planner.decide.perf.moe_dp_exchange_s): every replica's tokens pass through each
    GPU's experts, their width split over tp x moe_dp GPUs (no chunking of the gathered tokens
    assumed: an upper bound), and the gathered hidden states and their combine buffer hold the
    other replicas' tokens."""
    if spec.is_moe:
        width = 1 if expert_parallel else tp * moe_dp
        mlp = moe_workspace_elements(spec, width) * moe_dp
        shared = spec.num_shared_experts * spec.moe_intermediate_size  # dense MLP beside them
        if shared:
            mlp += 3 * (spec.shared_expert_intermediate_size or shared) // tp
        # dense layers beside the MoE ones (DeepSeek's first layers, Llama 4 Maverick's
        # alternate layers) may peak higher
        if any(spec.ffn_kind(i) == "dense" for i in range(spec.num_layers)):
            mlp = max(mlp, 3 * spec.intermediate_size // tp)
    else:
        mlp = 3 * spec.intermediate_size // tp
    gathered = 2 * (moe_dp - 1) * spec.hidden_size if spec.is_moe else 0
    per_token = (mlp + 4 * spec.hidden_size + gathered) * 2
    logits = max_num_seqs * spec.vocab_size * SAMPLER_BYTES_PER_LOGIT
    return max_num_batched_tokens * per_token + logits


def moe_workspace_elements(spec: ModelSpec, tp: int) -> int:
    """Elements per token of vLLM's fused-MoE workspace per GPU (n: expert width per GPU, K:
    hidden size): cache13 of top_k x max(2n, K) (gate/up output, reused for the down-projection
    output, top_k x K, not split by TP) and cache2 of top_k x n (fused_experts_impl in vLLM's
    fused_moe/fused_moe.py @13cb3e44, read 2026-11-30; fused Marlin MoE allocates the same)."""
    n = math.ceil(spec.moe_intermediate_size / tp)
    return spec.experts_per_token * (max(2 * n, spec.hidden_size) + n)


def overhead_bytes(
    spec: ModelSpec,
    tp: int,
    max_num_batched_tokens: int = PROFILE_BATCHED_TOKENS,
    max_num_seqs: int = PROFILE_MAX_SEQS,
    compute_capability: float | None = None,
    nvswitch: bool = False,
    expert_parallel: bool = False,
    moe_dp: int = 1,
) -> int:
    """Runtime memory besides weights and KV cache on one GPU: activation peak and the vision
    embeddings held through it, CUDA graphs, non-torch memory, TP buffers (also for the
    collectives of ``moe_dp`` replicas sharing MoE layers), a scaled RoPE cache."""
    group = expert_gpus(spec, tp, moe_dp)
    extra = (NVSWITCH_TP_ALLOWANCE_BYTES if nvswitch else TP_ALLOWANCE_BYTES) if group > 1 else 0
    if group > tp:  # data-parallel replicas sharing an MoE model's experts
        extra += DP_MOE_ALLOWANCE_BYTES
    if compute_capability is not None and compute_capability >= 10:
        extra += BLACKWELL_ALLOWANCE_BYTES
    act = activation_bytes(
        spec, tp, max_num_batched_tokens, max_num_seqs, expert_parallel, group // tp
    )
    act += encoder_output_bytes(spec, max_num_batched_tokens)
    return OVERHEAD_CONSTANT_BYTES + act + extra + spec.scaled_rope_cache_bytes


def default_batched_tokens(total_memory_bytes: int, gpu_name: str) -> int:
    """vLLM's default max_num_batched_tokens for `vllm serve` on a GPU: 8192 on cards of
    70 GiB or more except A100s, 2048 elsewhere (EngineArgs.get_batch_defaults in
    https://github.com/vllm-project/vllm/blob/main/vllm/engine/arg_utils.py, read 2026-11-30).
    The profile run's activation peak scales with it."""
    if total_memory_bytes >= 70 * GIB and "a100" not in gpu_name.lower():
        return LARGE_GPU_BATCHED_TOKENS
    return PROFILE_BATCHED_TOKENS


def default_max_num_seqs(total_memory_bytes: int, gpu_name: str) -> int:
    """vLLM's default max_num_seqs for `vllm serve`: 1024 where max_num_batched_tokens
    defaults to 8192, 256 elsewhere (same source). The sampler warm-up scales with it."""
    if default_batched_tokens(total_memory_bytes, gpu_name) == LARGE_GPU_BATCHED_TOKENS:
        return LARGE_GPU_MAX_NUM_SEQS
    return PROFILE_MAX_SEQS


def loaded_weight_bytes(
    spec: ModelSpec, fmt: QuantFormat, weights: int, experts: int, tp: int
) -> tuple[int, int]:
    """(weights, routed-expert part) per GPU as vLLM holds them after loading. MXFP4 experts
    are repacked for the MoE kernels and their per-GPU intermediate size padded to a multiple
    of 128, so they take more memory than in the checkpoint: gpt-oss-120b loads 65.97 GiB on
    one H100 (60.77 GiB checkpoint) and 17.22 GiB per A100 at TP4 (15.21 GiB), gpt-oss-20b
    13.72 GiB (12.82 GiB); planner/decide/data/vllm_memory_logs.json cites the logs. Other
    formats load at their checkpoint size (within 0.3% on the same logs)."""
    if fmt.name != "mxfp4" or not experts or not spec.moe_intermediate_size:
        return weights, experts
    inter = spec.moe_intermediate_size / tp
    padded = math.ceil(inter / MXFP4_PAD) * MXFP4_PAD
    grown = math.ceil(experts * MXFP4_REPACK_FACTOR * padded / inter)
    return weights + grown - experts, grown


def validate_positive(name: str, value: int) -> None:
    if value <= 0:
        raise UsageError(f"{name} must be a positive integer, got {value}")


def estimate_footprint(
    spec: ModelSpec,
    quant: str | None = None,
    *,
    context: int = DEFAULT_CONTEXT,
    concurrency: int = 1,
    kv_cache_dtype: str = "auto",
    gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
    tp_degrees: tuple[int, ...] = DEFAULT_TP_DEGREES,
) -> Footprint:
    """Exact parameters and bytes of `spec` at a quantization, and per-GPU memory per TP."""
    validate_positive("context", context)
    validate_positive("concurrency", concurrency)
    for tp in tp_degrees:
        validate_positive("tensor-parallel size", tp)
    if not 0 < gpu_memory_utilization <= 1:
        raise UsageError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")
    kv_dtype_bytes(kv_cache_dtype)
    fmt, qc = resolve_format(spec, quant)
    total, active, mtp = count_params(spec)
    wb = weight_bytes(spec, fmt, qc)
    per_layer, layers = kv_bytes_per_token(spec, 1, kv_cache_dtype)
    notes = list(spec.notes)
    if context > spec.max_position_embeddings:
        notes.append(
            f"context {context} exceeds the model's max_position_embeddings "
            f"({spec.max_position_embeddings}); vLLM refuses it without rope scaling"
        )
    if fmt.estimate:
        notes.append(
            f"{fmt.name} sizes follow llama.cpp's per-tensor mix rules approximately "
            "(within ~7% of published files); a real GGUF file (--gguf) is exact"
        )
    chunked = spec.layer_types.count("chunked")
    if chunked and spec.attention_chunk_size:
        notes.append(
            f"{chunked} of {layers} layers use chunked local attention "
            f"({spec.attention_chunk_size} tokens): vLLM's hybrid KV cache manager holds at most "
            "one chunk there (its default since VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE "
            "became 1); with that variable set to 0 they hold the whole context"
        )
    lay = hybrid_layout(spec, 1, kv_cache_dtype)
    if lay is not None:
        notes.append(
            f"per-sequence recurrent state {lay.state_bytes_unpadded:,} B "
            f"({state_bytes_per_request(spec, 1, kv_cache_dtype):,} B as vLLM pads it); "
            f"attention KV in {lay.block_tokens}-token blocks (hybrid page alignment)"
        )
    stored = per_gpu_weight_bytes(spec, wb, 1)
    loaded = loaded_weight_bytes(spec, fmt, *stored, 1)[0]
    if loaded > stored[0]:
        notes.append(
            f"vLLM repacks the {fmt.name} experts as it loads them: {loaded / GIB:.2f} GiB at TP1 "
            f"(the table's weights are as loaded, as recommend sizes them)"
        )
    if mtp:
        notes.append(
            f"{mtp:,} multi-token-prediction parameters are stored in the checkpoint "
            "but not loaded by vLLM unless speculative decoding uses them"
        )
    per_tp = tuple(
        _per_tp(spec, fmt, qc, wb, tp, context, concurrency, kv_cache_dtype, gpu_memory_utilization)
        for tp in tp_degrees
    )
    return Footprint(
        model=spec, quant_format=fmt.name, kv_cache_dtype=kv_cache_dtype, context_tokens=context,
        concurrency=concurrency, gpu_memory_utilization=gpu_memory_utilization,
        total_params=total, active_params=active, mtp_params=mtp,
        stored_elements=wb.stored_elements, weight_bytes=wb.total,
        weight_bytes_by_dtype=wb.by_dtype, kv_bytes_per_token=per_layer * layers,
        kv_bytes_per_request=kv_bytes_per_request(spec, 1, kv_cache_dtype, context),
        per_tp=per_tp, notes=tuple(notes),
        state_bytes_per_request=state_bytes_per_request(spec, 1, kv_cache_dtype),
    )  # fmt: skip


def _per_tp(
    spec: ModelSpec,
    fmt: QuantFormat,
    qc: QuantConfig | None,
    wb: WeightBytes,
    tp: int,
    context: int,
    concurrency: int,
    kv_cache_dtype: str,
    util: float,
) -> TPFootprint:
    problem = tp_problem(spec, fmt, qc, tp)
    # as loaded, as recommend sizes them (MXFP4 experts repacked: loaded_weight_bytes)
    weights, _ = loaded_weight_bytes(spec, fmt, *per_gpu_weight_bytes(spec, wb, tp), tp)
    per_request = kv_bytes_per_request(spec, tp, kv_cache_dtype, context)
    per_layer, layers = kv_bytes_per_token(spec, tp, kv_cache_dtype)
    overhead = overhead_bytes(spec, tp)
    return TPFootprint(
        tp=tp,
        valid=problem is None,
        reason=problem,
        weight_bytes_per_gpu=weights,
        kv_bytes_per_gpu=per_request * concurrency,
        overhead_bytes_per_gpu=overhead,
        kv_bytes_per_token_per_gpu=per_layer * layers,
        kv_bytes_per_request_per_gpu=per_request,
        state_bytes_per_request_per_gpu=state_bytes_per_request(spec, tp, kv_cache_dtype),
    )
