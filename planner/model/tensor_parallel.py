"""Which tensor-parallel sizes vLLM accepts for a model in a format (pure)."""

from __future__ import annotations

from functools import cache

from planner.model.architecture import list_tensors
from planner.model.quant import QuantFormat, is_quantized
from planner.model.values import ModelSpec, QuantConfig


def tp_problem(spec: ModelSpec, fmt: QuantFormat, qc: QuantConfig | None, tp: int) -> str | None:
    """Why vLLM would refuse this tensor-parallel size, or None."""
    if spec.tensors is not None and tp > 1:
        return "GGUF files are sized for one GPU here"
    if spec.num_attention_heads % tp:
        return f"{spec.num_attention_heads} attention heads do not divide by TP={tp}"
    kv = spec.num_kv_heads
    if kv % tp and tp % kv:
        return f"{kv} KV heads and TP={tp}: neither divides the other"
    rs = spec.recurrent
    if rs is not None:
        # vLLM shards recurrent heads (and GDN key heads) evenly: divide() asserts it.
        for heads in (rs.num_heads, rs.num_k_heads):
            if heads and heads % tp:
                return f"{heads} recurrent-layer heads do not divide by TP={tp}"
        # Mamba-2 B/C groups: split by TP, or replicated per head shard only when there is one
        # group (MambaMixer2 asserts "(n_groups % tp_size) == 0 or n_groups == 1",
        # vllm/model_executor/layers/mamba/mamba_mixer2.py)
        if rs.kind == "mamba2" and rs.n_groups % tp and rs.n_groups != 1:
            return f"{rs.n_groups} Mamba groups do not divide by TP={tp} (and are not 1)"
    if fmt.kind in {"awq", "gptq", "w4a16"}:
        group = (qc.group_size if qc and qc.group_size else None) or fmt.group_size or 128
        sizes = [
            s
            for s in (spec.intermediate_size if not spec.is_moe else 0, spec.moe_intermediate_size)
            if s
        ]
        for size in sizes:
            if (size // tp) % group or size % tp:
                return (
                    f"intermediate size {size} / TP={tp} is not a multiple of the "
                    f"quantization group {group}"
                )
    return _block_fp8_tp_problem(spec, fmt, qc, tp)


def expert_gpus(spec: ModelSpec, tp: int, dp: int) -> int:
    """The GPUs a layout's routed experts are spread over: tp x dp for an MoE model (its
    data-parallel replicas share them: vLLM flattens TP across DP for the MoE layers,
    FusedMoEParallelConfig.make), tp otherwise."""
    return tp * dp if spec.is_moe else tp


def moe_group_problem(
    spec: ModelSpec, fmt: QuantFormat, qc: QuantConfig | None, gpus: int
) -> str | None:
    """Why vLLM would refuse the routed experts spread over ``gpus`` GPUs, or None: data-parallel
    replicas of an MoE model share them, TP flattened across DP (FusedMoEParallelConfig.make in
    vllm/model_executor/layers/fused_moe/config.py), so their width splits over tp x dp GPUs
    (or, block-scaled FP8 that does not split, whole experts go to each: expert_parallel)."""
    if spec.tensors is not None:
        return "GGUF files are sized for one GPU here (data-parallel replicas share the experts)"
    size = spec.moe_intermediate_size
    if fmt.kind in {"awq", "gptq", "w4a16"} and size:
        group = (qc.group_size if qc and qc.group_size else None) or fmt.group_size or 128
        if size % gpus or (size // gpus) % group:
            return (
                f"expert intermediate size {size} over {gpus} GPUs (TP x DP, which share the "
                f"experts) is not a multiple of the quantization group {group}"
            )
    width = _unsplit_width(spec, fmt, qc, gpus, ROUTED)
    if width is not None and not expert_parallel(spec, fmt, qc, gpus):
        return (
            f"FP8 blocks: expert intermediate size {width} over {gpus} GPUs (TP x DP, which "
            f"share the experts) is not a whole number of blocks, nor do {spec.num_experts} "
            "experts divide among them"
        )
    if width is None and size and size % gpus:  # split, not held whole: FusedMoE asserts
        # intermediate_size % tp_size == 0 over the flattened group (every format; vLLM pads
        # MXFP4 per rank instead, which this refuses too, on the safe side)
        return (
            f"expert intermediate size {size} does not divide over {gpus} GPUs (TP x DP, which "
            "share the experts): vLLM refuses to load it"
        )
    return None


MLP_ROLES = frozenset({"mlp", "expert", "shared_expert"})
ROUTED = frozenset({"expert"})  # split by TP, or held whole with expert parallelism
TP_SPLIT = MLP_ROLES - ROUTED  # dense and shared-expert MLPs: split by TP only


def _block_fp8_tp_problem(
    spec: ModelSpec, fmt: QuantFormat, qc: QuantConfig | None, tp: int
) -> str | None:
    """Block-scaled FP8 (128x128 blocks): vLLM refuses a TP whose share of an MLP or expert
    intermediate size is not a whole number of blocks. Fp8MoEMethod.create_weights raises "The
    output_size of gate's and up's weight = 192 is not divisible by weight quantization block_n
    = 128" (vllm/model_executor/layers/quantization/fp8.py; linear layers: validate_fp8_block_
    shape), e.g. MiniMax-M2.5 (1536 / TP8) on vLLM v0.25.0 and Qwen3-235B-A22B-FP8 at TP8. Routed
    experts that do not split are held whole with expert parallelism instead (expert_parallel);
    dense and shared-expert MLPs have no such way out."""
    held_whole = expert_parallel(spec, fmt, qc, tp)
    size = _unsplit_width(spec, fmt, qc, tp, TP_SPLIT if held_whole else MLP_ROLES)
    if size is None:
        return None
    block_n = _block(fmt, qc)[0]
    return (
        f"FP8 blocks of {block_n}: intermediate size {size} / TP={tp} = {size / tp:g} "
        "is not a whole number of blocks (vLLM refuses to load it)"
    )


def expert_parallel(spec: ModelSpec, fmt: QuantFormat, qc: QuantConfig | None, tp: int) -> bool:
    """Whether this TP needs vLLM's --enable-expert-parallel: block-FP8 routed experts whose width
    does not split into whole blocks over tp GPUs are held whole instead, num_experts / tp on
    each (what vLLM's Qwen3-Coder recipe does for its FP8 checkpoint, and a public MiniMax-M2.5
    run at TP8 on vLLM v0.25.0). The per-GPU weight bytes are those of the TP split."""
    if tp == 1 or not spec.num_experts or spec.num_experts % tp:
        return False
    return _unsplit_width(spec, fmt, qc, tp, ROUTED) is not None


def _block_scaled(fmt: QuantFormat, qc: QuantConfig | None) -> bool:
    return fmt.scale == "block" or (qc is not None and bool(qc.block))


def _block(fmt: QuantFormat, qc: QuantConfig | None) -> tuple[int, int]:
    return (qc.block if qc and qc.block else None) or fmt.block or (128, 128)


def _unsplit_width(
    spec: ModelSpec, fmt: QuantFormat, qc: QuantConfig | None, tp: int, roles: frozenset[str]
) -> int | None:
    """The first intermediate width of the block-scaled MLPs of these roles that tp GPUs cannot
    split into whole blocks, or None."""
    if not _block_scaled(fmt, qc):
        return None
    block_n, block_k = _block(fmt, qc)
    for role, size in _quantized_mlp_widths(spec, fmt, qc):
        share = size // tp
        if role in roles and (size % tp or share % block_n or (tp > 1 and share % block_k)):
            return size
    return None


@cache
def _quantized_mlp_widths(
    spec: ModelSpec, fmt: QuantFormat, qc: QuantConfig | None
) -> tuple[tuple[str, int], ...]:
    """(role, intermediate width) of each distinct quantized MLP of the checkpoint, in order:
    read once per model and format (the tensor inventory is large for MoE models, and every
    layout of every offer asks)."""
    widths: dict[tuple[str, int], None] = {}
    for t in list_tensors(spec):
        if t.role not in MLP_ROLES or len(t.shape) < 2 or not is_quantized(t, fmt, qc):
            continue  # modules the checkpoint keeps in 16 bits have no blocks to keep whole
        out_f, in_f = t.shape[-2], t.shape[-1]
        size = in_f if out_f == spec.hidden_size else out_f
        widths[(t.role, size // 2 if "gate_up" in t.name else size)] = None
    return tuple(widths)
