"""The offer catalog: the embedded snapshot, the user's cache of live refreshes, and filtering.

Per cloud, a cache file (written only by a successful, non-empty refresh: planner.offers.refresh)
replaces the snapshot's offers; otherwise the snapshot answers. Cache writes are atomic (temp
file, fsync, rename), so a failed or killed refresh leaves the previous file as it was, age
included.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from itertools import starmap
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from planner.errors import short
from planner.fsutil import atomic_write_text
from planner.gcpause import cyclic_gc_paused
from planner.offers.offer import Offer

if TYPE_CHECKING:
    pass

SCHEMA = "gpuplan.offers/1"  # the embedded snapshot and v1 caches: a list of offer objects
# Caches hold tens of thousands of offers: one row per offer under a column header parses and
# builds Offers about twice as fast as one object per offer (benchmarks/catalog_refresh.py).
CACHE_SCHEMA = "gpuplan.offers-cache/2"
STALE_AFTER_DAYS = 7
_OFFER_COLUMNS = [f.name for f in fields(Offer)]
_OFFER_FIELDS = set(_OFFER_COLUMNS)


def cache_dir() -> Path:
    """GPUPLAN_CACHE_DIR, else the platform's user cache directory (platformdirs)."""
    env = os.environ.get("GPUPLAN_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("gpuplan"))


def offer_from_dict(d: dict[str, Any]) -> Offer:
    data = {k: v for k, v in d.items() if k in _OFFER_FIELDS}
    data["notes"] = tuple(data.get("notes") or ())
    data["provider_data"] = dict(data.get("provider_data") or {})
    return Offer(**data)


def offer_to_dict(o: Offer) -> dict[str, Any]:
    d = asdict(o)
    d["notes"] = list(o.notes)
    d["provider_data"] = dict(o.provider_data)
    return d


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
    offers: tuple[Offer, ...]
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
    return ((now or datetime.now(UTC)) - when).total_seconds() / 86400


def _cache_path(provider: str) -> Path:
    return cache_dir() / "offers" / f"{provider}.json"


def read_cache(provider: str) -> tuple[list[Offer], dict[str, Any]] | None:
    """The provider's cached offers, or None if absent. A corrupt file is reported, not used."""
    path = _cache_path(provider)
    if not path.exists():
        return None
    # Tens of thousands of new containers, none of them in a cycle (planner/gcpause.py).
    with cyclic_gc_paused():
        return _read_cache_doc(path, provider)


_TEXT_COLUMNS = ("provider", "instance_type", "region", "gpu", "billing", "fetched_at")
_BILLINGS = frozenset({"hourly", "monthly"})
# (column, may be null); setup_fee_usd may also be 0.
_NUMBER_COLUMNS = (
    ("gpu_memory_gb", False), ("price_usd_per_hour", False), ("spot_price_usd_per_hour", True),
    ("monthly_price_usd", True), ("setup_fee_usd", True),
)  # fmt: skip


def offer_problem(o: Offer) -> str | None:
    """Why a cached offer cannot be used (wrong type, non-positive price...), or None.

    The cache is a file on the user's disk: it may be hand-edited, truncated by another tool
    or written by another version. A bad row is dropped and reported, never used."""
    for name in _TEXT_COLUMNS:
        if not isinstance(getattr(o, name), str) or not getattr(o, name):
            return f"{name} must be a non-empty string"
    if (
        isinstance(o.gpu_count, bool)
        or not isinstance(o.gpu_count, int)
        or not 0 < o.gpu_count <= 64
    ):
        return f"gpu_count must be an integer from 1 to 64, got {short(repr(o.gpu_count), 30)}"
    for name, nullable in _NUMBER_COLUMNS:
        value = getattr(o, name)
        if nullable and value is None:
            continue
        if not (_positive(value) or (name == "setup_fee_usd" and value == 0)):
            null = " or null" if nullable else ""
            return f"{name} must be a positive number{null}, got {short(repr(value), 30)}"
    if o.billing not in _BILLINGS:
        return f"billing must be hourly or monthly, got {short(repr(o.billing), 30)}"
    if not isinstance(o.provider_data, dict) or not all(isinstance(n, str) for n in o.notes):
        return "provider_data must be an object and notes a list of strings"
    return None


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float (JSON allows 10**400): unusable
        return False


def _positive(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and _finite(value)
        and value > 0
    )


def _read_cache_doc(path: Path, provider: str) -> tuple[list[Offer], dict[str, Any]]:
    """The file's usable offers; the reasons for rows dropped go in ``doc["dropped"]``."""
    doc = json.loads(path.read_bytes())
    if not isinstance(doc, dict) or doc.get("provider") != provider:
        raise ValueError("unexpected provider")
    if doc.get("schema") == SCHEMA:
        rows: list[Any] = doc["offers"]
        build: Callable[[Any], Offer] = offer_from_dict
    elif doc.get("schema") != CACHE_SCHEMA:
        raise ValueError(f"unexpected schema {short(repr(doc.get('schema')), 40)}")
    else:
        columns = doc["columns"]
        rows = doc["rows"]
        if columns != _OFFER_COLUMNS:  # written by another gpuplan version: match by name

            def build(r: Any) -> Offer:
                return offer_from_dict(dict(zip(columns, r, strict=True)))

        else:
            notes, data = columns.index("notes"), columns.index("provider_data")
            if isinstance(rows, list) and _rows_valid(rows, provider):
                doc["dropped"] = []
                return _build_valid_rows(rows), doc

            def build(r: Any) -> Offer:
                if len(r) != len(columns):
                    raise ValueError("the row does not match the columns")
                r[notes], r[data] = tuple(r[notes] or ()), r[data] or {}
                return Offer(*r)

    if not isinstance(rows, list):
        raise ValueError("no list of offers")
    offers, dropped = [], []
    for i, r in enumerate(rows):
        try:
            o = build(r)
            why = offer_problem(o) or (None if o.provider == provider else "another provider")
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            why = f"malformed row ({short(exc, 60)})"
        if why is None:
            offers.append(o)
        else:
            dropped.append(f"offer {i + 1}: {why}")
    doc["dropped"] = dropped
    return offers, doc


# Column positions in this version's rows (the fast path below reads only those).
_COL = {name: i for i, name in enumerate(_OFFER_COLUMNS)}
_NUMBER_TYPES = frozenset({int, float})


def _rows_valid(rows: list[Any], provider: str) -> bool:
    """True only if every row builds an Offer that `offer_problem` accepts, of ``provider``:
    the same rules checked a column at a time (C-speed passes over 50,000 rows instead of one
    Python call per row). Anything unusual answers False, and the per-row path then drops and
    reports each bad row exactly as before; this only skips that path when it has nothing to
    report."""
    width = len(_OFFER_COLUMNS)
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
        return False

    def column(name: str) -> list[Any]:
        return list(map(itemgetter(_COL[name]), rows))

    for name in _TEXT_COLUMNS:
        values = column(name)
        if set(map(type, values)) != {str} or "" in values:
            return False
    if set(column("provider")) != {provider} or not set(column("billing")) <= _BILLINGS:
        return False
    counts = column("gpu_count")
    if set(map(type, counts)) != {int} or not 0 < min(counts) <= max(counts) <= 64:
        return False
    for name, nullable in _NUMBER_COLUMNS:
        values = column(name)
        if nullable:
            values = [v for v in values if v is not None]
        if not values:
            continue
        lowest = 0 if name == "setup_fee_usd" else math.nextafter(0.0, 1.0)
        if not set(map(type, values)) <= _NUMBER_TYPES or not all(map(_finite, values)):
            return False
        if min(values) < lowest:
            return False
    notes = column("notes")
    if set(map(type, notes)) != {list} or any(type(n) is not str for ns in notes for n in ns):
        return False
    return set(map(type, column("provider_data"))) == {dict}


def _build_valid_rows(rows: list[Any]) -> list[Offer]:
    """Offers from rows `_rows_valid` accepted (notes as tuples, as the per-row path makes
    them; an empty provider_data is a fresh dict either way)."""
    notes = _COL["notes"]
    for r in rows:
        r[notes] = tuple(r[notes])
    return list(starmap(Offer, rows))


def write_cache(
    provider: str, offers: list[Offer], fetched_at: str, source: str | None = None
) -> Path:
    """Atomically replace the provider's cache file (planner.fsutil.atomic_write_text)."""
    rows = [[getattr(o, c) for c in _OFFER_COLUMNS] for o in offers]  # tuples write as lists
    doc = {
        "schema": CACHE_SCHEMA,
        "provider": provider,
        "fetched_at": fetched_at,
        "source": source,
        "columns": _OFFER_COLUMNS,
        "rows": rows,
    }
    return atomic_write_text(_cache_path(provider), json.dumps(doc, separators=(",", ":")))


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
    offers: list[Offer] = []
    for name in names:
        origin, path, chosen = "embedded", None, by_provider.get(name, [])
        source: str | None = "embedded snapshot (planner/offers/data/offers_snapshot.json)"
        if use_cache:
            try:
                cached = read_cache(name)
            except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
                cached = None
                warnings.append(
                    f"{name}: ignoring unreadable cache {_cache_path(name)} ({short(exc, 100)})"
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
        oldest = min(map(attrgetter("fetched_at"), chosen), default=None)
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
        offers += chosen
    return Catalog(tuple(offers), sources, tuple(warnings))


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
    (``region`` is the single-entry form). ``instance_type`` matches exactly."""

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


def offer_sort_key(o: Offer, price: float) -> tuple[Any, ...]:
    """Strict, deterministic order: price, then provider, instance, region, then the rest."""
    return (price, o.provider, o.instance_type, o.region, o.gpu, o.gpu_count, o.tier or "")


def filter_offers(offers: Iterable[Offer], flt: OfferFilter) -> list[tuple[Offer, float]]:
    """Offers that pass the filter, each with the price it is ranked by, strictly sorted."""
    gpu_id = None
    if flt.gpu:
        from planner.offers.gpus import canonical_gpu

        gpu_id = canonical_gpu(flt.gpu).id
    wanted = [r.strip().lower() for r in (flt.regions or ()) if r.strip()]
    if flt.region and flt.region.strip():
        wanted.append(flt.region.strip().lower())
    # One pass per filter that is set (a cache holds tens of thousands of offers).
    kept = list(offers)
    if flt.providers:
        providers = set(flt.providers)
        kept = [o for o in kept if o.provider in providers]
    if gpu_id:
        kept = [o for o in kept if o.gpu == gpu_id]
    if wanted:
        kept = [o for o in kept if _in_regions(o, wanted)]
    if flt.instance_type:
        kept = [o for o in kept if o.instance_type == flt.instance_type]
    if flt.min_gpu_memory_gb:
        kept = [o for o in kept if not o.gpu_memory_gb < flt.min_gpu_memory_gb]
    if flt.gpus:
        kept = [o for o in kept if o.gpu_count == flt.gpus]
    spot, horizon, cap = flt.spot, flt.horizon_months, flt.max_price_usd_per_hour
    priced = [(o, o.effective_usd_per_hour(spot=spot, horizon_months=horizon)) for o in kept]
    out = [(o, p) for o, p in priced if p is not None and (cap is None or not p > cap)]
    # Sorting the keys' positions (a stable sort, as sorting the pairs by key would be) lets
    # the sort compare the keys' leading floats directly.
    keys = list(starmap(offer_sort_key, out))
    return [out[i] for i in sorted(range(len(out)), key=keys.__getitem__)]


def _in_regions(o: Offer, wanted: list[str]) -> bool:
    where = " ".join(x for x in (o.region, o.zone, o.location) if x).lower()
    return any(w in where for w in wanted)
