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
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from planner.decide.perf import Hardware, ModelLoad, model_load, output_tokens_per_s, prefill_s
from planner.decide.perf import token_latency_s as itl_s
from planner.decide.plan import Estimate, Layout, Need, Plan
from planner.decide.support import Support, check_support
from planner.errors import NoFeasibleOfferError, UsageError
from planner.model.footprint import (
    WeightBytes,
    count_params,
    kv_bytes_per_request,
    overhead_bytes,
    per_gpu_weight_bytes,
    resolve_format,
    tp_problem,
    weight_bytes,
)
from planner.model.quant import QuantFormat, get_format
from planner.model.values import ModelSpec, QuantConfig
from planner.offers.gpus import GpuSpec, gpu_table
from planner.offers.offer import Offer

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
    plans: Sequence[Plan]  # each offer's best plan, strictly sorted by the objective
    rejected: tuple[Rejection, ...]
    candidates: tuple[Candidate, ...]
    best_per_candidate: tuple[Plan | None, ...] = ()  # over all offers, for --quant auto


def _candidate(spec: ModelSpec, quant: str | None, base: str, online: bool = False) -> Candidate:
    fmt, qc = resolve_format(spec, quant)
    _, active, _ = count_params(spec)
    return Candidate(spec, fmt, qc, online, weight_bytes(spec, fmt, qc), active, base)


