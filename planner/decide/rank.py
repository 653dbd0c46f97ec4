"""Rank: each offer's best plan for the user's load, strictly sorted by the objective (pure).

Fit (planner/decide/fit.py) says which layouts start; the objective module
(planner/decide/objective.py) puts them under the declared load and scores them. Offers of the
same kind of machine (GPU, count, multi-node or not) share their layouts' order, which does not
depend on the price: offers are bucketed by machine, and each candidate's first option is
priced for a whole bucket at once (objective.priced_order), so an offer costs a price and a
tuple per candidate (with --max-price, a pass over a short sorted list). Without --max-price
only the first plans are worked out, pricing a few offers per kind (_Picker.pick_top), and
Plans are built lazily: a report of the top 10 out of 100,000 offers builds 10 Plans.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import typing
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from planner.decide.checks import check_context, check_tp, no_feasible_offer, validate_need
from planner.decide.fit import (
    MULTI_NODE_PROVIDERS,
    Candidate,
    candidates_for,
    feasible_fits,
)
from planner.decide.lazyplans import FIRST_PLANS, LazyPlans, Rejection, Rejections
from planner.decide.load import Operating, operate
from planner.decide.objective import (
    OBJECTIVES,
    RELAXED_NOTE,
    build_estimate,
    fallback_needs,
    order_key,
    price_violation,
    priced_order,
    saturates,
    static_violation,
)
from planner.decide.plan import Need, Plan
from planner.decide.planbuild import make_plan, vllm_args
from planner.decide.rentable import held_candidates, monthly_for_a_job, plan_prices, speed_known
from planner.gcpause import cyclic_gc_paused
from planner.offers.gpus import GpuSpec, gpu_table
from planner.offers.offer import Offer
from planner.offers.table import OfferTable

__all__ = [
    "OBJECTIVES", "Candidate", "Ranking", "Rejection", "best_alternatives",
    "candidates_for", "plan_offer", "rank_offers", "recommend", "vllm_args",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Ranking:
    plans: Sequence[Plan]  # each offer's best plan, strictly sorted by the objective
    rejected: Rejections  # each offer no option serves, and why (Offers built when read)
    candidates: tuple[Candidate, ...]
    best_per_candidate: tuple[Plan | None, ...] = ()  # over all offers, for --quant auto
    # the offer of each plan, in the same order (no Plan, nor Offer, built until read)
    offers: OfferTable = dataclasses.field(default_factory=OfferTable.empty)
    notes: tuple[str, ...] = ()  # about the ranking as a whole


@dataclass(frozen=True, slots=True)
class _Group:
    """The feasible (candidate index, operating point) options on one kind of machine, best
    first, overall and per candidate."""

    options: tuple[tuple[int, Operating], ...]
    reason: str
    by_candidate: dict[int, tuple[tuple[int, Operating], ...]]


# A priced option of one offer: its ranking key (objective, tie-break, $/h, (provider,
# instance, region, tier), layout, format), then the offer's place in the order the caller
# states (`order_keys`: the order of a filter's sorted result, not worked out for every offer;
# () when the input order is that order) and its input position (equal keys keep the input
# order, as a stable sort by key did), the candidate's place in the machine group's
# order (an offer's equal keys across formats keep that order, as min() over them did), and
# what builds the Plan: candidate index, operating point, price (the offer is the one at the
# position). A plain tuple, so that sorting 100,000 of them compares floats first in C; a
# position and a place are unique together, so nothing after them is ever compared.
_Rec = tuple[typing.Any, ...]
_Keys = Callable[[list[int]], list[typing.Any]] | None  # positions -> their order keys
_POS, _IDX, _OP, _PRICE = 7, 9, 10, 11


PIPELINE_NOT_NEEDED = (
    "one node in the catalog holds the model ({}): pipeline parallel across nodes is planned "
    "only for models no node holds"
)


def _group_for(
    cands: list[Candidate],
    gpu: GpuSpec,
    count: int,
    multi: bool,
    need: Need,
    held: dict[int, str] | None = None,
) -> _Group:
    """The machine group's options (``held``: held_candidates, which get no pipeline)."""
    options: list[tuple[tuple[float, ...], int, Operating]] = []
    reasons: list[str] = []
    held = held or {}
    for idx, cand in enumerate(cands):
        fits, why = feasible_fits(cand, gpu, count, multi and idx not in held, need)
        if not fits and multi and idx in held:
            why = f"{PIPELINE_NOT_NEEDED.format(held[idx])}; {why}"
        if not fits:
            reasons.append(f"{cand.fmt.name}: {why}")
            continue
        for fit in fits:
            op = operate(fit, need)
            problem = static_violation(op, need)
            if problem:
                reasons.append(f"{cand.fmt.name} {fit.layout.label}: {problem}")
            else:
                lay = fit.layout
                options.append(((*order_key(op, need), lay.nodes, lay.tp, idx), idx, op))
    options.sort(key=lambda o: o[0])
    ordered = tuple((idx, op) for _, idx, op in options)
    split: dict[int, list[tuple[int, Operating]]] = {}
    for option in ordered:
        split.setdefault(option[0], []).append(option)
    reason = "; ".join(dict.fromkeys(reasons)) or "no valid layout"
    return _Group(ordered, reason, {i: tuple(v) for i, v in split.items()})


