"""Fit: which ways of serving a model (checkpoint, format, parallel layout) start in vLLM on a
machine, and what one GPU of each holds (pure).

An offer's layouts are tensor parallel over divisors of the node's GPUs with data-parallel
replicas on the rest of the node (only as many as the load can use), and, only when no single
node holds the model, tensor parallel within nodes and pipeline parallel across up to
``max_nodes`` nodes of providers with private multi-node networking. A layout fits only if the
quantization runs on the GPU in current vLLM and the requested concurrency of full-context
requests fits in gpu_memory_utilization x the card's usable memory after the loaded weights and
the runtime overhead (with ``Need.stream_replicas``, one request: identical machines share the
streams, and planner/decide/objective.py sizes how many).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from planner.decide.perf import Hardware, ModelLoad, model_load
from planner.decide.plan import Layout, Need
from planner.decide.support import Support, check_support
from planner.errors import UsageError
from planner.model.footprint import (
    WeightBytes,
    count_params,
    default_batched_tokens,
    default_max_num_seqs,
    loaded_weight_bytes,
    overhead_bytes,
    per_gpu_weight_bytes,
    resolve_format,
    weight_bytes,
)
from planner.model.kvcache import kv_bytes_per_request, resident_tokens, sliding_prefill_reserve
from planner.model.quant import QuantFormat, get_format
from planner.model.tensor_parallel import (
    expert_gpus,
    expert_parallel,
    moe_group_problem,
    tp_problem,
)
from planner.model.values import ModelSpec, QuantConfig
from planner.offers.gpus import GpuSpec

GIB = 1 << 30
# Clouds with private networking between instances (infra/targets declares the same as
# multi_node; tests/test_targets.py keeps the two equal, since decide cannot import infra).
MULTI_NODE_PROVIDERS = frozenset({"aws", "gcp"})
ONLINE_FORMATS = frozenset({"fp8"})  # what vLLM can quantize to at load time
BATCH_WORKLOAD = "batch"


@dataclass(frozen=True, slots=True, eq=False)  # hashed by identity: the evaluation cache key
class Candidate:
    """One way to serve the model: a checkpoint (maybe a pre-quantized variant) and a format."""

    spec: ModelSpec
    fmt: QuantFormat
    qc: QuantConfig | None
    online_quantization: bool
    weights: WeightBytes
    active_params: int
    base_model: str


def _candidate(spec: ModelSpec, quant: str | None, base: str, online: bool = False) -> Candidate:
    fmt, qc = resolve_format(spec, quant)
    _, active, _ = count_params(spec)
    return Candidate(spec, fmt, qc, online, weight_bytes(spec, fmt, qc), active, base)


def candidates_for(
    spec: ModelSpec, quant: str | None, variants: Sequence[ModelSpec] = ()
) -> list[Candidate]:
    """The checkpoints and formats worth planning for `quant` (None: the checkpoint's own;
    'auto': native dtype, online FP8, and the pre-quantized ``variants`` of the model, which the
    caller looks up: the decision stage never reads the registry)."""
    if spec.tensors is not None:
        raise UsageError(
            "GGUF files are not planned: vLLM 0.33 serves GGUF only through the "
            "out-of-tree vllm-gguf-plugin",
            "plan the original Hugging Face model, or a native quantized variant",
        )
    if spec.quant is not None or quant is None:
        return [_candidate(spec, quant, spec.name)]
    native = _candidate(spec, None, spec.name)
    if quant.lower() == "auto":
        out = [native, _candidate(spec, "fp8", spec.name, online=True)]
        return out + [_candidate(v, None, spec.name) for v in variants]
    fmt = get_format(quant)
    if fmt.kind == "float":
        return [_candidate(spec, fmt.name, spec.name)]
    if fmt.name in ONLINE_FORMATS:
        return [_candidate(spec, fmt.name, spec.name, online=True)]
    same = [v for v in variants if v.quant and v.quant.format == fmt.name]
    if not same:
        known = (
            ", ".join(f"{v.name} ({v.quant.format})" for v in variants if v.quant)
            or "none in the registry"
        )
        raise UsageError(
            f"no {fmt.name} checkpoint of {spec.name} is known, and vLLM cannot quantize to "
            f"{fmt.name} at load time",
            f"pass a {fmt.name} checkpoint's id as MODEL; known variants: {known}",
        )
    return [_candidate(v, None, spec.name) for v in same]


@dataclass(frozen=True, slots=True)
class Fit:
    """One layout that starts: what one GPU holds, and the speed model's view of it."""

    layout: Layout  # dp = the replicas on one node that the load uses
    support: Support
    weights: int  # bytes per GPU as loaded (kernels may repack the checkpoint)
    overhead: int  # activation peak, CUDA graphs, non-torch memory, per GPU
    kv_per_request: int  # one request of `context` tokens, per GPU
    work_kv: int  # one typical request as a saturated cache holds it (resident_tokens), per GPU
    free: int  # bytes left for KV per GPU (less the sliding-window prefill reserve)
    max_per_replica: int  # full-context requests one replica holds
    max_batch: int  # --max-num-seqs: requests that fit up to the card's default, >= the load's
    load: ModelLoad
    hw: Hardware


