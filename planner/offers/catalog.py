"""The offer catalog: the embedded snapshot, the user's cache of live refreshes, and filtering.

Per cloud, a cache file (planner/offers/cache.py: written only by a successful, non-empty
refresh, atomically) replaces the snapshot's offers; otherwise the snapshot answers. Offers are
held as columns (planner/offers/table.py) and filtered on them: an Offer is built only when one
is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from itertools import compress, repeat
from operator import is_not
from typing import Any

from planner.errors import short
from planner.offers.cache import (
    _OFFER_COLUMNS,
    CACHE_SCHEMA,
    READ_ERRORS,
    SCHEMA,
    _cache_path,
    cache_dir,
    cache_locked,
    offer_from_dict,
    offer_problem,
    offer_to_dict,
    read_cache,
    write_cache,
)
from planner.offers.offer import Offer, sold_on_demand
from planner.offers.table import OfferTable

# The cache (planner/offers/cache.py) answers under the catalog's names too.
__all__ = [
    "CACHE_SCHEMA", "SCHEMA", "STALE_AFTER_DAYS", "_OFFER_COLUMNS", "Catalog", "OfferFilter",
    "SourceInfo", "_cache_path", "age_days", "cache_dir", "cache_locked", "filter_offers",
    "filter_table",
    "load_catalog", "offer_from_dict", "offer_problem", "offer_sort_key", "offer_to_dict",
    "order_keys", "read_cache", "snapshot_offers", "source_label", "write_cache",
]  # fmt: skip
STALE_AFTER_DAYS = 7


@cache
def _snapshot() -> dict[str, Any]:
    text = (
        resources.files("planner.offers.data").joinpath("offers_snapshot.json").read_text("utf-8")
    )
    return json.loads(text)


def snapshot_offers() -> list[Offer]:
    return [offer_from_dict(d) for d in _snapshot()["offers"]]


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """Where one cloud's offers come from. ``source`` is what the cache records (the direct
    API or the gpuhunt catalog version it was refreshed from), or the snapshot's note."""

    provider: str
    origin: str  # "embedded" | "cache" | "none" (no offers known yet: `catalog refresh`)
    fetched_at: str | None  # the oldest fetched_at among the provider's offers
    offers: int
    path: str | None = None
    stale: bool = False
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Catalog:
    offers: OfferTable  # a Sequence[Offer] that builds each Offer when it is read
    sources: dict[str, SourceInfo]
    warnings: tuple[str, ...] = ()


def age_days(fetched_at: str | None, now: datetime | None = None) -> float | None:
    if not fetched_at:
        return None
    try:
        when = datetime.fromisoformat(fetched_at)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # a date up to a day ahead is accepted (cache.py: a clock a little ahead); it is fresh,
    # not of a negative age
    return max(0.0, ((now or datetime.now(UTC)) - when).total_seconds() / 86400)


def load_catalog(providers: Iterable[str] | None = None, use_cache: bool = True) -> Catalog:
    """Offers of every provider: from its cache when there is one, else from the snapshot."""
    from planner.offers.providers import cloud_names

    names = list(providers) if providers is not None else cloud_names()
    by_provider: dict[str, list[Offer]] = {n: [] for n in names}
    sources: dict[str, SourceInfo] = {}
    for o in snapshot_offers():
        if o.provider in by_provider:
            by_provider[o.provider].append(o)
    warnings = []
    tables: list[OfferTable] = []
    for name in names:
        origin, path = "embedded", None
        chosen = OfferTable.from_offers(by_provider.get(name, []))
        source: str | None = "embedded snapshot (planner/offers/data/offers_snapshot.json)"
        if use_cache:
            try:
                cached = read_cache(name)
            except READ_ERRORS as exc:
                cached = None
                warnings.append(
                    f"{name}: ignoring unreadable cache {_cache_path(name)} ({short(exc, 100)}); "
                    f"using the embedded snapshot; run `gpuplan catalog refresh --provider {name}` "
                    "to rewrite it (a cache written by a newer gpuplan: upgrade instead)"
                )
            if cached is not None and cached[1]["dropped"]:
                bad = cached[1]["dropped"]
                warnings.append(
                    f"{name}: ignoring {len(bad)} invalid offer(s) in {_cache_path(name)} "
                    f"({bad[0]}); run `gpuplan catalog refresh` to rewrite it"
                )
            if cached is not None:
                origin, path, chosen = "cache", str(_cache_path(name)), cached[0]
                source = cached[1].get("source") or "cache (source not recorded)"
        if not chosen:
            origin, source = "none", None
        oldest = min(chosen.column("fetched_at"), default=None)
        age = age_days(oldest)
        sources[name] = SourceInfo(
            name,
            origin,
            oldest,
            len(chosen),
            path,
            stale=age is not None and age > STALE_AFTER_DAYS,
            source=source,
        )
        tables.append(chosen)
    return Catalog(OfferTable.concat(tables), sources, tuple(warnings))