class _Labels(dict):  # type: ignore[type-arg]
    """Layout -> label, computed once per layout (the ranking's tie-break reads it per offer)."""

    def __missing__(self, layout: typing.Any) -> str:
        self[layout] = label = layout.label
        return label


def _keep_best(per_offer: list[list[_Rec]], per_cand: dict[int, _Rec], best: list[_Rec]) -> None:
    """Offers priced by every candidate (``per_offer``: a list of options per candidate, one
    per offer): each offer's best option goes to ``best``, each candidate's best so far to
    ``per_cand``."""
    for recs in per_offer:
        own = min(recs)
        if own[_IDX] not in per_cand or own < per_cand[own[_IDX]]:
            per_cand[own[_IDX]] = own
    best += per_offer[0] if len(per_offer) == 1 else map(min, *per_offer)


class _Picker:
    """Chooses each offer's best option over a shared cache of machine groups. Offers are read
    from the table's columns: an Offer is built only for a plan or a rejection."""

    def __init__(
        self,
        cands: list[Candidate],
        need: Need,
        offers: OfferTable,
        order_keys: _Keys = None,
        held: dict[int, str] | None = None,
    ) -> None:
        self.cands, self.need, self.offers, self.order_keys = cands, need, offers, order_keys
        self.groups: dict[tuple[str, int, bool], _Group] = {}
        self.labels: list[_Labels] = [_Labels() for _ in cands]
        self._work: tuple[list[tuple[_Group, list[int]]], list[tuple[int, str]]] | None = None
        self.prices: list[typing.Any] = []  # $/h (None: no price) by position
        # candidates one node of the catalog holds (held_candidates; default: of ``offers``,
        # worked out in live() from its prices)
        self.held = held

    def group(self, gpu_id: str, gpu_count: int, provider: str) -> _Group | str:
        gpu = gpu_table().get(gpu_id)
        if gpu is None:
            return f"GPU '{gpu_id}' is not in the GPU table"
        if not speed_known(gpu):
            return (
                f"{gpu.name}: no published dense FP16 throughput in the GPU table, so "
                "speed and cost per token cannot be estimated"
            )
        key = (gpu_id, gpu_count, provider in MULTI_NODE_PROVIDERS)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _group_for(self.cands, gpu, *key[1:], self.need, self.held)
        return group

    def live(self) -> tuple[list[tuple[_Group, list[int]]], list[tuple[int, str]]]:
        """The offers that get a plan, as (machine group, their positions in input order) per
        kind of machine, and why the others get none (by position). Worked out once."""
        if self._work is not None:
            return self._work
        need = self.need
        buckets: defaultdict[tuple[str, int, str], list[int]] = defaultdict(list)
        for pos, kind in enumerate(self.offers.tuples(("gpu", "gpu_count", "provider"))):
            buckets[kind].append(pos)
        monthly = monthly_for_a_job(self.offers, need)
        prices = self.prices = plan_prices(self.offers, need, monthly)
        unpriced, work, rejected = None in prices, [], []  # type: ignore[var-annotated]
        if self.held is None:
            self.held = held_candidates(self.cands, self.offers, need, prices)
        for kind, positions in buckets.items():
            group = self.group(*kind)
            if isinstance(group, str):
                rejected += [(pos, group) for pos in positions]
                continue
            live = positions
            if unpriced:  # spot prices: some offers have none
                no_price = "no spot price" if need.spot else "no price"
                rejected += [(pos, MONTHLY_JOB if pos in monthly else no_price)
                             for pos in positions if prices[pos] is None]  # fmt: skip
                live = [pos for pos in positions if prices[pos] is not None]
            if not group.options:
                rejected += [(pos, group.reason) for pos in live]
            elif live:
                work.append((group, live))
        self._work = work, rejected
        return self._work

    def _priced(self, group: _Group, positions: list[int]) -> list[list[typing.Any]]:
        """Each candidate's option on each offer at ``positions``, one list per candidate."""
        live = [(pos, self.prices[pos]) for pos in positions]
        names = self.offers.values_at(("provider", "instance_type", "region", "tier"), positions)
        tails = [(p, i, r, t or "") for p, i, r, t in names]  # the tie-break after the price
        keys = self.order_keys(positions) if self.order_keys else [()] * len(positions)
        return [
            self._price(live, tails, keys, order, idx, options)
            for order, (idx, options) in enumerate(group.by_candidate.items())
        ]

    def pick_all(self) -> tuple[list[_Rec], list[tuple[int, str]], dict[int, _Rec]]:
        """Each offer's best option (in input order within a machine group), why the others
        have none (by position), and each candidate's best option over all offers. Offers are
        bucketed by machine kind, so fits, speeds and the objective's dispatch are worked out
        once per kind and each offer costs a price and a tuple per candidate."""
        capped = self.need.max_price_usd_per_hour is not None
        work, rejected = self.live()
        rejected = list(rejected)
        best: list[_Rec] = []
        per_cand: dict[int, _Rec] = {}
        for group, live in work:
            per_offer = self._priced(group, live)
            if not capped:  # every candidate priced every offer
                _keep_best(per_offer, per_cand, best)
                continue
            for recs in per_offer:
                own = min((r for r in recs if not isinstance(r, str)), default=None)
                if own is not None and (own[_IDX] not in per_cand or own < per_cand[own[_IDX]]):
                    per_cand[own[_IDX]] = own
            for pos, options in zip(live, zip(*per_offer, strict=True), strict=True):
                picked = [r for r in options if not isinstance(r, str)]
                if picked:
                    best.append(min(picked))
                else:
                    rejected.append((pos, options[-1]))
        return best, rejected, per_cand

    def pick_top(self, k: int) -> tuple[list[_Rec], int, dict[int, _Rec]] | None:
        """The ``k`` best options over all offers, in order (pick_all's first ``k`` once
        sorted), how many offers have one, and each candidate's best option, without a tuple
        per offer; None with --max-price (pick_all then).

        On one kind of machine a candidate's first option scores (objective, tie-break,
        rounded $/h) non-decreasingly with the price (objective.priced_order: a price times a
        positive factor, or a price-free value then the price, each rounded). So offers are
        priced cheapest first, a few per kind: a kind whose dearest priced offer already
        scores above the k-th best option found (and above each candidate's best) cannot
        place another offer; the others are priced further, twice as many each round."""
        if self.need.max_price_usd_per_hour is not None:
            return None
        heads = [(g, sorted(live, key=self.prices.__getitem__)) for g, live in self.live()[0]]
        done = [0] * len(heads)
        lows: list[list[tuple[typing.Any, ...]]] = [[] for _ in heads]  # (score, candidate)
        best: list[_Rec] = []
        per_cand: dict[int, _Rec] = {}
        pending: Sequence[int] = range(len(heads))
        while pending:
            for h in pending:
                group, ordered = heads[h]
                upto = min(len(ordered), max(k, 2 * done[h]))
                per_offer = self._priced(group, ordered[done[h] : upto])
                done[h] = upto
                _keep_best(per_offer, per_cand, best)
                # the dearest offer priced so far: the lowest score any other offer can have
                lows[h] = [(recs[-1][:3], recs[-1][_IDX]) for recs in per_offer]
            more = [h for h in range(len(heads)) if done[h] < len(heads[h][1])]
            # a kind with more offers was priced k deep: there are k options
            kth = heapq.nsmallest(k, best)[-1][:3] if more else ()
            pending = [
                h for h in more
                if any(low <= kth or low <= per_cand[idx][:3] for low, idx in lows[h])
            ]  # fmt: skip
        count = sum(len(ordered) for _, ordered in heads)
        return heapq.nsmallest(k, best), count, per_cand

    def first(self, k: int) -> list[_Rec]:
        """The ``k`` best options; all, sorted, if pricing k per kind prices most, or capped."""
        lives = [len(live) for _, live in self.live()[0]]
        if 2 * sum(min(n, k) for n in lives) < sum(lives) and (fast := self.pick_top(k)):
            return fast[0]
        with cyclic_gc_paused():  # a tuple per offer and candidate, none in a cycle
            picks = self.pick_all()[0]
            picks.sort()  # by key, then input position: a stable sort by key
        return picks

    def _price(
        self, live: list[tuple[int, typing.Any]], tails: list[tuple[typing.Any, ...]],
        keys: list[typing.Any], order: int, idx: int, options: Sequence[tuple[int, Operating]],
    ) -> list[_Rec | str]:  # fmt: skip
        """One candidate's first option within --max-price on each live offer (options come
        best first), or why none is."""
        need, fmt = self.need, self.cands[idx].fmt.name
        labelled = [(self.labels[idx][op.fit.layout], op) for _, op in options]
        if need.max_price_usd_per_hour is None:  # the first option always
            label, op = labelled[0]
            m = op.machines
            scores = priced_order(op, need, [price * m for _, price in live])
            return [
                (obj, tie, usd, tail, label, fmt, key, pos, order, idx, op, price)
                for (obj, tie, usd), tail, key, (pos, price) in zip(
                    scores, tails, keys, live, strict=True
                )
            ]
        out: list[_Rec | str] = []
        for (pos, price), tail, key in zip(live, tails, keys, strict=True):
            got: _Rec | str = "no option within --max-price"
            least = math.inf  # the reason names the cheapest option's price (how far the cap is)
            for label, op in labelled:
                usd = price * op.machines
                problem = price_violation(usd, need)
                if problem:
                    if usd < least:
                        got, least = problem, usd
                    continue
                [(obj, tie, usd4)] = priced_order(op, need, [usd])
                got = (obj, tie, usd4, tail, label, fmt, key, pos, order, idx, op, price)
                break
            out.append(got)
        return out

    def plan(self, rec: _Rec) -> Plan:
        offer = self.offers[rec[_POS]]
        est = build_estimate(rec[_OP], offer, rec[_PRICE], self.need)
        return make_plan(self.cands[rec[_IDX]], offer, rec[_OP], est, self.need)


