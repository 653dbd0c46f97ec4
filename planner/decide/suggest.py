"""Whether a near-lossless quantization serves the same load materially cheaper (pure).

A user who does not choose a quantization gets plans for the checkpoint's own dtype (usually
BF16). FP8 halves the weights and, in published evaluations, keeps the model's quality: FP8
W8A8 recovers ~99-100% of BF16 accuracy on the whole Llama 3.1 family (Kurtic et al., "Give
Me BF16 or Give Me Death? Accuracy-Performance Trade-Offs in LLM Quantization",
https://arxiv.org/abs/2411.02355, read 2026-11-30); weight-only FP8 (Marlin, below compute
capability 8.9) leaves the activations in 16 bits and loses no more. So when FP8 serves the
same load, within the same constraints, at least MIN_SAVING cheaper, the planner says so with
the figures. INT4 formats lose measurably more (1-3%) and are left to `--quant auto`.

MIN_SAVING is 20%, a judgement: a smaller saving is within what moves without any change of
format (in the embedded catalog one instance type's price differs between regions of one
provider by 7% in the median and up to 30%; cost-per-token figures rest on a speed model whose
median out-of-sample error is ~23%, README), so suggesting a format change for it would be
noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import compress
from typing import Any

from planner.decide.fit import MULTI_NODE_PROVIDERS, Candidate, candidates_for
from planner.decide.objective import by_hour, improvement, resolved_objective, saturates
from planner.decide.plan import Need, Plan
from planner.decide.rank import plan_offer, rank_offers
from planner.decide.rentable import held_candidates
from planner.model.footprint import resolve_format, weight_bytes
from planner.model.quant import get_format
from planner.model.values import ModelSpec
from planner.offers.gpus import gpu_table
from planner.offers.offer import Offer
from planner.offers.table import OfferTable

NEAR_LOSSLESS_KINDS = frozenset({"fp8"})
MIN_SAVING = 0.20


@dataclass(frozen=True, slots=True)
class Cheaper:
    """Another plan for the same load under the same constraints as ``current``, and what it
    saves (a near-lossless format: QuantSuggestion; identical machines sharing the streams:
    cheaper_spread)."""

    current: Plan
    plan: Plan
    measure: str  # what is compared: "usd_per_hour" | "usd_per_million_output_tokens"
    current_value: float
    value: float
    saving: float  # share of current_value saved, >= MIN_SAVING


@dataclass(frozen=True, slots=True)
class QuantSuggestion(Cheaper):
    """A near-lossless format's best plan, under the same load and constraints as ``current``,
    and what it saves."""

    @property
    def quant_flag(self) -> str | None:
        """`--quant fp8` when vLLM quantizes the checkpoint at load time; None when the plan
        serves a pre-quantized checkpoint (pass its id as MODEL instead)."""
        return (
            f"--quant {self.plan.quant_format}" if self.plan.model == self.current.model else None
        )


def near_lossless_candidates(
    cands: Sequence[Candidate], variants: Sequence[ModelSpec] = ()
) -> list[Candidate]:
    """FP8 ways to serve the checkpoint of ``cands`` (online FP8 and the pre-quantized FP8
    ``variants``), or [] unless ``cands`` is the one unquantized checkpoint of a plain run."""
    if not _plain(cands):
        return []
    native = cands[0]
    spec = native.spec
    fmt, qc = resolve_format(spec, "fp8")
    # candidates_for(spec, "fp8") with the native candidate's parameter count (the same for
    # every format): counting again would double the cost of the suggestion
    out = [replace(native, fmt=fmt, qc=qc, online_quantization=True,
                   weights=weight_bytes(spec, fmt, qc))]  # fmt: skip
    for v in variants:
        if v.quant is not None and get_format(v.quant.format).kind in NEAR_LOSSLESS_KINDS:
            # served under the base model's name, as --quant auto does
            out += [replace(c, base_model=spec.name) for c in candidates_for(v, None)]
    return out


def _plain(cands: Sequence[Candidate]) -> bool:
    return len(cands) == 1 and cands[0].fmt.kind == "float" and cands[0].spec.quant is None


def screen_offers(
    current: Plan, cands: Sequence[Candidate], offers: Iterable[Offer]
) -> list[Offer]:
    """The offers that could host a near-lossless plan beating ``current`` (before building
    any FP8 candidate, which costs a pass over the model's tensors): priced at most
    (1 - MIN_SAVING) x its $/h when the comparison is in $/h (a plan costs at least one
    machine), and with memory for FP8 weights, which are at least 8/bits of the native ones
    (every tensor is kept or stored in 8 bits plus scales; 10% margin for kernels that
    repack). [] unless ``cands`` is the one unquantized checkpoint of a plain run."""
    if not _plain(cands):
        return []
    need, native = current.need, cands[0]
    floor_bytes = 0.9 * native.weights.served * 8 / native.fmt.bits
    hourly = compared_measure(need) == "usd_per_hour"
    bound = current.estimate.usd_per_hour * (1 - MIN_SAVING) if hourly else math.inf
    table = gpu_table()
    # Read from columns: a cache's 50,000 offers need not become Offers to be screened.
    offers = offers if isinstance(offers, OfferTable) else OfferTable.from_offers(offers)

    def has_room(gpu_id: str, count: int, provider: str) -> bool:
        gpu = table.get(gpu_id)
        if gpu is None:
            return False
        nodes = need.max_nodes if provider in MULTI_NODE_PROVIDERS else 1
        usable = gpu.usable_memory_bytes * need.gpu_memory_utilization * count * nodes
        return usable >= floor_bytes

    prices = offers.effective_usd_per_hour(need.spot, need.horizon_months)
    kinds = offers.tuples(("gpu", "gpu_count", "provider"))
    roomy = {kind: has_room(*kind) for kind in dict.fromkeys(kinds)}  # per kind of machine
    keep = list(compress(range(len(kinds)), map(roomy.__getitem__, kinds)))
    if bound < math.inf:  # an offer without a price passes only an infinite bound
        keep = [pos for pos in keep if (price := prices[pos]) is not None and price <= bound]
    return list(offers.take(keep))


def compared_measure(need: Need) -> str | None:
    """What a cheaper format is compared on: the objective when it is a cost; None when the
    user ranks by speed or latency (then a cheaper plan is not what they asked for)."""
    objective = resolved_objective(need)
    if objective == "cost" or (objective == "cost-per-token" and by_hour(need)):
        return "usd_per_hour"
    if objective == "cost-per-token":
        return "usd_per_million_output_tokens"
    return None


def best_alternative(
    current: Plan,
    cands: Sequence[Candidate],
    offers: Iterable[Offer],
    accept: Callable[[Plan], bool] | None = None,
    every_offer: Iterable[Offer] | None = None,
    every_order: Callable[[list[int]], list[Any]] | None = None,
    catalog: Iterable[Offer] | None = None,
) -> Plan | None:
    """The best plan of ``cands`` under ``current``'s need (service level never relaxed) that
    ``accept`` takes, or None. First on ``offers`` (screened) and on one machine: when
    ``current`` shares its streams between identical machines (Need.stream_replicas), a format
    that serves them on one machine is what `--quant` would give. Only when none does is the
    format ranked as `--quant` would rank it, on ``every_offer`` (the unscreened offers:
    whether one machine serves the load is decided over all of them; ``every_order``: their
    tie-break keys, rank_offers' order_keys), and its plan taken if it shares the streams too.

    In $/h a plan costs at least one machine's price, so only machines cheaper than
    (1 - MIN_SAVING) x the current $/h can win. Without ``accept``, kinds of machine (GPU,
    count, multi-node) are tried cheapest first and the search stops at the first price above
    the best plan found: the answer is one line of output and must not cost a second full
    ranking. (``accept`` reads each offer's own facts, so it gets the plain ranking.)
    ``catalog``: every offer of the recommendation (default: ``every_offer``, else ``offers``),
    whose nodes decide where a pipeline over nodes is planned, as for `--quant`."""
    # --spread asked for machines sharing the streams: the format is ranked as `--quant` with
    # --spread ranks it; otherwise on one machine first
    need = current.need if current.need.spread else replace(current.need, stream_replicas=False)
    cands, offers = list(cands), list(offers)
    source = catalog if catalog is not None else every_offer
    held = held_candidates(cands, source if source is not None else offers, need)
    if compared_measure(need) == "usd_per_hour":
        bound = current.estimate.usd_per_hour * (1 - MIN_SAVING)
        offers = [o for o in offers if _price(o, need) <= bound]  # screen_offers may not have run
        if accept is None:
            offers = _as_cheap_as_the_best(cands, offers, need, bound, held)
    found = _first(rank_offers(cands, offers, need, held=held).plans, need, accept)
    if found is not None or need.stream_replicas or every_offer is None:
        return found
    ranked = rank_offers(cands, every_offer, need, every_order, held)
    return _first(ranked.plans, current.need, accept)


def _first(
    ranked: Sequence[Plan], need: Need, accept: Callable[[Plan], bool] | None = None
) -> Plan | None:
    """The first plan ``accept`` takes of a ranking made for ``need``, or None when the
    ranking fell back to another need. Every plan of one ranking carries the same need, so it
    is read once: reading it on each plan built every plan of a fallback ranking to find none
    (27,492 of them on 50,000 offers at 3,000 streams)."""
    if not ranked or ranked[0].need != need:
        return None
    return next((p for p in ranked if accept is None or accept(p)), None)


def _as_cheap_as_the_best(
    cands: list[Candidate], offers: list[Offer], need: Need, bound: float, held: dict[int, str]
) -> list[Offer]:
    """The offers priced at or below the best $/h any of them reaches (each offer is planned
    on its own, so the best plan among them is the best of all)."""
    cheapest: dict[tuple[str, int, bool], tuple[float, Offer]] = {}
    for o in offers:
        price, kind = _price(o, need), (o.gpu, o.gpu_count, o.provider in MULTI_NODE_PROVIDERS)
        if kind not in cheapest or price < cheapest[kind][0]:
            cheapest[kind] = (price, o)
    best = math.inf
    for price, o in sorted(cheapest.values(), key=lambda po: po[0]):
        if price > min(best, bound):
            break
        plan = plan_offer(cands, o, need, held)  # a kind's cheapest offer: its lowest $/h
        if isinstance(plan, Plan):
            best = min(best, price * plan.machines)
    return [o for o in offers if _price(o, need) <= best] if best < math.inf else []


def _price(o: Offer, need: Need) -> float:
    """The price a plan pays per machine-hour (inf: no price, which no plan uses)."""
    price = o.effective_usd_per_hour(spot=need.spot, horizon_months=need.horizon_months)
    return math.inf if price is None else price


def cheaper_quantization(current: Plan, alternative: Plan | None) -> QuantSuggestion | None:
    """The suggestion when ``alternative`` (a near-lossless format's best plan) serves
    ``current``'s load under the same constraints at least MIN_SAVING cheaper, else None."""
    measure = compared_measure(current.need)
    if alternative is None or measure is None:
        return None
    if alternative.need not in (current.need, replace(current.need, stream_replicas=False)):
        return None  # a different need: e.g. ranked without the default service level
    return _saving(QuantSuggestion, current, alternative, measure)


def _saving(kind: type[Cheaper], current: Plan, alternative: Plan, measure: str) -> Any:
    """``kind`` of suggestion when ``alternative`` saves at least MIN_SAVING on ``measure``."""
    current_value = getattr(current.estimate, measure)
    value = getattr(alternative.estimate, measure)
    saving = improvement(current_value, value)
    if saving < MIN_SAVING:
        return None
    return kind(current, alternative, measure, current_value, value, saving)


def cheaper_spread(
    current: Plan,
    cands: Sequence[Candidate],
    offers: Iterable[Offer],
    order: Callable[[list[int]], list[Any]] | None = None,
    accept: Callable[[Plan], bool] | None = None,
) -> Cheaper | None:
    """Whether identical machines sharing an interactive load's streams (--spread) serve
    ``current``'s load, under the same constraints and service level, at least MIN_SAVING
    cheaper than ``current`` does on one machine; ranked as `--spread` ranks it, on ``offers``
    (``order``: their tie-break keys, rank_offers' order_keys). ``accept`` skips plans the
    caller cannot use (generate: plans it cannot write).

    One machine is the default (one endpoint, nothing to balance, and on RunPod, Vast and
    Hetzner no load balancer to bring), so the planner only says when several would cost
    materially less. In $/h such a plan costs at least two machines, so only machines priced
    at most (1 - MIN_SAVING) / 2 x the current $/h are ranked: the answer is one line of
    output and must not cost a second ranking of a 50,000-offer catalog."""
    need = current.need
    measure = compared_measure(need)
    if measure is None or need.stream_replicas or saturates(need) or need.concurrency < 2:
        return None
    shared = replace(need, stream_replicas=True, spread=True)  # as --spread ranks it
    table = offers if isinstance(offers, OfferTable) else OfferTable.from_offers(offers)
    held = held_candidates(list(cands), table, shared)  # on every offer, before the screen
    keep: Sequence[int] = range(len(table))
    if measure == "usd_per_hour":
        bound = current.estimate.usd_per_hour * (1 - MIN_SAVING) / 2
        prices = table.effective_usd_per_hour(need.spot, need.horizon_months)
        keep = [pos for pos in keep if (price := prices[pos]) is not None and price <= bound]
        table = table.take(keep)
    if not len(table):
        return None
    keys = None if order is None else (lambda ps: order([keep[p] for p in ps]))
    ranked = rank_offers(list(cands), table, shared, keys, held).plans
    found = _first(ranked, shared, lambda p: p.estimate.replicas > 1 and (not accept or accept(p)))
    return None if found is None else _saving(Cheaper, current, found, measure)