def candidates_for(
    spec: ModelSpec, quant: str | None, variants: Sequence[ModelSpec] = ()
) -> list[Candidate]:
    """The checkpoints and formats worth planning for `quant` (None: the checkpoint's own;
    'auto': native dtype, online FP8, and the pre-quantized ``variants`` of the model)."""
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
        out += [_candidate(v, None, spec.name) for v in variants]
        return out
    fmt = get_format(quant)
    if fmt.kind == "float":
        return [_candidate(spec, fmt.name, spec.name)]
    if fmt.name in ONLINE_FORMATS:
        return [_candidate(spec, fmt.name, spec.name, online=True)]
    variants = [v for v in variants if v.quant and v.quant.format == fmt.name]
    if not variants:
        known = (
            ", ".join(f"{v.name} ({v.quant.format})" for v in variants if v.quant)
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
    label: str
    replicas: int
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


def layouts(gpus_per_node: int, multi_node: bool, max_nodes: int) -> list[Layout]:
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


def evaluate_layout(
    cand: Candidate, gpu: GpuSpec, support: Support, layout: Layout, need: Need
) -> _Fit | str:
    """Memory fit and speed of one layout (prices come later), or why it does not fit."""
    capacity = int(gpu.usable_memory_bytes * need.gpu_memory_utilization)
    problem = tp_problem(cand.spec, cand.fmt, cand.qc, layout.tp)
    if problem:
        return f"{layout.label}: {problem}"
    weights, experts = per_gpu_weight_bytes(cand.spec, cand.weights, layout.tp, layout.pp)
    overhead = overhead_bytes(cand.spec, layout.tp)
    stage_share = math.ceil(cand.spec.num_layers / layout.pp) / cand.spec.num_layers
    kv_req = math.ceil(
        stage_share * kv_bytes_per_request(cand.spec, layout.tp, need.kv_cache_dtype, need.context)
    )
    free = capacity - weights - overhead
    per_replica = max(0, free // kv_req) if free > 0 else 0
    needed = math.ceil(need.concurrency / layout.dp)
    if per_replica < needed:
        return (
            f"{layout.label}: {weights / GIB:.1f} GiB weights + {overhead / GIB:.1f} GiB "
            f"overhead + {needed} x {kv_req / GIB:.2f} GiB KV per GPU > "
            f"{capacity / GIB:.1f} GiB ({need.gpu_memory_utilization:.0%} of "
            f"{gpu.memory_gb:g} GB)"
        )
    work_kv = math.ceil(
        stage_share
        * kv_bytes_per_request(
            cand.spec, layout.tp, need.kv_cache_dtype, need.prompt_tokens + need.output_tokens
        )
    )
    batch = int(min(MAX_NUM_SEQS, max(needed, free // max(work_kv, 1))))
    load: ModelLoad = model_load(
        cand.spec, weights, experts, cand.active_params, layout.tp, layout.pp, need.kv_cache_dtype
    )
    hw = Hardware(gpu, layout.tp, layout.pp, support.compute, _nvlink(gpu))
    context = need.prompt_tokens + need.output_tokens / 2
    agg_tps = layout.dp * output_tokens_per_s(
        load, hw, batch, need.prompt_tokens, need.output_tokens
    )
    replicas = 1
    if need.target_output_tokens_per_s:
        replicas = max(
            1, math.ceil(need.target_output_tokens_per_s * (1 + need.replica_headroom) / agg_tps)
        )
    return _Fit(
        layout=layout, label=layout.label, replicas=replicas, support=support, weights=weights,
        overhead=overhead,
        kv_per_request=kv_req, free=free, max_per_replica=per_replica, batch=batch,
        itl=itl_s(load, hw, needed, context), ttft=prefill_s(load, hw, need.prompt_tokens),
        agg_tps=agg_tps,
    )  # fmt: skip


@lru_cache(maxsize=4096)
def _evaluate(
    cand: Candidate, gpu: GpuSpec, gpus_per_node: int, multi_node: bool, need: Need
) -> tuple[tuple[_Fit, ...], str]:
    """Feasible layouts of a candidate on `gpus_per_node` x `gpu` (memory and support only;
    prices are applied per offer), or () and the reason none works. Pipeline-parallel
    (multi-node) layouts are considered only when no single-node layout fits."""
    support = check_support(gpu, cand.fmt, need.kv_cache_dtype)
    if not support.ok:
        return (), support.reason or "unsupported"
    fits: list[_Fit] = []
    problems: list[str] = []
    for layout in layouts(gpus_per_node, multi_node, need.max_nodes):
        if layout.pp > 1 and any(f.layout.pp == 1 for f in fits):
            break
        result = evaluate_layout(cand, gpu, support, layout, need)
        if isinstance(result, str):
            problems.append(result)
        else:
            fits.append(result)
    if fits:
        return tuple(fits), ""
    return (), "does not fit: " + ("; ".join(problems[-2:]) if problems else "no valid layout")


def _nvlink(gpu: GpuSpec) -> bool:
    return "SXM" in gpu.interconnect or "NVSwitch" in gpu.interconnect


def objective_value(
    objective: str, est: Estimate, output_tokens: int, target: bool = False
) -> float:
    """Lower is better for every objective. With a throughput target, cost-per-token ranks by
    the total $/h of the replicas that meet it."""
    if objective == "cost-per-token" and target:
        return est.usd_per_hour
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
    replicas = fit.replicas
    nodes = fit.layout.nodes * replicas
    usd = price * nodes
    agg = fit.agg_tps * replicas
    total_factor = (need.prompt_tokens + need.output_tokens) / need.output_tokens
    used_kv = fit.kv_per_request * math.ceil(need.concurrency / fit.layout.dp)
    monthly = offer.monthly_price_usd * nodes if offer.monthly_price_usd is not None else None
    headroom = None
    if need.target_output_tokens_per_s:
        headroom = round((agg / need.target_output_tokens_per_s - 1) * 100, 1)
    return Estimate(
        single_stream_tokens_per_s=round(1 / fit.itl, 2),
        aggregate_output_tokens_per_s=round(agg, 1), batch=fit.batch,
        ttft_ms=round(fit.ttft * 1000, 1), itl_ms=round(fit.itl * 1000, 2),
        usd_per_hour=round(usd, 4),
        usd_per_million_output_tokens=round(usd / (agg * 3600) * 1e6, 4),
        usd_per_million_total_tokens=round(usd / (agg * total_factor * 3600) * 1e6, 4),
        memory_headroom_gib=round((fit.free - used_kv) / GIB, 2),
        max_concurrency=fit.max_per_replica * fit.layout.dp * replicas,
        weights_gib_per_gpu=round(fit.weights / GIB, 2),
        kv_cache_gib_per_gpu=round(used_kv / GIB, 2),
        overhead_gib_per_gpu=round(fit.overhead / GIB, 2),
        monthly_commitment_usd=round(monthly, 2) if monthly is not None else None,
        setup_fee_usd=round((offer.setup_fee_usd or 0) * nodes, 2) if monthly is not None else None,
        replicas=replicas, target_headroom_pct=headroom,
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


@dataclass(frozen=True, slots=True)
class _Group:
    """The feasible (candidate, layout) options on one kind of machine (GPU, count, whether
    it can go multi-node), best first. Their order does not depend on the price: every
    objective's value on one offer is the price times a per-option factor, or price-free."""

    options: tuple[tuple[int, _Fit], ...]
    reason: str
    by_candidate: dict[int, tuple[tuple[int, _Fit], ...]]  # the same options split by candidate


def _free_key(need: Need, fit: _Fit) -> float:
    nodes = fit.layout.nodes * fit.replicas
    if need.objective == "cost-per-token" and need.target_output_tokens_per_s:
        return nodes
    if need.objective == "cost-per-token":
        return nodes / fit.agg_tps
    if need.objective == "cost":
        return nodes
    if need.objective == "speed":
        return -fit.agg_tps * fit.replicas
    return fit.ttft * 1000 + need.output_tokens * fit.itl * 1000


def _static_violation(fit: _Fit, need: Need) -> str | None:
    """Constraints that do not depend on the price (speed, latency, replica count)."""
    if fit.replicas > need.max_replicas:
        return (
            f"{fit.replicas} replicas needed for the throughput target > "
            f"--max-replicas {need.max_replicas}"
        )
    stream = round(1 / fit.itl, 2)
    if need.min_tokens_per_s is not None and stream < need.min_tokens_per_s:
        return f"{stream:.1f} tok/s per stream < --min-tokens-per-s {need.min_tokens_per_s:g}"
    ttft = round(fit.ttft * 1000, 1)
    if need.max_ttft_ms is not None and ttft > need.max_ttft_ms:
        return f"TTFT {ttft:.0f} ms > --max-ttft {need.max_ttft_ms:g}"
    return None


def _group_for(cands: list[Candidate], gpu: GpuSpec, count: int, multi: bool, need: Need) -> _Group:
    options: list[tuple[int, _Fit]] = []
    reasons: list[str] = []
    for idx, cand in enumerate(cands):
        fits, why = _evaluate(cand, gpu, count, multi, need)
        if not fits:
            reasons.append(f"{cand.fmt.name}: {why}")
            continue
        for fit in fits:
            violation = _static_violation(fit, need)
            if violation:
                reasons.append(f"{cand.fmt.name} {fit.layout.label}: {violation}")
            else:
                options.append((idx, fit))
    options.sort(key=lambda o: (_free_key(need, o[1]), o[1].layout.nodes, o[1].layout.tp, o[0]))
    reason = reasons[-1] if len(reasons) == 1 else "; ".join(dict.fromkeys(reasons))
    split: dict[int, list[tuple[int, _Fit]]] = {}
    for option in options:
        split.setdefault(option[0], []).append(option)
    by_candidate = {i: tuple(v) for i, v in split.items()}
    return _Group(tuple(options), reason or "no valid layout", by_candidate)


def _value(need: Need, fit: _Fit, usd: float) -> float:
    """objective_value(_estimate(...)) computed without building the Estimate (same rounding).
    ``usd`` is the price of all nodes of all replicas."""
    replicas = fit.replicas
    if need.objective == "cost-per-token" and need.target_output_tokens_per_s:
        return round(usd, 4)
    if need.objective == "cost-per-token":
        return round(usd / (fit.agg_tps * replicas * 3600) * 1e6, 4)
    if need.objective == "cost":
        return round(usd, 4)
    if need.objective == "speed":
        return -round(fit.agg_tps * replicas, 1)
    return round(fit.ttft * 1000, 1) + need.output_tokens * round(fit.itl * 1000, 2)


# (sort key..., offer, candidate index, fit, price)
_Pick = tuple[float, float, str, str, str, str, str, str, Offer, int, _Fit, float]


class _Picker:
    """Chooses each offer's best option over a shared cache of machine groups."""

    def __init__(self, cands: list[Candidate], need: Need) -> None:
        self.cands, self.need = cands, need
        self.names = [c.fmt.name for c in cands]
        self.groups: dict[tuple[str, int, bool], _Group] = {}

    def group(self, offer: Offer) -> _Group | str:
        gpu = gpu_table().get(offer.gpu)
        if gpu is None:
            return f"GPU '{offer.gpu}' is not in the GPU table"
        if not (gpu.bf16_tflops_dense or gpu.fp16_tflops_dense):
            return (
                f"{gpu.name}: no published dense FP16 throughput in the GPU table, so "
                "speed and cost per token cannot be estimated"
            )
        key = (offer.gpu, offer.gpu_count, offer.provider in MULTI_NODE_PROVIDERS)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _group_for(self.cands, gpu, *key[1:], self.need)
        return group

    def price(self, offer: Offer) -> float | None:
        need = self.need
        return offer.effective_usd_per_hour(spot=need.spot, horizon_months=need.horizon_months)

    def pick(self, offer: Offer) -> tuple[_Pick | str, dict[int, _Pick]]:
        """(the offer's best option or why none, each candidate's best option)."""
        group = self.group(offer)
        if isinstance(group, str):
            return group, {}
        price = self.price(offer)
        if price is None:
            return ("no spot price" if self.need.spot else "no price"), {}
        if len(self.cands) == 1:
            got = self.pick_from(offer, price, group.options)
            return (got if isinstance(got, tuple) else got or group.reason), {}
        per: dict[int, _Pick] = {}
        reason = group.reason
        for idx, options in group.by_candidate.items():
            got = self.pick_from(offer, price, options)
            if isinstance(got, tuple):
                per[idx] = got
            elif got:
                reason = got
        if not per:
            return reason, {}
        return min(per.values(), key=lambda p: p[:8]), per

    def pick_from(
        self, offer: Offer, price: float, options: Iterable[tuple[int, _Fit]]
    ) -> _Pick | str | None:
        """The first option within --max-price (options come best first)."""
        need, over = self.need, None
        cap = need.max_price_usd_per_hour
        for idx, fit in options:
            usd = price * fit.layout.nodes * fit.replicas
            rounded = round(usd, 4)
            if cap is not None and rounded > cap:
                over = f"${usd:.2f}/h > --max-price {cap:g}"
                continue
            value = (
                round(usd / (fit.agg_tps * 3600) * 1e6, 4)
                if need.objective == "cost-per-token"
                and fit.replicas == 1
                and not need.target_output_tokens_per_s
                else _value(need, fit, usd)
            )
            return (
                value,
                rounded,
                offer.provider,
                offer.instance_type,
                offer.region,
                offer.tier or "",
                fit.label,
                self.names[idx],
                offer,
                idx,
                fit,
                price,
            )
        return over

    def plan(self, pick: _Pick) -> Plan:
        offer, idx, fit, price = pick[8], pick[9], pick[10], pick[11]
        est = _estimate(fit, offer, price, self.need)
        return _make_plan(self.cands[idx], offer, fit, est, self.need, pick[0])


class _LazyPlans(Sequence[Plan]):
    """Plans built on first access: ranking 100,000 offers need not build 100,000 Plans."""

    def __init__(self, picker: _Picker, picks: list[_Pick]) -> None:
        self._picker, self._picks = picker, picks
        self._built: dict[int, Plan] = {}

    def __len__(self) -> int:
        return len(self._picks)

    def _get(self, i: int) -> Plan:
        if i not in self._built:
            self._built[i] = self._picker.plan(self._picks[i])
        return self._built[i]

    @typing.overload
    def __getitem__(self, i: int) -> Plan: ...
    @typing.overload
    def __getitem__(self, i: slice) -> list[Plan]: ...
    def __getitem__(self, i: int | slice) -> Plan | list[Plan]:
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._get(i)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


def plan_offer(cands: Iterable[Candidate], offer: Offer, need: Need) -> Plan | str:
    """The best plan on one offer over candidates and layouts, or why none works."""
    picker = _Picker(list(cands), need)
    pick, _ = picker.pick(offer)
    return pick if isinstance(pick, str) else picker.plan(pick)


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
    if cand.spec.is_moe:
        notes.append(
            "MoE speed is uncalibrated: no MoE measurement in the calibration set "
            "(planner/decide/data/throughput_calibration.json); expect optimistic tokens/s"
        )
    if offer.gpu.startswith("mi"):
        notes.append("AMD GPU: vLLM runs from its ROCm image, not the CUDA one")
    if fit.layout.pp > 1:
        notes.append(
            f"multi-node: {fit.layout.nodes} nodes, TP within a node and PP across "
            "nodes over ordinary networking (Ray)"
        )
    if est.replicas > 1 or need.target_output_tokens_per_s:
        notes.append(
            f"{est.replicas} identical replica(s) for the target of "
            f"{need.target_output_tokens_per_s:g} output tokens/s: "
            f"{est.aggregate_output_tokens_per_s:,.0f} tokens/s, "
            f"{est.target_headroom_pct:+.0f}% headroom"
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


def rank_offers(cands: list[Candidate], offers: Iterable[Offer], need: Need) -> Ranking:
    """Every offer planned or rejected with a reason; plans strictly sorted by the objective
    (ties broken by $/h, provider, instance, region, tier, layout, format)."""
    validate_need(need)
    picker = _Picker(cands, need)
    picks: list[_Pick] = []
    rejected: list[Rejection] = []
    per_cand: dict[int, _Pick] = {}
    multi = len(cands) > 1
    cap_free = need.max_price_usd_per_hour is None
    best_raw: dict[int, float] = {}
    for offer in offers:
        if multi and cap_free:
            # Without a price cap an offer's best option and each format's best option are the
            # first of their (price-free) orders; only improvements build a pick tuple.
            group = picker.group(offer)
            price = picker.price(offer) if not isinstance(group, str) else None
            if isinstance(group, _Group) and price is not None and group.options:
                pick = picker.pick_from(offer, price, group.options[:1])
                assert isinstance(pick, tuple)
                picks.append(pick)
                for idx, options in group.by_candidate.items():
                    fit = options[0][1]
                    raw = (
                        price * _free_key(need, fit)
                        if need.objective in {"cost-per-token", "cost"}
                        else _free_key(need, fit)
                    )
                    if idx not in best_raw or raw < best_raw[idx]:
                        own = picker.pick_from(offer, price, options[:1])
                        assert isinstance(own, tuple)
                        if idx not in per_cand or own[:8] < per_cand[idx][:8]:
                            per_cand[idx], best_raw[idx] = own, raw
                continue
        pick, per = picker.pick(offer)
        if isinstance(pick, str):
            rejected.append(Rejection(offer, pick))
            continue
        picks.append(pick)
        if multi:  # each format's own best, for the --quant auto trade-offs
            for idx, own in per.items():
                if idx not in per_cand or own[:8] < per_cand[idx][:8]:
                    per_cand[idx] = own
    picks.sort(key=lambda p: p[:8])
    best = tuple(picker.plan(per_cand[i]) if i in per_cand else None for i in range(len(cands)))
    return Ranking(_LazyPlans(picker, picks), tuple(rejected), tuple(cands), best)


def validate_need(need: Need) -> None:
    if need.objective not in OBJECTIVES:
        raise UsageError(f"unknown objective '{need.objective}'", f"valid: {', '.join(OBJECTIVES)}")
    if need.target_output_tokens_per_s is not None and need.target_output_tokens_per_s <= 0:
        raise UsageError("the throughput target must be positive")
    if need.replica_headroom < 0:
        raise UsageError("replica headroom must be >= 0")
    for name in (
        "context",
        "concurrency",
        "prompt_tokens",
        "output_tokens",
        "max_nodes",
        "max_replicas",
    ):
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
    for cand in cands:
        if need.context > cand.spec.max_position_embeddings:
            raise UsageError(
                f"--context {need.context} exceeds {cand.spec.name}'s max_position_embeddings "
                f"({cand.spec.max_position_embeddings}); vLLM refuses it",
                f"use --context {cand.spec.max_position_embeddings} or less",
            )
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
