"""Use cases about offers: list them, show where they come from, refresh them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from planner.errors import GpuplanError, LocalFileError, ProviderError
from planner.offers.catalog import Catalog
from planner.offers.offer import Offer
from planner.offers.refresh import ProviderOutcome
from planner.settings import Settings


@dataclass(frozen=True, slots=True)
class OfferList:
    rows: list[tuple[Offer, float]]  # each offer with the $/h it is ranked by, cheapest first
    warnings: tuple[str, ...]
    spot: bool
    horizon_months: float


def list_offers(
    s: Settings,
    *,
    min_gpu_memory_gb: float | None = None,
    limit: int | None = None,
) -> OfferList:
    """Offers of the catalog (cache, else the embedded snapshot) that pass the filters."""
    from planner.offers.catalog import (
        NOT_ON_DEMAND,
        OfferFilter,
        filter_offers,
        load_catalog,
        spot_only,
    )
    from planner.offers.providers import parse_provider_list

    names = parse_provider_list(",".join(s.providers) if s.providers else None)
    catalog = load_catalog(names)
    flt = OfferFilter(
        gpu=s.gpu,
        providers=tuple(names),
        regions=s.regions,
        instance_type=s.instance_type,
        min_gpu_memory_gb=min_gpu_memory_gb,
        gpus=s.gpus,
        max_price_usd_per_hour=s.max_price,
        spot=s.spot,
        horizon_months=s.horizon_months,
    )
    rows = filter_offers(catalog.offers, flt)
    warnings = catalog.warnings
    if not rows and spot_only(catalog.offers, flt):  # GCP's A4 / A3 Ultra
        warnings = (*warnings, f"the matching offers are {NOT_ON_DEMAND}: add --spot")
    return OfferList(rows[:limit] if limit else rows, warnings, s.spot, s.horizon_months)


def catalog_status() -> Catalog:
    """Where each provider's offers come from and how old they are."""
    from planner.offers.catalog import load_catalog

    return load_catalog()


@dataclass(frozen=True, slots=True)
class Refresh:
    outcomes: list[ProviderOutcome]
    # set when the one named provider, or every provider, failed: a LocalFileError (exit 2)
    # when each failure was this machine's cache file, else a ProviderError (exit 4)
    error: GpuplanError | None


def refresh_catalog(
    providers: str | None,
    regions: tuple[str, ...] | None,
    on_done: Callable[[ProviderOutcome], None] | None = None,
) -> Refresh:
    """Refresh the named providers (default: all with credentials) into the user cache.

    A failure is returned, not raised, so that the caller shows every outcome first."""
    from planner.offers.providers import parse_provider_list
    from planner.offers.refresh import refresh

    names = parse_provider_list(providers)
    outcomes = refresh(names, explicit=providers is not None, regions=regions, on_done=on_done)
    ok = [o for o in outcomes if o.status == "ok"]
    failed = [o for o in outcomes if o.status == "failed"]
    if (providers is not None and len(names) == 1 and failed) or not ok:
        skipped = sum(o.status == "skipped" for o in outcomes)
        message = (
            f"catalog refresh failed: {len(failed)} failed, {skipped} skipped without "
            "credentials, none refreshed"
            if not ok
            else f"catalog refresh of {names[0]} failed"
        )
        if failed and all(o.local_fault for o in failed):  # the providers answered
            hint = "fix the cache file named above; cached and embedded offers are unchanged"
            return Refresh(outcomes, LocalFileError(message, hint))
        hint = "cached and embedded offers are unchanged; `gpuplan catalog status` shows their age"
        return Refresh(outcomes, ProviderError(message, hint))
    return Refresh(outcomes, None)
