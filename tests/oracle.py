"""A brute-force oracle for the planner: every offer x candidate x layout, put under the load and
scored by planner/decide/objective.py on finished Estimates (pipeline parallel only when no
single-node layout of that candidate fits on that offer). It shares the objective encoding with
the planner on purpose, and shares none of its search: no machine groups, no price-free order,
no first-within-price shortcut. Used by tests/test_recommend.py and benchmarks/plan_quality.py."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

from planner.decide.fit import MULTI_NODE_PROVIDERS, Candidate, fit_layout, layouts
from planner.decide.objective import (
    build_estimate,
    objective_value,
    operate,
    uses_default_service_level,
    violation,
)
from planner.decide.plan import Need
from planner.decide.support import check_support
from planner.offers.gpus import gpu_table
from planner.offers.offer import Offer


def _per_offer(cands: list[Candidate], offers: list[Offer], need: Need) -> list[float]:
    table = gpu_table()
    out = []
    for o in offers:
        best = math.inf
        out.append(best)
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
            if any(f.layout.pp == 1 for f in fits):
                fits = [f for f in fits if f.layout.pp == 1]
            for f in fits:
                est = build_estimate(operate(f, need), o, price, need)
                if violation(est, need) is None:
                    best = min(best, objective_value(est, need))
        out[-1] = best
    return out


def _best(cands: list[Candidate], offers: list[Offer], need: Need) -> float:
    return min(_per_offer(cands, offers, need), default=math.inf)


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
