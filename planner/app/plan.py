"""Use case: rank the offers that serve a model at the user's load (gpuplan recommend)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.decide.plan import Plan
from planner.decide.rank import Ranking
from planner.errors import NoFeasibleOfferError
from planner.settings import Settings


@dataclass(frozen=True, slots=True)
class Recommendation:
    ranking: Ranking
    warnings: tuple[str, ...]  # catalog warnings (stale or unreadable caches)
    sources: dict[str, Any]  # provider -> where its offers came from


def recommend(
    s: Settings, *, config_path: str | None = None, from_hub: bool = False
) -> Recommendation:
    """Plan the model of ``s`` against the catalog: every feasible offer, strictly ranked."""
    from dataclasses import replace

    from planner.decide.rank import candidates_for
    from planner.decide.rank import recommend as rank
    from planner.gcpause import cyclic_gc_paused
    from planner.model.sources import load_model_spec, quantized_variants
    from planner.offers.catalog import OfferFilter, filter_offers, load_catalog
    from planner.offers.providers import parse_provider_list

    need = s.need()  # validates the load before any model or catalog is read
    spec = load_model_spec(s.model, config_path=config_path, from_hub=from_hub)
    candidates = candidates_for(spec, s.quant, quantized_variants(spec.name))
    names = parse_provider_list(",".join(s.providers) if s.providers else None)
    with cyclic_gc_paused():  # a cache of 50,000 offers: see planner/gcpause.py
        catalog = load_catalog(names)
        flt = OfferFilter(
            gpu=s.gpu, providers=tuple(names), regions=s.regions, instance_type=s.instance_type,
            spot=s.spot,
        )  # fmt: skip
        offers = filter_offers(catalog.offers, flt)
        if not offers and s.spot:
            on_demand = filter_offers(catalog.offers, replace(flt, spot=False))
            if on_demand:
                raise NoFeasibleOfferError(
                    f"none of the {len(on_demand)} matching offers has a spot price",
                    "drop --spot, or include providers that sell spot capacity",
                )
        ranking = rank(candidates, [pair[0] for pair in offers], need)
    return Recommendation(ranking, catalog.warnings, dict(catalog.sources))


def save_plan(plan: Plan, path: str | Path) -> None:
    """Write ``plan`` as JSON (schema gpuplan.plan/1), atomically."""
    from planner.decide.plan import plan_to_json
    from planner.fsutil import atomic_write_text

    atomic_write_text(Path(path), plan_to_json(plan))


def write_plot(rec: Recommendation, path: str | Path) -> None:
    """The cost-vs-speed chart of every plan, Pareto frontier marked."""
    from planner.present.plot import write_plot as plot

    plot(list(rec.ranking.plans), Path(path))
