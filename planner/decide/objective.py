"""The one encoding of the objectives and the constraints (pure).

A fitted layout put under the user's declared load (planner/decide/load.py: `operate`) is
priced into figures (`figures`, `build_estimate`) and scored (`objective_value`, `violation`).
Ranking, the brute-force oracle in tests/oracle.py and `gpuplan check --prices` all call these
functions, so an objective or a constraint is written once.

Workloads (Need.workload): ``interactive`` (default): ``concurrency`` requests in flight, within
a default service level unless the user states one (load.py says why these numbers); when no
offer meets the default, the ranking says so and ranks without it. ``batch``: an offline job,
at saturation, ranked by $ per 1M output tokens. A throughput target (an online rate): figures
at the target, replicas from each machine's capacity within the service level.

Replicas of an interactive load: when no single machine serves it (not the KV cache of
``concurrency`` full-context requests, or not the service level at that many streams), the
ranking is redone with ``Need.stream_replicas`` (`fallback_needs`): on each layout, the fewest
identical machines whose share of the streams each vLLM replica holds in memory (and within
--max-num-seqs) and serves within the service level; $/h is machines x machine $/h. A load
that one machine serves never gets them.

Objectives (lower is better): ``auto`` (cheapest $/h that serves the load for interactive and
target loads; $ per 1M output tokens for batch), ``cost-per-token``, ``cost`` ($/h), ``speed``
(output tokens/s at the load; for an online target, whose output is the target on every plan,
each stream's speed), ``latency`` (TTFT + output x ITL). Ties go to the faster plan.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from planner.decide.fit import BATCH_WORKLOAD, Fit, saturates
from planner.decide.load import (
    DEFAULT_MAX_TTFT_MS,
    DEFAULT_MIN_TOKENS_PER_S,
    DEFAULT_REST_OF_ANSWER_S,
    DEFAULT_TTFT_PROMPT_TOKENS,
    Operating,
    online_target,
    service_level,
    short_answer_note,
    spreads,
    stream_cap,
    uses_default_service_level,
)
from planner.decide.plan import Estimate, Need
from planner.errors import UsageError
from planner.offers.offer import Offer

GIB = 1 << 30
OBJECTIVES = ("auto", "cost-per-token", "cost", "speed", "latency")
WORKLOADS = ("interactive", "batch")
RELAXED_NOTE = (
    f"no offer meets the default interactive service level ({DEFAULT_MIN_TOKENS_PER_S:g} tok/s "
    "per stream, less for answers under "
    f"{DEFAULT_MIN_TOKENS_PER_S * DEFAULT_REST_OF_ANSWER_S + 1:g} tokens, "
    f"TTFT <= {DEFAULT_MAX_TTFT_MS / 1000:g} s, longer for prompts over "
    f"{DEFAULT_TTFT_PROMPT_TOKENS:,} tokens); ranked without its defaults (limits "
    "you stated still apply)"
)


@dataclass(frozen=True, slots=True)
class Figures:
    """What objectives and constraints read; an Estimate has the same fields."""

    usd_per_hour: float
    aggregate_output_tokens_per_s: float
    single_stream_tokens_per_s: float
    ttft_ms: float
    itl_ms: float
    usd_per_million_output_tokens: float
    replicas: int


def _per_million(usd_per_hour: float, output_tokens_per_s: float) -> float:
    """$ per 1M output tokens (unrounded)."""
    return usd_per_hour / (output_tokens_per_s * 3600) * 1e6


def figures(op: Operating, usd_per_hour: float, rounded: bool = True) -> Figures:
    """The priced figures of an operating point; rounded as the Estimate shows them."""
    point = PricedPoint(op, usd_per_hour, rounded)
    return Figures(*(getattr(point, name) for name in Figures.__dataclass_fields__))


class PricedPoint:
    """The Figures of an operating point at a price, each field computed (and rounded as the
    Estimate shows it, unless ``rounded`` is False) only when read: ranking reads two of them
    per offer. The one place the figures' formulas and their rounding are written."""

    __slots__ = ("_op", "_rounded", "usd_per_hour_raw")

    def __init__(self, op: Operating, usd_per_hour: float, rounded: bool = True) -> None:
        self._op, self.usd_per_hour_raw, self._rounded = op, usd_per_hour, rounded

    def _round(self, value: float, digits: int) -> float:
        return round(value, digits) if self._rounded else value

    @property
    def usd_per_hour(self) -> float:
        return self._round(self.usd_per_hour_raw, 4)

    @property
    def aggregate_output_tokens_per_s(self) -> float:
        return self._round(self._op.tokens_per_s, 2)  # as the single stream: one figure at 1

    @property
    def single_stream_tokens_per_s(self) -> float:
        return self._round(1 / self._op.itl_s, 2)

    @property
    def ttft_ms(self) -> float:
        return self._round(self._op.ttft_s * 1000, 1)

    @property
    def itl_ms(self) -> float:
        return self._round(self._op.itl_s * 1000, 2)

    @property
    def usd_per_million_output_tokens(self) -> float:
        return self._round(_per_million(self.usd_per_hour_raw, self._op.tokens_per_s), 4)

    @property
    def replicas(self) -> int:
        return self._op.replicas


