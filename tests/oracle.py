"""A brute-force oracle for the planner: every offer x candidate x layout, put under the load and
scored by planner/decide/objective.py on finished Estimates (pipeline parallel only when no
single-node layout of that candidate fits on that offer and no node of the catalog holds the
model with one request). It shares the objective encoding with the planner on purpose, and
shares none of its search: no machine groups, no price-free order, no first-within-price
shortcut, no bisection of the streams a replica serves. When nothing serves the load, it tries
again as the planner should (`_needs`): identical machines sharing an interactive load's
streams, each layout with 1, 2, ... --max-replicas machines until one serves it; then without
the default service level. Used by tests/test_recommend.py, tests/test_load_sizing.py and
benchmarks/plan_quality.py."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator

from planner.decide.fit import (
    MULTI_NODE_PROVIDERS,
    Candidate,
    Fit,
    fit_layout,
    layouts,
)
from planner.decide.load import operate, operate_with, uses_default_service_level
from planner.decide.objective import build_estimate, objective_value, violation
from planner.decide.plan import Estimate, Need
from planner.decide.support import check_support
from planner.model.footprint import default_max_num_seqs
from planner.offers.gpus import GpuSpec, gpu_table
from planner.offers.offer import Offer


def _feasible(
    cands: list[Candidate], offers: list[Offer], need: Need
) -> Iterator[tuple[Offer, Estimate, int]]:
    """Every feasible (offer, estimate, GPUs it rents: machines x GPUs per machine). Pipeline
    parallel only for a candidate that no node of the catalog (the offers that could be
    planned) holds with one request."""
    table = gpu_table()
    usable = []
    for o in offers:
        price = o.effective_usd_per_hour(spot=need.spot, horizon_months=need.horizon_months)
        if need.job_requests and o.billing == "monthly":
            continue  # a job pays for its hours; a monthly rental bills whole months
        gpu = table.get(o.gpu)
        if price is None or gpu is None or not (gpu.bf16_tflops_dense or gpu.fp16_tflops_dense):
            continue
        if need.gpus is not None and o.gpu_count != need.gpus:
            continue
        usable.append((o, gpu, price))
    cap = need.max_price_usd_per_hour  # a node over --max-price cannot be the plan
    held = [
        any(
            node_holds_model(cand, gpu, o.gpu_count, need)
            for o, gpu, price in usable
            if cap is None or price <= cap
        )
        for cand in cands
    ]
    for o, gpu, price in usable:
        for cand, cand_held in zip(cands, held, strict=True):
            support = check_support(gpu, cand.fmt, need.kv_cache_dtype, cand.spec)
            if not support.ok:
                continue
            multi = o.provider in MULTI_NODE_PROVIDERS
            fits = [
                fit_layout(cand, gpu, support, lay, need)
                for lay in layouts(o.gpu_count, multi, need.max_nodes, need)
            ]
            fits = [f for f in fits if not isinstance(f, str)]
            if any(f.layout.pp == 1 for f in fits) or cand_held:
                fits = [f for f in fits if f.layout.pp == 1]
            for f in fits:
                est = _served(f, o, price, need)
                if est is not None:
                    yield o, est, f.layout.nodes * est.replicas * o.gpu_count


def _served(f: Fit, o: Offer, price: float, need: Need) -> Estimate | None:
    """The fit's estimate at the load if it meets every constraint; with stream replicas, at
    the fewest identical machines (tried one by one) whose share of the streams each vLLM
    replica holds (full-context requests, at most the card's default at once) and serves in time."""
    if not need.stream_replicas or need.workload == "batch" or need.target_output_tokens_per_s:
        est = build_estimate(operate(f, need), o, price, need)
        return est if violation(est, need) is None else None
    # what vLLM runs at once on this card by default (above it the plan would queue streams)
    seqs = default_max_num_seqs(f.hw.gpu.usable_memory_bytes, f.hw.gpu.name)
    for machines in range(1, need.max_replicas + 1):
        streams = math.ceil(need.concurrency / (machines * f.layout.dp))
        if streams > min(f.max_per_replica, seqs):
            continue
        est = build_estimate(operate_with(f, need, machines), o, price, need)
        if violation(est, need) is None:
            return est
    return None


def _needs(need: Need) -> Iterator[Need]:
    """The load as asked, then what the planner tries when nothing serves it: identical
    machines sharing an interactive load's streams, then without the default service level
    (with them again, for memory alone)."""
    shared = need.workload != "batch" and not need.target_output_tokens_per_s
    if need.spread and shared:  # --spread: machines share the streams from the start
        need = dataclasses.replace(need, stream_replicas=True)
    yield need
    if shared:
        yield dataclasses.replace(need, stream_replicas=True)
    if uses_default_service_level(need):
        relaxed = dataclasses.replace(need, default_service_level=False)
        yield relaxed
        if shared:
            yield dataclasses.replace(relaxed, stream_replicas=True)


def node_holds_model(cand: Candidate, gpu: GpuSpec, gpus_per_node: int, need: Need) -> bool:
    """Pipeline parallel is planned only for models that no node holds with one request."""
    one = dataclasses.replace(need, concurrency=1)
    support = check_support(gpu, cand.fmt, need.kv_cache_dtype, cand.spec)
    return support.ok and any(
        not isinstance(fit_layout(cand, gpu, support, lay, one), str)
        for lay in layouts(gpus_per_node, False, 1, one)
    )


def _best(cands: list[Candidate], offers: list[Offer], need: Need) -> float:
    return min((objective_value(est, need) for _, est, _ in _feasible(cands, offers, need)),
               default=math.inf)  # fmt: skip


def _per_offer(cands: list[Candidate], offers: list[Offer], need: Need) -> list[float]:
    best = [math.inf] * len(offers)
    index = {id(o): i for i, o in enumerate(offers)}
    for o, est, _ in _feasible(cands, offers, need):
        i = index[id(o)]
        best[i] = min(best[i], objective_value(est, need))
    return best


def brute_force_per_offer(
    cands: list[Candidate], offers: Iterable[Offer], need: Need
) -> list[float]:
    """Each offer's lowest objective value over candidates and layouts (inf: none feasible),
    under the first of `_needs` that any offer serves."""
    offers = list(offers)
    values = [math.inf] * len(offers)
    for attempt in _needs(need):
        values = _per_offer(cands, offers, attempt)
        if min(values, default=math.inf) < math.inf:
            break
    return values


def brute_force_best(cands: list[Candidate], offers: Iterable[Offer], need: Need) -> float:
    """The lowest objective value any feasible (offer, candidate, layout) reaches, or inf,
    under the first of `_needs` that any offer serves (as the planner does)."""
    offers = list(offers)
    for attempt in _needs(need):
        best = _best(cands, offers, attempt)
        if best < math.inf:
            return best
    return math.inf


def brute_force_need(cands: list[Candidate], offers: Iterable[Offer], need: Need) -> Need | None:
    """The first of `_needs` that any offer serves (the need the planner's plans carry)."""
    offers = list(offers)
    return next((n for n in _needs(need) if _best(cands, offers, n) < math.inf), None)


def fewest_gpus(cands: list[Candidate], offers: Iterable[Offer], need: Need) -> int | None:
    """The fewest GPUs (machines x GPUs per machine) any feasible plan rents, or None, under
    the first of `_needs` that any offer serves (as the planner does). On a catalog whose
    price is proportional to the GPU count, the cheapest plan rents exactly this many: more
    GPUs or replicas than the load and the memory need would cost more."""
    offers = list(offers)
    for attempt in _needs(need):
        counts = [n for _, _, n in _feasible(cands, offers, attempt)]
        if counts:
            return min(counts)
    return None
