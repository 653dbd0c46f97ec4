"""A brute-force oracle for the planner: every offer x candidate x layout, put under the load and
scored by planner/decide/objective.py on finished Estimates (pipeline parallel only when no
single-node layout of that candidate fits on that offer and no node holds the model with one
request). It shares the objective encoding with the planner on purpose, and shares none of its
search: no machine groups, no price-free order, no first-within-price shortcut. Used by
tests/test_recommend.py, tests/test_load_sizing.py and benchmarks/plan_quality.py."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator

from planner.decide.fit import MULTI_NODE_PROVIDERS, Candidate, fit_layout, layouts
from planner.decide.objective import (
    build_estimate,
    objective_value,
    operate,
    uses_default_service_level,
    violation,
)
from planner.decide.plan import Estimate, Need
from planner.decide.support import check_support
from planner.offers.gpus import GpuSpec, gpu_table
from planner.offers.offer import Offer


def _feasible(
    cands: list[Candidate], offers: list[Offer], need: Need
) -> Iterator[tuple[Offer, Estimate, int]]:
    """Every feasible (offer, estimate, GPUs it rents: machines x GPUs per machine)."""
    table = gpu_table()
    for o in offers:
        price = o.effective_usd_per_hour(spot=need.spot, horizon_months=need.horizon_months)
        gpu = table.get(o.gpu)
        if price is None or gpu is None or not (gpu.bf16_tflops_dense or gpu.fp16_tflops_dense):
            continue
        if need.gpus is not None and o.gpu_count != need.gpus:
            continue
        for cand in cands:
            support = check_support(gpu, cand.fmt, need.kv_cache_dtype)
            if not support.ok:
                continue
            multi = o.provider in MULTI_NODE_PROVIDERS
            fits = [
                fit_layout(cand, gpu, support, lay, need)
                for lay in layouts(o.gpu_count, multi, need.max_nodes, need)
            ]
            fits = [f for f in fits if not isinstance(f, str)]
            if any(f.layout.pp == 1 for f in fits) or node_holds_model(
                cand, gpu, o.gpu_count, need
            ):
                fits = [f for f in fits if f.layout.pp == 1]
            for f in fits:
                est = build_estimate(operate(f, need), o, price, need)
                if violation(est, need) is None:
                    yield o, est, f.layout.nodes * est.replicas * o.gpu_count


def node_holds_model(cand: Candidate, gpu: GpuSpec, gpus_per_node: int, need: Need) -> bool:
    """Pipeline parallel is planned only for models that no node holds with one request."""
    one = dataclasses.replace(need, concurrency=1)
    support = check_support(gpu, cand.fmt, need.kv_cache_dtype)
    return any(
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
    with the planner's fallback: without the default service level when no offer meets it."""
    offers = list(offers)
    values = _per_offer(cands, offers, need)
    if min(values, default=math.inf) == math.inf and uses_default_service_level(need):
        values = _per_offer(cands, offers, dataclasses.replace(need, default_service_level=False))
    return values


def brute_force_best(cands: list[Candidate], offers: Iterable[Offer], need: Need) -> float:
    """The lowest objective value any feasible (offer, candidate, layout) reaches, or inf;
    without the default service level when nothing meets it (as the planner does)."""
    offers = list(offers)
    best = _best(cands, offers, need)
    if best == math.inf and uses_default_service_level(need):
        best = _best(cands, offers, dataclasses.replace(need, default_service_level=False))
    return best


def fewest_gpus(cands: list[Candidate], offers: Iterable[Offer], need: Need) -> int | None:
    """The fewest GPUs (machines x GPUs per machine) any feasible plan rents, or None; without
    the default service level when nothing meets it (as the planner does). On a catalog whose
    price is proportional to the GPU count, the cheapest plan rents exactly this many: more
    GPUs or replicas than the load and the memory need would cost more."""
    offers = list(offers)
    counts = [n for _, _, n in _feasible(cands, offers, need)]
    if not counts and uses_default_service_level(need):
        relaxed = dataclasses.replace(need, default_service_level=False)
        counts = [n for _, _, n in _feasible(cands, offers, relaxed)]
    return min(counts, default=None)