def resolved_objective(need: Need) -> str:
    """The objective ranked by: ``auto`` is $/h for interactive and target loads and $ per
    token for batch; ``cost`` of a sized job is what the job costs, its $ per token (it pays
    for the hours it runs, so a machine cheaper by the hour can cost more for the job)."""
    if need.objective == "cost" and need.job_requests:
        return "cost-per-token"
    if need.objective != "auto":
        return need.objective
    return "cost-per-token" if need.workload == BATCH_WORKLOAD else "cost"


def by_hour(need: Need) -> bool:
    """Whether cost-per-token ranks by $/h: under a throughput target the machines that meet it
    run on (their $/h is the cost). A job with a deadline pays for the hours it runs, i.e. per
    token (its replicas only make it finish in time), so it keeps ranking per token."""
    return bool(need.target_output_tokens_per_s) and not need.deadline_hours


def objective_value(subject: Any, need: Need) -> float:
    """The objective of a Plan, an Estimate or Figures under ``need``; lower is better. With a
    throughput target, cost-per-token ranks by the $/h of the machines that meet it (by_hour)."""
    fig = getattr(subject, "estimate", subject)
    objective = resolved_objective(need)
    if objective == "cost-per-token" and by_hour(need):
        return fig.usd_per_hour
    if objective == "cost-per-token":
        return fig.usd_per_million_output_tokens
    if objective == "cost":
        return fig.usd_per_hour
    if objective == "speed":
        return -_speed(fig, need)
    if objective == "latency":
        return fig.ttft_ms + need.output_tokens * fig.itl_ms
    raise UsageError(f"unknown objective '{need.objective}'", f"valid: {', '.join(OBJECTIVES)}")


def improvement(current: float, best: float) -> float:
    """How much better ``best`` is than ``current`` as a share of it (objective values: lower
    is better, and speed values are negative), 0 when there is nothing to compare."""
    return (current - best) / abs(current) if current else 0.0


def _speed(fig: Any, need: Need) -> float:
    """How fast a plan is at the load: its output tokens/s, or under an online target (whose
    output is the target on every plan) each stream's speed."""
    if online_target(need):
        return fig.single_stream_tokens_per_s
    return fig.aggregate_output_tokens_per_s


def tie_break(subject: Any, need: Need) -> float:
    """Second key: the faster plan (the cheaper one when ranking by speed)."""
    fig = getattr(subject, "estimate", subject)
    if resolved_objective(need) == "speed":
        return fig.usd_per_hour
    return -_speed(fig, need)


def priced_order(
    op: Operating, need: Need, usds_per_hour: Iterable[float]
) -> list[tuple[float, float, float]]:
    """(objective_value, tie_break, rounded $/h) of ``op`` at each $/h: the numbers those two
    functions give on PricedPoint(op, usd), with the objective dispatched once for a whole
    machine group instead of once per offer (ranking 100,000 offers calls this, not them;
    tests/test_rank_groups.py holds the two equal for every objective)."""
    objective = resolved_objective(need)
    fixed = PricedPoint(op, 0.0)
    faster = -_speed(fixed, need)  # the tie-break unless ranking by speed
    if objective == "cost-per-token" and not by_hour(need):
        tokens = op.tokens_per_s
        return [(round(_per_million(u, tokens), 4), faster, round(u, 4)) for u in usds_per_hour]
    if objective in ("cost", "cost-per-token"):  # by $/h (with a target, cost-per-token too)
        return [(usd := round(u, 4), faster, usd) for u in usds_per_hour]
    value = objective_value(fixed, need)  # speed and latency do not depend on the price
    if objective == "speed":
        return [(value, usd := round(u, 4), usd) for u in usds_per_hour]
    return [(value, faster, round(u, 4)) for u in usds_per_hour]


def order_key(op: Operating, need: Need) -> tuple[float, float]:
    """Price-free order of the options on one kind of machine: every objective is the price
    times a per-option factor, or does not depend on the price, so ordering at $1 per machine
    per hour orders them at any price. A price-free objective (speed, latency) is read from the
    rounded figures, as priced_order and the plan's Estimate read it: latency adds TTFT and
    output tokens x ITL, each rounded, so unrounded it could pick a layout that the rounded
    sum ranks behind another on the same machine."""
    price_free = resolved_objective(need) in ("speed", "latency")
    fig = figures(op, float(op.machines), rounded=price_free)
    return objective_value(fig, need), tie_break(fig, need)