MONTHLY_JOB = (
    "monthly rental: a job would pay whole months, not the hours it runs (rank it without "
    "--job-requests to compare it per token)"
)


def plan_offer(
    cands: Iterable[Candidate], offer: Offer, need: Need, held: dict[int, str] | None = None
) -> Plan | str:
    """The best plan on one offer over candidates and layouts, or why none works (``held``:
    held_candidates of the catalog the offer is from; default: of the offer alone)."""
    picker = _Picker(list(cands), need, OfferTable.from_offers([offer]), held=held)
    picks, rejected, _ = picker.pick_all()
    return picker.plan(picks[0]) if picks else rejected[0][1]


def rank_offers(
    cands: list[Candidate],
    offers: Iterable[Offer],
    need: Need,
    order_keys: _Keys = None,
    held: dict[int, str] | None = None,
) -> Ranking:
    """Every offer planned or rejected with a reason; plans strictly sorted by the objective
    (ties broken by speed, $/h, provider, instance, region, tier, layout, format, then the
    input order: the order of ``order_keys(positions)`` if given, which spares sorting the
    input). With ``need.spread`` identical machines sharing an interactive load's streams are
    ranked from the start. When no offer serves the load, ranks again as
    objective.fallback_needs says (identical machines sharing the streams, then without the
    default service level); when nothing serves it even so, the rejections say why with
    stream replicas, if they were tried. ``held``: held_candidates of the catalog the offers
    come from (default: of the offers), which decides where a pipeline over nodes is planned."""
    validate_need(need)
    offers = offers if isinstance(offers, OfferTable) else OfferTable.from_offers(offers)
    if need.spread and not need.stream_replicas and not saturates(need):
        need = dataclasses.replace(need, stream_replicas=True)
    ranking = _rank(cands, offers, need, order_keys, held)
    if ranking.plans:
        return ranking
    capped = _capped(ranking, need)  # plans --max-replicas stopped on the way
    for fallback in fallback_needs(need):
        again = _rank(cands, offers, fallback, order_keys, held)
        if again.plans:
            notes = capped
            if fallback.stream_replicas and not need.stream_replicas:
                capped_price = need.max_price_usd_per_hour
                under = f" under --max-price {capped_price:g}" if capped_price is not None else ""
                notes.append(
                    f"no single machine serves {need.concurrency} streams{under}: identical "
                    "machines share them"
                )
            if not fallback.default_service_level:
                notes.append(RELAXED_NOTE)  # each plan says so too; shown once
            return dataclasses.replace(again, notes=(*again.notes, *notes))
        if fallback.stream_replicas and fallback.default_service_level:
            ranking = again  # its rejections say what stops replicas too (--max-replicas)
            capped = _capped(again, fallback)
    return ranking