def nvlink(gpu: GpuSpec) -> bool:
    return "SXM" in gpu.interconnect or "NVSwitch" in gpu.interconnect


def saturates(need: Need) -> bool:
    """Figures at the largest batch that fits (batch jobs and throughput targets); otherwise an
    interactive load of ``need.concurrency`` streams."""
    return need.workload == BATCH_WORKLOAD or bool(need.target_output_tokens_per_s)


def layouts(
    gpus_per_node: int, multi_node: bool, max_nodes: int, need: Need | None = None
) -> list[Layout]:
    """Every layout of a node of ``gpus_per_node`` GPUs. With a ``need``, data-parallel replicas
    are capped at what its load can use: an interactive load of N streams, or a job of N
    requests, uses at most N replicas; a throughput target or an unsized batch fills the node.
    ``need.tp`` pins the TP degree."""
    cap = gpus_per_node
    if need is not None and not saturates(need):
        cap = need.concurrency
    elif need is not None and need.job_requests:
        cap = min(cap, need.job_requests)
    single = [
        Layout(tp=t, dp=min(gpus_per_node // t, cap))
        for t in range(1, gpus_per_node + 1)
        if gpus_per_node % t == 0
    ]
    multi = (
        [Layout(tp=gpus_per_node, pp=n, nodes=n) for n in range(2, max_nodes + 1)]
        if multi_node
        else []
    )
    out = single + multi
    if need is not None and need.tp is not None:
        out = [lay for lay in out if lay.tp == need.tp]
    return out


def memory_budget(
    cand: Candidate,
    gpu: GpuSpec,
    tp: int,
    pp: int,
    utilization: float,
    total_bytes: int | None = None,
    max_num_seqs: int | None = None,
    max_num_batched_tokens: int | None = None,
    dp: int = 1,
) -> tuple[int, int, int, int]:
    """(loaded weights, routed-expert part, runtime overhead, bytes left for the KV cache) per
    GPU, as vLLM would find them at start-up (``total_bytes``: the card's usable memory unless
    a log states it). The one memory formula: fits use it, and benchmarks/memory_accuracy.py
    checks it on published logs.

    Unset scheduler limits take vLLM's defaults for the card. Plans pass a --max-num-seqs at or
    below that default, but the sampler warm-up is still sized for the default: the margin
    keeps plans from starting at the edge (gpt-oss-120b on one H100 at 131,072 tokens).

    ``dp`` data-parallel replicas of an MoE model share its routed experts, sharded over all
    tp x dp GPUs (vLLM flattens TP across DP for the MoE layers: perf.moe_dp_exchange_s); the
    other weights are each replica's own."""
    total = total_bytes or gpu.usable_memory_bytes
    group = expert_gpus(cand.spec, tp, dp)
    ckpt, experts = per_gpu_weight_bytes(cand.spec, cand.weights, tp, pp)
    if group > tp:
        _, shard = per_gpu_weight_bytes(cand.spec, cand.weights, group, pp)
        ckpt, experts = ckpt - experts + shard, shard
    weights, experts = loaded_weight_bytes(cand.spec, cand.fmt, ckpt, experts, group)
    tokens = max_num_batched_tokens or default_batched_tokens(total, gpu.name)
    seqs = max_num_seqs or default_max_num_seqs(total, gpu.name)
    ep = expert_parallel(cand.spec, cand.fmt, cand.qc, group)
    overhead = overhead_bytes(
        cand.spec, tp, tokens, seqs, gpu.compute_capability,
        nvswitch="NVSwitch" in gpu.interconnect, expert_parallel=ep, moe_dp=group // tp,
    )  # fmt: skip
    return weights, experts, overhead, int(total * utilization) - weights - overhead


def fit_layout(
    cand: Candidate, gpu: GpuSpec, support: Support, layout: Layout, need: Need
) -> Fit | str:
    """Memory fit of one layout (prices and load come later), or why it does not start."""
    capacity = int(gpu.usable_memory_bytes * need.gpu_memory_utilization)
    problem = tp_problem(cand.spec, cand.fmt, cand.qc, layout.tp)
    if problem:
        return f"{layout.label}: {problem}"
    # The replicas' GPUs share the routed experts (memory_budget): a group they do not split
    # over steps down to the most replicas that split them (at worst one, whose TP was checked)
    # rather than refusing the node: `--gpus 8 --tp 1` at 5 streams is DP4, not no plan.
    group = expert_gpus(cand.spec, layout.tp, layout.dp)
    while group > layout.tp and moe_group_problem(cand.spec, cand.fmt, cand.qc, group):
        layout = replace(layout, dp=layout.dp - 1)
        group = expert_gpus(cand.spec, layout.tp, layout.dp)
    chunk = default_batched_tokens(gpu.usable_memory_bytes, gpu.name)  # vLLM's, for the card
    weights, experts, overhead, free = memory_budget(
        cand, gpu, layout.tp, layout.pp, need.gpu_memory_utilization,
        max_num_batched_tokens=chunk, dp=layout.dp,
    )  # fmt: skip
    stage_share = math.ceil(cand.spec.num_layers / layout.pp) / cand.spec.num_layers
    kv_req = math.ceil(
        stage_share * kv_bytes_per_request(cand.spec, layout.tp, need.kv_cache_dtype, need.context)
    )
    # sliding-window layers hold a prefill chunk beyond their window: once per replica, and in
    # vLLM's start-up check
    reserve = math.ceil(
        stage_share
        * sliding_prefill_reserve(cand.spec, layout.tp, need.kv_cache_dtype, need.context, chunk)
    )
    free -= reserve
    per_replica = max(0, free // kv_req) if free > 0 else 0
    # With stream replicas, identical machines share an interactive load's streams
    # (load.operate sizes them): one machine need only hold one request; otherwise it
    # holds them all (a batch job or a throughput target never shares streams).
    shared = need.stream_replicas and not saturates(need)
    streams = math.ceil(need.concurrency / layout.dp)  # on one vLLM replica of one machine
    needed = 1 if shared else streams
    if per_replica < needed:
        return (
            f"{layout.label}: {weights / GIB:.1f} GiB weights + {overhead / GIB:.1f} GiB "
            f"overhead + {needed} x {kv_req / GIB:.2f} GiB KV"
            + (f" + {reserve / GIB:.2f} GiB sliding-window prefill" if reserve else "")
            + f" per GPU > {capacity / GIB:.1f} GiB ({need.gpu_memory_utilization:.0%} of "
            f"{gpu.usable_memory_bytes / GIB:.1f} GiB usable)"
        )
    work_kv = math.ceil(
        stage_share
        * kv_bytes_per_request(
            cand.spec,
            layout.tp,
            need.kv_cache_dtype,
            resident_tokens(need.prompt_tokens, need.output_tokens),
        )
    )
    load = model_load(
        cand.spec, weights, experts, cand.active_params, layout.tp, layout.pp,
        need.kv_cache_dtype, support.weight_only, cand.fmt.scale == "block", group // layout.tp,
    )  # fmt: skip
    hw = Hardware(gpu, layout.tp, layout.pp, support.compute, nvlink(gpu))
    # --max-num-seqs: the typical requests that fit, and never below the streams the load puts
    # on a replica (vLLM would queue the rest), up to vLLM's own default for the card (256, or
    # 1024 on the larger cards), for which the sampler warm-up is sized (memory_budget).
    seqs_default = default_max_num_seqs(gpu.usable_memory_bytes, gpu.name)
    if needed > seqs_default:
        return (
            f"{layout.label}: {needed} streams per vLLM replica > the {seqs_default} sequences "
            "vLLM runs at once on this card"
        )
    # Shared streams: as many per replica as one machine would carry (what memory and the
    # card's default allow), so that one machine under --spread is the one-machine plan.
    most = min(streams, per_replica, seqs_default) if shared else needed
    batch = int(max(most, min(seqs_default, free // max(work_kv, 1))))
    return Fit(
        layout=layout, support=support, weights=weights, overhead=overhead,
        kv_per_request=kv_req, work_kv=max(work_kv, 1), free=free,
        max_per_replica=per_replica, max_batch=batch, load=load, hw=hw,
    )  # fmt: skip


def holds_model(cand: Candidate, gpu: GpuSpec, gpus_per_node: int, need: Need) -> bool:
    """Whether one node of ``gpus_per_node`` x ``gpu`` starts the model with one request (the
    GPU supports the format and one layout fits)."""
    support = check_support(gpu, cand.fmt, need.kv_cache_dtype, cand.spec)
    return support.ok and _holds_model(cand, gpu, support, gpus_per_node, need)


@lru_cache(maxsize=4096)
def _holds_model(
    cand: Candidate, gpu: GpuSpec, support: Support, gpus_per_node: int, need: Need
) -> bool:
    """Whether one node of `gpus_per_node` GPUs starts the model with one request. Only the
    largest valid TP degree is tried: a GPU holds less of everything at a larger one (weights
    and KV heads are split, the activation peak shrinks). tests/oracle.py tries them all."""
    one = replace(need, concurrency=1)
    for lay in sorted(layouts(gpus_per_node, False, 1, one), key=lambda lay: -lay.tp):
        if not tp_problem(cand.spec, cand.fmt, cand.qc, lay.tp):
            return not isinstance(fit_layout(cand, gpu, support, lay, one), str)
    return False


OTHER_COUNT = "asked; this machine has"  # a machine with another GPU count than --gpus


@lru_cache(maxsize=4096)
def feasible_fits(
    cand: Candidate, gpu: GpuSpec, gpus_per_node: int, multi_node: bool, need: Need
) -> tuple[tuple[Fit, ...], str]:
    """Layouts of a candidate that start on `gpus_per_node` x `gpu` (memory and support only;
    prices come per offer), or () and the reason none does. Pipeline-parallel (multi-node)
    layouts are considered only when no node holds the model with one request: a load whose
    KV cache does not fit one node is served by machines with more GPUs, not by a pipeline
    over ordinary networking that the weights do not need."""
    if need.gpus is not None and gpus_per_node != need.gpus:
        return (), f"--gpus {need.gpus} {OTHER_COUNT} {gpus_per_node}"
    support = check_support(gpu, cand.fmt, need.kv_cache_dtype, cand.spec)
    if not support.ok:
        return (), support.reason or "unsupported"
    fits: list[Fit] = []
    problems: list[str] = []
    for layout in layouts(gpus_per_node, multi_node, need.max_nodes, need):
        if layout.pp > 1 and any(f.layout.pp == 1 for f in fits):
            break
        result = fit_layout(cand, gpu, support, layout, need)
        if isinstance(result, str):
            problems.append(result)
        else:
            fits.append(result)
    if fits and fits[0].layout.pp > 1 and _holds_model(cand, gpu, support, gpus_per_node, need):
        fits = []
        problems.append(
            f"one node holds the model but not {need.concurrency} x {need.context}-token "
            "requests; pipeline parallel across nodes is planned only for models no node "
            "holds (a machine with more GPUs serves this load)"
        )
    if fits:
        return tuple(fits), ""
    if not problems and need.tp is not None:
        return (), f"no TP{need.tp} layout within one machine's GPUs (--tp {need.tp})"
    return (), "does not fit: " + ("; ".join(problems[-2:]) if problems else "no valid layout")