def static_violation(subject: Any, need: Need) -> str | None:
    """Constraints that do not depend on the price (speed, latency, machine count), on an
    Operating point, a Plan, an Estimate or Figures."""
    op = subject if isinstance(subject, Operating) else None
    fig = figures(op, 0.0) if op else getattr(subject, "estimate", subject)
    # The service level first: machines sharing the streams are as many as meet it, so when a
    # plan misses it even so, more machines would not help (and --max-replicas is not the why).
    min_tps, max_ttft = service_level(need)
    default = " (default service level)"
    stream = fig.single_stream_tokens_per_s
    if min_tps is not None and stream < min_tps:
        label = _default_speed_label(need)
        return f"{stream:.1f} tok/s per stream < --min-tokens-per-s {min_tps:g}{label}"
    if max_ttft is not None and fig.ttft_ms > max_ttft:
        label = default if need.max_ttft_ms is None else ""
        return f"TTFT {fig.ttft_ms:.0f} ms > --max-ttft {max_ttft:g}{label}"
    if need.deadline_hours:  # the job cannot end before one of its requests does
        request_s = _request_s(fig, need)
        if request_s > need.deadline_hours * 3600:
            return (
                f"one request takes {request_s:,.0f} s at this batch > --deadline-hours "
                f"{need.deadline_hours:g}"
            )
    if fig.replicas > need.max_replicas:
        why = "for the throughput target"
        if need.deadline_hours:
            why = f"to finish {_job(need)}"
        if spreads(need):
            why = f"({replicas_reason(op, need)})" if op else f"for {need.concurrency} streams"
        return f"{fig.replicas} replicas needed {why} > --max-replicas {need.max_replicas}"
    return None


def _default_speed_label(need: Need) -> str:
    """How a rejection or note names the per-stream speed it holds: "" when the user stated
    it, else the default, and what the default stands for with a short answer."""
    if need.min_tokens_per_s is not None:
        return ""
    short = short_answer_note(need)
    return f" (default service level: {short})" if short else " (default service level)"


def _request_s(fig: Any, need: Need) -> float:
    """Seconds one request takes at the plan's load: first token, then its output tokens."""
    return fig.ttft_ms / 1000 + need.output_tokens * fig.itl_ms / 1000


def _job(need: Need) -> str:
    return f"{need.job_requests:,} requests within {need.deadline_hours:g} h"


def _streams(n: int) -> str:
    return "1 stream" if n == 1 else f"{n} streams"


def _replica_unit(op: Operating) -> str:
    """What one replica of the load is: a machine, or a pipeline over several."""
    nodes = op.fit.layout.nodes
    return "machine" if nodes == 1 else f"{nodes}-node replica"


def replicas_reason(op: Operating, need: Need) -> str:
    """Why an interactive load needs ``op.replicas`` machines (or multi-node replicas): its
    streams against what one serves, and what bounds that."""
    cap, limit = op.cap or stream_cap(op.fit, need)
    per_machine = op.fit.layout.dp * cap
    if limit == "memory":
        bound = f"KV cache for {cap} x {need.context}-token requests per vLLM replica"
    elif limit == "max-num-seqs":
        bound = f"vLLM runs at most {cap} sequences at once per replica"
    else:
        min_tps, max_ttft = service_level(need)
        if limit == "speed":
            stated = need.min_tokens_per_s is not None
            level = f"--min-tokens-per-s {min_tps:g}" if stated else f"{min_tps:g} tok/s per stream"
        else:
            stated = need.max_ttft_ms is not None
            level = (
                f"--max-ttft {max_ttft:g}" if stated else f"a first token within {max_ttft:g} ms"
            )
        default = "" if stated else " (default service level)"
        if limit == "speed":
            default = _default_speed_label(need)
        bound = f"within {level}{default}, at most {_streams(cap)} per vLLM replica"
    return f"{need.concurrency} streams > {per_machine} per {_replica_unit(op)}: {bound}"


def replicas_note(op: Operating, est: Estimate, need: Need) -> str | None:
    """What the plan says about its identical machines, if it has any (or a target)."""
    if need.target_output_tokens_per_s:
        what = f"the target of {need.target_output_tokens_per_s:g} output tokens/s"
        if need.deadline_hours:
            what = f"{_job(need)} ({need.target_output_tokens_per_s:,.0f} output tokens/s)"
        return (
            f"{est.replicas} identical replica(s) for {what}: capacity "
            f"{op.capacity:,.0f} tokens/s, {est.target_headroom_pct:+.0f}% headroom"
        )
    if est.replicas > 1:
        share = math.ceil(need.concurrency / est.replicas)
        nodes = op.fit.layout.nodes
        what = "machines" if nodes == 1 else f"{nodes}-node replicas ({op.machines} machines)"
        return (
            f"{est.replicas} replicas: {replicas_reason(op, need)}; {est.replicas} identical "
            f"{what}, each serving up to {_streams(share)}"
        )
    return None