def _capped(ranking: Ranking, need: Need) -> list[str]:
    """The note that --max-replicas stopped plans of a failed ranking that shared the streams
    within the service level, if it did."""
    if not (need.stream_replicas and need.default_service_level):
        return []
    if not any("--max-replicas" in why for why in ranking.rejected.reasons):
        return []
    return [
        f"--max-replicas {need.max_replicas} stopped plans that share the streams between more "
        "identical machines within the service level"
    ]


def _rank(
    cands: list[Candidate],
    offers: OfferTable,
    need: Need,
    order_keys: _Keys,
    held: dict[int, str] | None,
) -> Ranking:
    picker = _Picker(cands, need, offers, order_keys, held)
    with cyclic_gc_paused():  # a tuple per offer, none in a cycle
        fast = picker.pick_top(FIRST_PLANS)
        if fast is not None:
            picks, count, per_cand = fast
            rejected = picker.live()[1]
        else:  # --max-price: an offer's option depends on its price
            picks, rejected, per_cand = picker.pick_all()
            picks.sort()  # by key, then input position: a stable sort by key
            count = len(picks)
        rejected = sorted(rejected) if order_keys is None else _in_order(rejected, order_keys)
    best = tuple(picker.plan(per_cand[i]) if i in per_cand else None for i in range(len(cands)))
    plans = LazyPlans(picks, count, picker.plan, picker.first)
    ranked = offers.take_later(lambda: map(itemgetter(_POS), plans.prefix(count)), count)
    refused = Rejections(offers, [pos for pos, _ in rejected], [why for _, why in rejected])
    return Ranking(plans, refused, tuple(cands), best, ranked)


