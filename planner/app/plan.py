"""Use case: rank the offers that serve a model at the user's load (gpuplan recommend)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from planner.decide.load import streams_tokens
from planner.decide.plan import Plan
from planner.decide.rank import Ranking
from planner.decide.suggest import Cheaper, QuantSuggestion
from planner.errors import NoFeasibleOfferError, UsageError
from planner.model.values import ModelSpec
from planner.offers.offer import Offer
from planner.settings import Settings


@dataclass(frozen=True, slots=True)
class Recommendation:
    ranking: Ranking
    warnings: tuple[str, ...]  # catalog warnings (stale or unreadable caches)
    sources: dict[str, Any]  # provider -> where its offers came from
    # FP8 serving the same load >= 20% cheaper, when the user did not choose a quantization
    suggestion: QuantSuggestion | None = None
    # what cheaper_quantization_for needs to look again for another plan (generate's):
    # variants None when the user chose a quantization (no suggestion then)
    variants: tuple[ModelSpec, ...] | None = None
    offers: Sequence[Offer] = ()  # the filtered offers ranked, in the catalog's order
    # their filter-order keys by position (catalog.order_keys): the ranking's tie-break
    order: Callable[[list[int]], list[Any]] | None = None
    # identical machines sharing the streams (--spread) >= 20% cheaper than the top plan
    spread: SpreadSuggestion | None = None


@dataclass(frozen=True, slots=True)
class SpreadSuggestion:
    cheaper: Cheaper  # its plan: identical machines sharing the streams
    balancer: bool  # gpuplan generate puts a managed load balancer in front of them there


IGNORED_SPREAD = (
    "spread is ignored: a batch workload or a throughput target sizes its own replicas "
    "(--spread lets machines share an interactive load's --concurrency streams)"
)


IGNORED_SPEED = (
    "min_tokens_per_s is ignored: one output token a request has no time between tokens "
    "(the TTFT bound applies)"
)
IGNORED_HEADROOM = (
    "replica_headroom is ignored: it sizes the replicas of a throughput target "
    "(--target-rps, --target-output-tokens-per-s, or a job's --deadline-hours)"
)


def recommend(
    s: Settings, *, config_path: str | None = None, from_hub: bool = False, suggest: bool = True
) -> Recommendation:
    """Plan the model of ``s`` against the catalog: every feasible offer, strictly ranked.
    With ``suggest``, also whether identical machines sharing the streams (--spread) would
    serve the load materially cheaper than the top plan, and, when the user did not choose a
    quantization (``s.quant`` unset everywhere), whether FP8 would."""
    from planner.decide.rank import candidates_for
    from planner.decide.rank import recommend as rank
    from planner.gcpause import cyclic_gc_paused
    from planner.model.sources import load_model_spec, quantized_variants
    from planner.offers.catalog import (
        NOT_ON_DEMAND,
        OfferFilter,
        filter_table,
        load_catalog,
        order_keys,
        spot_only,
    )
    from planner.offers.providers import parse_provider_list

    need = s.need()  # validates the load before any model or catalog is read
    spec = load_model_spec(s.model, config_path=config_path, from_hub=from_hub, revision=s.revision)
    variants = quantized_variants(spec.name)
    candidates = candidates_for(spec, s.quant, variants)
    names = parse_provider_list(",".join(s.providers) if s.providers else None)
    with cyclic_gc_paused():  # a cache of 50,000 offers: see planner/gcpause.py
        catalog = load_catalog(names)
        flt = OfferFilter(
            gpu=s.gpu, providers=tuple(names), regions=s.regions, instance_type=s.instance_type,
            spot=s.spot, horizon_months=s.horizon_months,
        )  # fmt: skip
        try:
            # in the catalog's order: the ranking breaks its ties in the filter's order
            offers, _ = filter_table(catalog.offers, flt, ordered=False)
            if not offers and s.spot:
                on_demand, _ = filter_table(catalog.offers, replace(flt, spot=False))
                if on_demand:
                    raise NoFeasibleOfferError(
                        f"none of the {len(on_demand)} matching offers has a spot price",
                        "drop --spot, or include providers that sell spot capacity",
                    )
            unsold = 0 if offers else spot_only(catalog.offers, flt)
            if unsold:  # GCP's A4 / A3 Ultra: spot or reservations only
                which = (
                    "the one matching offer is"
                    if unsold == 1
                    else f"the {unsold} matching offers are"
                )
                raise NoFeasibleOfferError(
                    f"{which} {NOT_ON_DEMAND} (reservations, DWS flex-start or spot only)",
                    "add --spot (their spot price), or choose another --gpu / --providers",
                )
            keys = order_keys(offers, flt)
            ranking = rank(candidates, offers, need, keys)
        except NoFeasibleOfferError as exc:
            # the catalog's warnings may say why (cached offers dropped as invalid, a stale or
            # unreadable cache): the user reads them with the refusal
            exc.warnings = catalog.warnings
            raise
    warnings = catalog.warnings
    if s.spread and not need.spread:  # Settings.need drops it for a target or a job
        warnings = (*warnings, IGNORED_SPREAD)
    if "replica_headroom" in s.sources and not need.target_output_tokens_per_s:
        warnings = (*warnings, IGNORED_HEADROOM)
    if need.min_tokens_per_s is not None and not streams_tokens(need):
        warnings = (*warnings, IGNORED_SPEED)
    rec = Recommendation(ranking, warnings, dict(catalog.sources), offers=offers,
                         order=keys)  # fmt: skip
    # not when the user chose (--spread or --one-machine), nor with --tls-domain, which
    # generate refuses for machines sharing the streams
    if suggest and "spread" not in s.sources and not s.tls_domain:
        rec = replace(rec, spread=cheaper_spread_for(rec, ranking.plans[0]))
    if s.quant is not None:  # a pinned format (or auto, which ranks FP8 already)
        return rec
    rec = replace(rec, variants=tuple(variants))
    if suggest:
        rec = replace(rec, suggestion=cheaper_quantization_for(rec, ranking.plans[0]))
    return rec


def cheaper_spread_for(
    rec: Recommendation, current: Plan, accept: Callable[[Plan], bool] | None = None
) -> SpreadSuggestion | None:
    """Whether identical machines sharing ``current``'s streams serve its load at least 20%
    cheaper, on the offers ``rec`` ranked (decide.suggest.cheaper_spread), and whether the
    generated project balances them."""
    from planner.decide.suggest import cheaper_spread

    found = cheaper_spread(current, rec.ranking.candidates, rec.offers, rec.order, accept)
    if found is None:
        return None
    from infra.targets import targets  # the capability table: only when there is a line to say

    target = targets().get(found.plan.offer.provider)
    return SpreadSuggestion(found, target is not None and target.capabilities.balancer)


def cheaper_quantization_for(
    rec: Recommendation, current: Plan, accept: Callable[[Plan], bool] | None = None
) -> QuantSuggestion | None:
    """Whether a near-lossless format (FP8) serves ``current``'s load under the same
    constraints at least 20% cheaper, on the offers ``rec`` ranked; ``accept`` skips plans the
    caller cannot use (generate: plans it cannot write)."""
    from planner.decide.suggest import (
        best_alternative,
        cheaper_quantization,
        compared_measure,
        near_lossless_candidates,
        screen_offers,
    )
    from planner.offers.catalog import offer_sort_key

    if rec.variants is None or compared_measure(current.need) is None:
        return None

    def in_filter_order(offers: Iterable[Offer]) -> list[Offer]:
        # the filter's order (`gpuplan offers`) breaks the alternative ranking's ties
        spot, horizon = current.need.spot, current.need.horizon_months
        return sorted(
            offers,
            key=lambda o: offer_sort_key(
                o, o.effective_usd_per_hour(spot=spot, horizon_months=horizon) or 0
            ),
        )

    offers = in_filter_order(screen_offers(current, rec.ranking.candidates, rec.offers))
    alternatives = near_lossless_candidates(rec.ranking.candidates, rec.variants) if offers else []
    if not alternatives:
        return None
    # streams shared by identical machines: the format may need them too (ranked on every
    # offer, ties broken in the filter's order as the recommendation's own ranking)
    every = rec.offers if current.need.stream_replicas else None
    alternative = best_alternative(
        current, alternatives, offers, accept, every, rec.order, catalog=rec.offers
    )
    return cheaper_quantization(current, alternative)


def without_service_level(rec: Recommendation) -> tuple[Plan, str] | None:
    """For --explain: the plan the same ranking gives without any service level and the limit
    it misses, when that plan scores better than the top plan (the level decided the
    hardware); None otherwise. Ranks again, so only --explain asks."""
    from planner.decide.load import service_level
    from planner.decide.objective import violation
    from planner.decide.rank import rank_offers

    top = rec.ranking.plans[0]
    if service_level(top.need) == (None, None):
        return None
    free = replace(top.need, default_service_level=False, min_tokens_per_s=None, max_ttft_ms=None)
    plans = rank_offers(list(rec.ranking.candidates), rec.offers, free, rec.order).plans
    if not plans or plans[0].objective_value >= top.objective_value:
        return None
    why = violation(plans[0].estimate, top.need)
    if why is None:  # it meets the level at its own load: the level sized the replicas
        why = (
            f"within the level each machine carries less: {top.estimate.replicas} replicas, not "
            f"{plans[0].estimate.replicas}"
        )
    return plans[0], why


def check_output_paths(plot_path: str | None, plan_path: str | None) -> None:
    """--plot and --save-plan, before any planning: an empty path would write nothing."""
    for flag, value in (("--plot", plot_path), ("--save-plan", plan_path)):
        if value is not None and not value.strip():
            raise UsageError(f"{flag} is empty", "give a file path, or leave the flag out")


def save_plan(plan: Plan, path: str | Path) -> None:
    """Write ``plan`` as JSON (schema gpuplan.plan/1), atomically."""
    from planner.decide.plan import plan_to_json
    from planner.fsutil import atomic_write_text

    atomic_write_text(Path(path), plan_to_json(plan))


def write_plot(rec: Recommendation, path: str | Path) -> None:
    """The cost-vs-speed chart of every plan, Pareto frontier marked."""
    from planner.present.plot import write_plot as plot

    plot(list(rec.ranking.plans), Path(path))