def source_label(o: Offer) -> str:
    """A short column label for where a price came from: "gpuhunt 20261129-4211",
    "gpuhunt live", "aws API", or the site of the first URL ("github.com/skypilot-org")."""
    src = o.source
    if src.endswith("(gpuhunt)"):
        version = src.rsplit("/catalog.zip", 1)[0].rsplit("/", 1)[-1]
        return f"gpuhunt {version}"
    if src.endswith("(live, via gpuhunt)"):
        return "gpuhunt live"
    if src.startswith("https://"):
        host, _, path = src.removeprefix("https://").partition("/")
        owner = path.split("/", 1)[0] if host == "github.com" else ""
        return f"{host}/{owner}" if owner else host
    head = src.split(" (", 1)[0]
    if ": " in head:  # a direct provider's "gcp: compute machineTypes/acceleratorTypes, ..."
        return head.split(":", 1)[0] + " API"
    return head[:40]


# ------------------------------------------------------------------ filtering
@dataclass(frozen=True, slots=True)
class OfferFilter:
    """The one offer filter (offers, recommend and check all use it). ``regions``: an offer
    passes when any entry is a case-insensitive substring of its region, zone or location
    (``region`` is the single-entry form). ``instance_type`` matches whole, in any case."""

    gpu: str | None = None
    providers: tuple[str, ...] | None = None
    region: str | None = None
    regions: tuple[str, ...] | None = None
    instance_type: str | None = None
    min_gpu_memory_gb: float | None = None
    gpus: int | None = None
    max_price_usd_per_hour: float | None = None
    spot: bool = False
    horizon_months: float = 1.0


# The strict order of offers after their price (tier None sorts as "").
SORT_COLUMNS = ("provider", "instance_type", "region", "gpu", "gpu_count", "tier")


def offer_sort_key(o: Offer, price: float) -> tuple[Any, ...]:
    """Strict, deterministic order: price, then provider, instance, region, then the rest
    (filter_table builds the same keys from the columns)."""
    return (price, o.provider, o.instance_type, o.region, o.gpu, o.gpu_count, o.tier or "")


def filter_offers(offers: Iterable[Offer], flt: OfferFilter) -> list[tuple[Offer, float]]:
    """Offers that pass the filter, each with the price it is ranked by, strictly sorted."""
    table = offers if isinstance(offers, OfferTable) else OfferTable.from_offers(offers)
    kept, prices = filter_table(table, flt)
    return list(zip(kept, prices, strict=True))


