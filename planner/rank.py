"""Fit, estimate and rank: which offers run the model with vLLM, how fast, at what cost (pure).

For each offer the planner tries every valid layout: tensor parallel over divisors of the
node's GPUs with the rest as data-parallel replicas, and, only when no single node holds the
model, tensor parallel within nodes and pipeline parallel across up to ``max_nodes`` nodes of
providers with private multi-node networking. An offer is kept only if the quantization runs on
its GPU in current vLLM and the requested concurrency of full-context requests fits in
gpu_memory_utilization x GPU memory after weights and runtime overhead. Every other offer is
returned with the reason it was rejected.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache

from planner.errors import NoFeasibleOfferError, UsageError
from planner.footprint import (
    WeightBytes,
    count_params,
    kv_bytes_per_request,
    overhead_bytes,
    per_gpu_weight_bytes,
    resolve_format,
    tp_problem,
    weight_bytes,
)
from planner.gpus import GpuSpec, gpu_table
from planner.models import ModelSpec, Offer, QuantConfig
from planner.perf import Hardware, ModelLoad, model_load, output_tokens_per_s, prefill_s
from planner.perf import token_latency_s as itl_s
from planner.plan import Estimate, Layout, Need, Plan
from planner.quant import FORMATS, QuantFormat, get_format
from planner.support import Support, check_support

GIB = 1 << 30
MAX_NUM_SEQS = 256  # vLLM's default scheduler cap
MULTI_NODE_PROVIDERS = frozenset({"aws", "gcp"})  # private networking between instances
OBJECTIVES = ("cost-per-token", "cost", "speed", "latency")
ONLINE_FORMATS = frozenset({"fp8"})  # what vLLM can quantize to at load time


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


@dataclass(frozen=True, slots=True)
class Rejection:
    offer: Offer
    reason: str


@dataclass(frozen=True, slots=True)
class Ranking:
    plans: tuple[Plan, ...]  # each offer's best plan, strictly sorted by the objective
    rejected: tuple[Rejection, ...]
    candidates: tuple[Candidate, ...]
    best_per_candidate: tuple[Plan | None, ...] = ()  # over all offers, for --quant auto


def _candidate(spec: ModelSpec, quant: str | None, base: str, online: bool = False) -> Candidate:
    fmt, qc = resolve_format(spec, quant)
    _, active, _ = count_params(spec)
    return Candidate(spec, fmt, qc, online, weight_bytes(spec, fmt, qc), active, base)


def candidates_for(spec: ModelSpec, quant: str | None) -> list[Candidate]:
    """The checkpoints and formats worth planning for `quant` (None: the checkpoint's own;
    'auto': native dtype, online FP8, and known pre-quantized variants of the model)."""
    from planner.modelspec import quantized_variants

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
        out += [_candidate(v, None, spec.name) for v in quantized_variants(spec.name)]
        return out
    fmt = get_format(quant)
    if fmt.kind == "float":
        return [_candidate(spec, fmt.name, spec.name)]
    if fmt.name in ONLINE_FORMATS:
        return [_candidate(spec, fmt.name, spec.name, online=True)]
    variants = [v for v in quantized_variants(spec.name) if v.quant and v.quant.format == fmt.name]
    if not variants:
        known = (
            ", ".join(
                f"{v.name} ({v.quant.format})" for v in quantized_variants(spec.name) if v.quant
            )
            or "none in the registry"
        )
        raise UsageError(
            f"no {fmt.name} checkpoint of {spec.name} is known, and vLLM cannot quantize to "
            f"{fmt.name} at load time",
            f"pass a {fmt.name} checkpoint's id as MODEL; known variants: {known}",
        )
    return [_candidate(v, None, spec.name) for v in variants]


@dataclass(frozen=True, slots=True)
class _Fit:
    layout: Layout
    support: Support
    weights: int
    overhead: int
    kv_per_request: int  # one request of `context` tokens, per GPU
    free: int  # bytes left for KV per GPU
    max_per_replica: int
    batch: int
    itl: float
    ttft: float
    agg_tps: float


def _layouts(gpus_per_node: int, multi_node: bool, max_nodes: int) -> list[Layout]:
    single = [
        Layout(tp=t, dp=gpus_per_node // t)
        for t in range(1, gpus_per_node + 1)
        if gpus_per_node % t == 0
    ]
    multi = (
        [Layout(tp=gpus_per_node, pp=n, nodes=n) for n in range(2, max_nodes + 1)]
        if multi_node
        else []
    )
    return single + multi


@lru_cache(maxsize=4096)
def _evaluate(
    cand: Candidate, gpu: GpuSpec, gpus_per_node: int, multi_node: bool, need: Need
) -> tuple[tuple[_Fit, ...], str]:
    """Feasible layouts of a candidate on `gpus_per_node` x `gpu` (memory and support only;
    prices are applied per offer), or () and the reason none works."""
    support = check_support(gpu, cand.fmt, need.kv_cache_dtype)
    if not support.ok:
        return (), support.reason or "unsupported"
    capacity = int(gpu.usable_memory_bytes * need.gpu_memory_utilization)
    fits: list[_Fit] = []
    problems: list[str] = []
    singles_fit = False
    for layout in _layouts(gpus_per_node, multi_node, need.max_nodes):
        if layout.pp > 1 and singles_fit:
            break  # pipeline parallel only when no single node holds the model
        problem = tp_problem(cand.spec, cand.fmt, cand.qc, layout.tp)
        if problem:
            problems.append(f"{layout.label}: {problem}")
            continue
        weights, experts = per_gpu_weight_bytes(cand.spec, cand.weights, layout.tp, layout.pp)
        overhead = overhead_bytes(cand.spec, layout.tp)
        stage_layers = math.ceil(cand.spec.num_layers / layout.pp)
        kv_req = kv_bytes_per_request(cand.spec, layout.tp, need.kv_cache_dtype, need.context)
        kv_req = math.ceil(kv_req * stage_layers / cand.spec.num_layers)
        free = capacity - weights - overhead
        per_replica = max(0, free // kv_req) if free > 0 else 0
        replicas = layout.dp
        needed = math.ceil(need.concurrency / replicas)
        if per_replica < needed:
            problems.append(
                f"{layout.label}: {weights / GIB:.1f} GiB weights + {overhead / GIB:.1f} GiB "
                f"overhead + {needed} x {kv_req / GIB:.2f} GiB KV per GPU > "
                f"{capacity / GIB:.1f} GiB ({need.gpu_memory_utilization:.0%} of "
                f"{gpu.memory_gb:g} GB)"
            )
            continue
        if layout.pp == 1:
            singles_fit = True
        work_kv = kv_bytes_per_request(
            cand.spec, layout.tp, need.kv_cache_dtype, need.prompt_tokens + need.output_tokens
        )
        work_kv = math.ceil(work_kv * stage_layers / cand.spec.num_layers)
        batch = int(min(MAX_NUM_SEQS, max(needed, free // max(work_kv, 1))))
        load: ModelLoad = model_load(
            cand.spec,
            weights,
            experts,
            cand.active_params,
            layout.tp,
            layout.pp,
            need.kv_cache_dtype,
        )
        hw = Hardware(gpu, layout.tp, layout.pp, support.compute, _nvlink(gpu))
        context = need.prompt_tokens + need.output_tokens / 2
        fits.append(_Fit(
            layout=layout, support=support, weights=weights, overhead=overhead,
            kv_per_request=kv_req, free=free, max_per_replica=per_replica, batch=batch,
            itl=itl_s(load, hw, needed, context), ttft=prefill_s(load, hw, need.prompt_tokens),
            agg_tps=layout.dp * output_tokens_per_s(load, hw, batch, need.prompt_tokens,
                                                    need.output_tokens),
        ))  # fmt: skip
    if fits:
        return tuple(fits), ""
    return (), "does not fit: " + ("; ".join(problems[-2:]) if problems else "no valid layout")


def _nvlink(gpu: GpuSpec) -> bool:
    return "SXM" in gpu.interconnect or "NVSwitch" in gpu.interconnect


def objective_value(objective: str, est: Estimate, output_tokens: int) -> float:
    """Lower is better for every objective."""
    if objective == "cost-per-token":
        return est.usd_per_million_output_tokens
    if objective == "cost":
        return est.usd_per_hour
    if objective == "speed":
        return -est.aggregate_output_tokens_per_s
    if objective == "latency":
        return est.ttft_ms + output_tokens * est.itl_ms
    raise UsageError(f"unknown objective '{objective}'", f"valid: {', '.join(OBJECTIVES)}")


def _estimate(fit: _Fit, offer: Offer, price: float, need: Need) -> Estimate:
    nodes = fit.layout.nodes
    usd = price * nodes
    agg = fit.agg_tps
    total_factor = (need.prompt_tokens + need.output_tokens) / need.output_tokens
    used_kv = fit.kv_per_request * math.ceil(need.concurrency / fit.layout.dp)
    monthly = offer.monthly_price_usd * nodes if offer.monthly_price_usd is not None else None
    return Estimate(
        single_stream_tokens_per_s=round(1 / fit.itl, 2),
        aggregate_output_tokens_per_s=round(agg, 1), batch=fit.batch,
        ttft_ms=round(fit.ttft * 1000, 1), itl_ms=round(fit.itl * 1000, 2),
        usd_per_hour=round(usd, 4),
        usd_per_million_output_tokens=round(usd / (agg * 3600) * 1e6, 4),
        usd_per_million_total_tokens=round(usd / (agg * total_factor * 3600) * 1e6, 4),
        memory_headroom_gib=round((fit.free - used_kv) / GIB, 2),
        max_concurrency=fit.max_per_replica * fit.layout.dp,
        weights_gib_per_gpu=round(fit.weights / GIB, 2),
        kv_cache_gib_per_gpu=round(used_kv / GIB, 2),
        overhead_gib_per_gpu=round(fit.overhead / GIB, 2),
        monthly_commitment_usd=round(monthly, 2) if monthly is not None else None,
        setup_fee_usd=round((offer.setup_fee_usd or 0) * nodes, 2) if monthly is not None else None,
    )  # fmt: skip


def vllm_args(cand: Candidate, fit: _Fit, need: Need) -> tuple[str, ...]:
    """The `vllm serve` arguments (after the image's entrypoint), API key excluded."""
    lay = fit.layout
    args = [
        "--model",
        cand.spec.name,
        "--served-model-name",
        cand.base_model,
        "--tensor-parallel-size",
        str(lay.tp),
    ]
    if lay.pp > 1:
        args += ["--pipeline-parallel-size", str(lay.pp), "--distributed-executor-backend", "ray"]
    if lay.dp > 1:
        args += ["--data-parallel-size", str(lay.dp)]
    args += [
        "--max-model-len",
        str(need.context),
        "--gpu-memory-utilization",
        f"{need.gpu_memory_utilization:g}",
        "--max-num-seqs",
        str(fit.batch),
    ]
    if cand.online_quantization and cand.fmt.vllm_quantization:
        args += ["--quantization", cand.fmt.vllm_quantization]
    if fit.support.dtype_half:
        args += ["--dtype", "half"]
    if need.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", need.kv_cache_dtype]
    return tuple(args)


def _violations(est: Estimate, need: Need) -> str | None:
    if need.max_price_usd_per_hour is not None and est.usd_per_hour > need.max_price_usd_per_hour:
        return f"${est.usd_per_hour:.2f}/h > --max-price {need.max_price_usd_per_hour:g}"
    if need.min_tokens_per_s is not None and est.single_stream_tokens_per_s < need.min_tokens_per_s:
        return (
            f"{est.single_stream_tokens_per_s:.1f} tok/s per stream < --min-tokens-per-s "
            f"{need.min_tokens_per_s:g}"
        )
    if need.max_ttft_ms is not None and est.ttft_ms > need.max_ttft_ms:
        return f"TTFT {est.ttft_ms:.0f} ms > --max-ttft {need.max_ttft_ms:g}"
    return None


def plan_offer(cands: Iterable[Candidate], offer: Offer, need: Need) -> Plan | str:
    """The best plan on one offer over candidates and layouts, or why none works."""
    best, _, reason = _plan_offer_by_candidate(list(cands), offer, need)
    return best if best is not None else reason


def _plan_offer_by_candidate(
    cands: list[Candidate], offer: Offer, need: Need
) -> tuple[Plan | None, dict[int, Plan], str]:
    """(best plan, best plan per candidate index, rejection reason if none)."""
    gpu = gpu_table().get(offer.gpu)
    if gpu is None:
        return None, {}, f"GPU '{offer.gpu}' is not in the GPU table"
    if not (gpu.bf16_tflops_dense or gpu.fp16_tflops_dense):
        return (
            None,
            {},
            (
                f"{gpu.name}: no published dense FP16 throughput in the GPU table, "
                "so speed and cost per token cannot be estimated"
            ),
        )
    price = offer.effective_usd_per_hour(spot=need.spot, horizon_months=need.horizon_months)
    if price is None:
        return None, {}, "no spot price" if need.spot else "no price"
    per_cand: dict[int, tuple[tuple[float, ...], Plan]] = {}
    reasons: list[str] = []
    multi = offer.provider in MULTI_NODE_PROVIDERS
    for idx, cand in enumerate(cands):
        fits, why = _evaluate(cand, gpu, offer.gpu_count, multi, need)
        if not fits:
            reasons.append(f"{cand.fmt.name}: {why}")
            continue
        for fit in fits:
            est = _estimate(fit, offer, price, need)
            violation = _violations(est, need)
            if violation:
                reasons.append(f"{cand.fmt.name} {fit.layout.label}: {violation}")
                continue
            value = objective_value(need.objective, est, need.output_tokens)
            key = (value, est.usd_per_hour, fit.layout.nodes, fit.layout.tp, idx)
            if idx not in per_cand or key < per_cand[idx][0]:
                per_cand[idx] = (key, _make_plan(cand, offer, fit, est, need, value))
    if not per_cand:
        reason = reasons[-1] if len(reasons) == 1 else "; ".join(dict.fromkeys(reasons))
        return None, {}, reason
    best = min(per_cand.values(), key=lambda kp: kp[0])[1]
    return best, {i: kp[1] for i, kp in per_cand.items()}, ""


def _make_plan(
    cand: Candidate, offer: Offer, fit: _Fit, est: Estimate, need: Need, value: float
) -> Plan:
    reasons = [
        f"{cand.fmt.name} on {offer.gpu_count}x {offer.gpu}: {fit.layout.label}, "
        f"{est.weights_gib_per_gpu:.1f} GiB weights + {est.overhead_gib_per_gpu:.1f} GiB "
        f"overhead per GPU, room for {est.max_concurrency} x {need.context}-token requests"
    ]
    if fit.support.note:
        reasons.append(fit.support.note)
    notes = list(cand.spec.notes)
    if cand.spec.is_guess:
        notes.insert(0, "GUESS: the model's shape was guessed from its name")
    if fit.layout.pp > 1:
        notes.append(
            f"multi-node: {fit.layout.nodes} nodes, TP within a node and PP across "
            "nodes over ordinary networking (Ray)"
        )
    if offer.billing == "monthly":
        notes.append(
            f"monthly rental: ${est.monthly_commitment_usd:,.0f}/month + "
            f"${est.setup_fee_usd:,.0f} setup; $/h spreads the setup over "
            f"{need.horizon_months:g} month(s)"
        )
    return Plan(
        model=cand.spec.name, base_model=cand.base_model, model_source=cand.spec.source,
        model_is_guess=cand.spec.is_guess, quant_format=cand.fmt.name, need=need, offer=offer,
        layout=fit.layout, vllm_args=vllm_args(cand, fit, need), estimate=est,
        objective_value=value, reasons=tuple(reasons), notes=tuple(notes),
    )  # fmt: skip


def plan_sort_key(plan: Plan) -> tuple[object, ...]:
    o = plan.offer
    return (
        plan.objective_value,
        plan.estimate.usd_per_hour,
        o.provider,
        o.instance_type,
        o.region,
        o.tier or "",
        plan.layout.label,
        plan.quant_format,
    )


def rank_offers(cands: list[Candidate], offers: Iterable[Offer], need: Need) -> Ranking:
    """Every offer planned or rejected with a reason; plans strictly sorted by the objective."""
    validate_need(need)
    plans: list[Plan] = []
    rejected: list[Rejection] = []
    best_per_cand: dict[int, Plan] = {}
    for offer in offers:
        best, by_cand, reason = _plan_offer_by_candidate(cands, offer, need)
        if best is None:
            rejected.append(Rejection(offer, reason))
            continue
        plans.append(best)
        for idx, plan in by_cand.items():
            if idx not in best_per_cand or plan_sort_key(plan) < plan_sort_key(best_per_cand[idx]):
                best_per_cand[idx] = plan
    plans.sort(key=plan_sort_key)
    return Ranking(
        tuple(plans),
        tuple(rejected),
        tuple(cands),
        tuple(best_per_cand.get(i) for i in range(len(cands))),
    )


def validate_need(need: Need) -> None:
    if need.objective not in OBJECTIVES:
        raise UsageError(f"unknown objective '{need.objective}'", f"valid: {', '.join(OBJECTIVES)}")
    for name in ("context", "concurrency", "prompt_tokens", "output_tokens", "max_nodes"):
        if getattr(need, name) <= 0:
            raise UsageError(f"{name.replace('_', '-')} must be positive")
    if need.prompt_tokens + need.output_tokens > need.context:
        raise UsageError(
            f"prompt ({need.prompt_tokens}) + output ({need.output_tokens}) tokens exceed "
            f"--context {need.context}",
            "raise --context or shorten the workload",
        )


def recommend(cands: list[Candidate], offers: Iterable[Offer], need: Need) -> Ranking:
    """rank_offers, raising NoFeasibleOfferError (exit 3) with the commonest reasons if empty."""
    ranking = rank_offers(cands, offers, need)
    if not ranking.plans:
        from collections import Counter

        if not ranking.rejected:
            raise NoFeasibleOfferError(
                "no offer matches the filters", "loosen --gpu / --providers / --regions"
            )
        common = Counter(r.reason for r in ranking.rejected).most_common(2)
        raise NoFeasibleOfferError(
            f"no feasible offer among {len(ranking.rejected)}: "
            + " | ".join(f"{n} x {reason[:160]}" for reason, n in common),
            "try --quant auto, a smaller --context or --concurrency, or more GPUs per node",
        )
    return ranking


def best_alternatives(
    ranking: Ranking, gpu_prefixes: tuple[str, ...] = ("h100", "a100")
) -> list[tuple[str, Plan | None, str | None]]:
    """For --explain: the best plan on each commonly guessed GPU family, or why none exists."""
    out: list[tuple[str, Plan | None, str | None]] = []
    for prefix in gpu_prefixes:
        plan = next((p for p in ranking.plans if p.offer.gpu.startswith(prefix)), None)
        why = None
        if plan is None:
            why = next(
                (r.reason for r in ranking.rejected if r.offer.gpu.startswith(prefix)),
                "no offer with this GPU in the catalog",
            )
        out.append((prefix.upper(), plan, why))
    return out


def with_objective(need: Need, objective: str) -> Need:
    return replace(need, objective=objective)


__all__ = [
    "FORMATS",
    "Candidate",
    "Ranking",
    "Rejection",
    "candidates_for",
    "plan_offer",
    "rank_offers",
    "recommend",
]