def fallback_needs(need: Need) -> list[Need]:
    """What the ranking tries, in order, when nothing serves ``need``: identical machines
    sharing an interactive load's streams (only when it has more than one: a single stream
    gains nothing from another machine), then, when the default service level applied,
    without it (and with stream replicas again, for memory alone)."""
    spread = not saturates(need) and need.concurrency > 1 and not need.stream_replicas
    out = [replace(need, stream_replicas=True)] if spread else []
    if uses_default_service_level(need):
        relaxed = replace(need, default_service_level=False)
        out += [relaxed, replace(relaxed, stream_replicas=True)] if spread else [relaxed]
    return out


def price_violation(usd_per_hour: float, need: Need) -> str | None:
    cap = need.max_price_usd_per_hour
    if cap is not None and round(usd_per_hour, 4) > cap:
        return f"${usd_per_hour:.2f}/h > --max-price {cap:g}"
    return None


def violation(subject: Any, need: Need) -> str | None:
    """Every constraint, on a finished Plan, Estimate or Figures."""
    fig = getattr(subject, "estimate", subject)
    return price_violation(fig.usd_per_hour, need) or static_violation(fig, need)


def build_estimate(op: Operating, offer: Offer, price: float, need: Need) -> Estimate:
    """The Plan's figures: at the declared load, priced at ``price`` per machine-hour."""
    fit, machines = op.fit, op.machines
    usd = price * machines
    fig = figures(op, usd)
    agg = op.tokens_per_s
    total_factor = (need.prompt_tokens + need.output_tokens) / need.output_tokens
    streams = op.batch if spreads(need) else math.ceil(need.concurrency / fit.layout.dp)
    used_kv = fit.kv_per_request * streams
    if saturates(need):  # at saturation the batch's typical requests fill the KV cache
        used_kv = max(used_kv, fit.work_kv * op.batch)
    monthly = offer.monthly_price_usd * machines if offer.monthly_price_usd is not None else None
    setup = round((offer.setup_fee_usd or 0) * machines, 2) if monthly is not None else None
    headroom = job_hours = job_usd = None
    if need.target_output_tokens_per_s:
        headroom = round((op.capacity / need.target_output_tokens_per_s - 1) * 100, 1)
    if need.job_requests:  # the tokens at the aggregate rate, and never under one request
        hours = max(need.job_requests * need.output_tokens / agg, _request_s(fig, need)) / 3600
        job_hours, job_usd = round(hours, 6), round(hours * usd, 2)
    return Estimate(
        single_stream_tokens_per_s=fig.single_stream_tokens_per_s,
        aggregate_output_tokens_per_s=fig.aggregate_output_tokens_per_s, batch=op.batch,
        ttft_ms=fig.ttft_ms, itl_ms=fig.itl_ms, usd_per_hour=fig.usd_per_hour,
        usd_per_million_output_tokens=fig.usd_per_million_output_tokens,
        usd_per_million_total_tokens=round(usd / (agg * total_factor * 3600) * 1e6, 4),
        memory_headroom_gib=round((fit.free - used_kv) / GIB, 2),
        max_concurrency=fit.max_per_replica * fit.layout.dp * op.replicas,
        weights_gib_per_gpu=round(fit.weights / GIB, 2),
        kv_cache_gib_per_gpu=round(used_kv / GIB, 2),
        overhead_gib_per_gpu=round(fit.overhead / GIB, 2),
        monthly_commitment_usd=round(monthly, 2) if monthly is not None else None,
        setup_fee_usd=setup,
        replicas=op.replicas, target_headroom_pct=headroom, job_hours=job_hours,
        job_usd=job_usd, model_weights_gib=_shared_weights_gib(fit),
    )  # fmt: skip


def _shared_weights_gib(fit: Fit) -> float | None:
    """One replica's weights over its GPUs when data-parallel replicas share the routed experts
    (spread over tp x dp GPUs; fit.memory_budget), else None (weights per GPU x GPUs)."""
    dp = fit.load.moe_dp
    if dp <= 1:
        return None
    gpus = fit.layout.tp * fit.layout.pp
    experts = fit.load.expert_bytes_per_gpu
    return round(((fit.weights - experts) * gpus + experts * gpus * dp) / GIB, 2)