def filter_table(
    table: OfferTable, flt: OfferFilter, *, ordered: bool = True
) -> tuple[OfferTable, list[float]]:
    """filter_offers on the table's columns: the offers that pass, strictly sorted by
    offer_sort_key, and their prices, without building an Offer. ``ordered=False`` leaves
    them in the table's order (a ranking sorts them its own way, breaking its ties with
    ``order_keys``: sorting 50,000 offers by price first would cost more than ranking them)."""
    gpu_id = None
    if flt.gpu:
        from planner.offers.gpus import gpu_ids

        gpu_id = set(gpu_ids(flt.gpu))
    wanted = [r.strip().lower() for r in (flt.regions or ()) if r.strip()]
    if flt.region and flt.region.strip():
        wanted.append(flt.region.strip().lower())
    col = table.column
    # Positions that pass, one pass per filter that is set (a cache holds tens of thousands).
    spot, horizon, cap = flt.spot, flt.horizon_months, flt.max_price_usd_per_hour
    prices = table.effective_usd_per_hour(spot=spot, horizon_months=horizon)
    keep = list(compress(range(len(prices)), map(is_not, prices, repeat(None))))
    if cap is not None:
        keep = [i for i in keep if (p := prices[i]) is not None and not p > cap]
    if flt.providers and not set(col("provider")) <= set(flt.providers):  # recommend: all
        keep = _where(keep, col("provider"), set(flt.providers).__contains__)
    if gpu_id:
        keep = _where(keep, col("gpu"), gpu_id.__contains__)
    if wanted:
        places = list(zip(col("region"), col("zone"), col("location"), strict=True))
        keep = _where(keep, places, lambda where: _in_regions(where, wanted))
    if flt.instance_type:  # AWS and GCP name them in lower case, RunPod in mixed: any case
        wanted_type = flt.instance_type.strip().lower()
        keep = _where(keep, col("instance_type"), lambda name: name.lower() == wanted_type)
    if flt.min_gpu_memory_gb:
        least = flt.min_gpu_memory_gb
        keep = _where(keep, col("gpu_memory_gb"), lambda gb: not gb < least)
    if flt.gpus:
        keep = _where(keep, col("gpu_count"), flt.gpus.__eq__)
    if not ordered:
        kept: list[Any] = prices if len(keep) == len(table) else [prices[i] for i in keep]
        return (table if kept is prices else table.take(keep)), kept
    columns = [prices, *(col(name) for name in SORT_COLUMNS[:-1]), table.column_or("tier", "")]
    if len(keep) < len(table):  # else no filter was set: the columns as they are
        columns = [list(map(c.__getitem__, keep)) for c in columns]
    n = len(keep)
    keys = list(zip(*columns, strict=True))
    # Sorting the keys' positions (a stable sort, as sorting the pairs by key would be) lets
    # the sort compare the keys' leading floats directly.
    order = sorted(range(n), key=keys.__getitem__)
    return table.take(map(keep.__getitem__, order)), list(map(columns[0].__getitem__, order))


NOT_ON_DEMAND = "not sold on demand"  # spot_only's machines: reservations, DWS or spot only


def spot_only(table: OfferTable, flt: OfferFilter) -> int:
    """How many offers would pass an on-demand ``flt`` but for being machines their provider
    does not sell on demand (offer.sold_on_demand; they keep a spot price): what an empty
    on-demand result says to try --spot for. 0 for a spot filter."""
    if flt.spot:
        return 0
    matched, _ = filter_table(table, replace(flt, spot=True), ordered=False)
    return sum(
        not sold_on_demand(p, kind) for p, kind in matched.tuples(("provider", "instance_type"))
    )


def order_keys(table: OfferTable, flt: OfferFilter) -> Callable[[list[int]], list[Any]]:
    """offer_sort_key of the offers at given positions of ``table``, at ``flt``'s prices:
    what filter_table sorts by, so that a ranking of filter_table(ordered=False)'s result
    breaks ties as on the sorted one (a stable sort: equal keys keep the table's order)."""
    prices = table.effective_usd_per_hour(spot=flt.spot, horizon_months=flt.horizon_months)

    def keys(positions: list[int]) -> list[Any]:
        rows = table.values_at(SORT_COLUMNS, positions)
        return [(prices[p], *r[:-1], r[-1] or "") for p, r in zip(positions, rows, strict=True)]

    return keys


def _where(keep: list[int], values: Sequence[Any], test: Callable[[Any], bool]) -> list[int]:
    return [i for i in keep if test(values[i])]


def _in_regions(where_parts: tuple[str | None, ...], wanted: list[str]) -> bool:
    where = " ".join(x for x in where_parts if x).lower()
    return any(w in where for w in wanted)
