"""A brute-force oracle for the planner: every offer x candidate x layout, scored with the same
rules (pipeline parallel only when no single-node layout of that candidate fits on that offer).
Used by tests/test_recommend.py and benchmarks/plan_quality.py."""

from __future__ import annotations

import math
from collections.abc import Iterable

from planner.decide.plan import Estimate, Need
from planner.decide.rank import (
    MULTI_NODE_PROVIDERS,
    Candidate,
    _estimate,
    evaluate_layout,
    layouts,
    objective_value,
)
from planner.decide.support import check_support
from planner.offers.gpus import gpu_table
from planner.offers.offer import Offer


def _violations(est: Estimate, need: Need) -> str | None:
    """The constraints, stated on the finished Estimate (independently of the planner's fast
    path, which checks them on layouts before pricing)."""
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


def brute_force_best(cands: list[Candidate], offers: Iterable[Offer], need: Need) -> float:
    """The lowest objective value any feasible (offer, candidate, layout) reaches, or inf."""
    table = gpu_table()
    best = math.inf
    for o in offers:
        price = o.effective_usd_per_hour(spot=need.spot, horizon_months=need.horizon_months)
        gpu = table.get(o.gpu)
        if price is None or gpu is None or not (gpu.bf16_tflops_dense or gpu.fp16_tflops_dense):
            continue
        for cand in cands:
            support = check_support(gpu, cand.fmt, need.kv_cache_dtype)
            if not support.ok:
                continue
            multi = o.provider in MULTI_NODE_PROVIDERS
            fits = [
                evaluate_layout(cand, gpu, support, lay, need)
                for lay in layouts(o.gpu_count, multi, need.max_nodes)
            ]
            fits = [f for f in fits if not isinstance(f, str)]
            if any(f.layout.pp == 1 for f in fits):
                fits = [f for f in fits if f.layout.pp == 1]
            for f in fits:
                est = _estimate(f, o, price, need)
                if _violations(est, need) is None:
                    target = bool(need.target_output_tokens_per_s)
                    best = min(
                        best, objective_value(need.objective, est, need.output_tokens, target)
                    )
    return best