def _in_order(rejected: list[tuple[int, str]], order_keys: Callable) -> list[tuple[int, str]]:
    keys = order_keys([pos for pos, _ in rejected])
    return [r for _, r in sorted(zip(keys, rejected, strict=True))]


def recommend(
    cands: list[Candidate], offers: Iterable[Offer], need: Need, order_keys: _Keys = None
) -> Ranking:
    """rank_offers, raising NoFeasibleOfferError (exit 3) with the commonest reasons if empty."""
    validate_need(need)  # before the checks that read its values
    check_context(cands, need)
    check_tp(cands, need)
    ranking = rank_offers(cands, offers, need, order_keys)
    if not ranking.plans:
        refusal = no_feasible_offer(ranking.rejected.reasons, len(ranking.rejected), need)
        guessed = next((c.spec for c in cands if c.spec.is_guess), None)
        if guessed is not None:  # a plan says GUESS in its notes; a refusal must say it too
            refusal.message = f"{guessed.name} (shape guessed from its name): {refusal.message}"
            refusal.hint = "check the model name, or pass --config or a Hugging Face id" + (
                f"; else {refusal.hint}" if refusal.hint else ""
            )
        raise refusal
    return ranking


def best_alternatives(
    ranking: Ranking, gpu_prefixes: tuple[str, ...] = ("h100", "a100")
) -> list[tuple[str, Plan | None, str | None]]:
    """For --explain: the best plan on each commonly guessed GPU family, or why none exists
    (builds one Plan per family, not the whole ranking)."""
    out: list[tuple[str, Plan | None, str | None]] = []
    for prefix in gpu_prefixes:
        gpus = enumerate(ranking.offers.column("gpu"))
        index = next((i for i, gpu in gpus if gpu.startswith(prefix)), None)
        plan = ranking.plans[index] if index is not None else None
        why = None
        if plan is None:
            rejected = ranking.rejected  # read from the table's columns: no Offer built
            fields = rejected.fields(("gpu", "gpu_count"))
            # the family's largest machine: a one-GPU offer's "TP1: 756 GiB weights per GPU"
            # reads as if 8 of them were never tried; of a power-of-two size, as a 6x or 9x
            # machine mostly fails on TP degrees the heads do not divide (ties: catalog order)
            family = [
                (count & (count - 1) != 0, -count, i, why)
                for i, ((gpu, count), why) in enumerate(zip(fields, rejected.reasons, strict=True))
                if gpu.startswith(prefix)
            ]
            why = min(family)[3] if family else "no offer with this GPU in the catalog"
        out.append((prefix.upper(), plan, why))
    return out
