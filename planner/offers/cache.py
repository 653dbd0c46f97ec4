"""The user's offer cache: one file per cloud, replaced atomically, checked when read.

A cache is written only by a successful, non-empty refresh (planner.offers.refresh) through a
temp file, fsync and rename, so a failed or killed refresh leaves the previous file as it was,
age included. A cache is a file on the user's disk: it may be hand-edited, truncated or written
by another version, so every offer is checked when read and a bad one is dropped and reported.

Formats, all still read: v1 (`gpuplan.offers/1`, the snapshot's: one object per offer), v2
(one row per offer under a column header) and v3, written now: the columns themselves, with a
column whose value is the same for every offer (the provider, the source, the date, empty
notes...) stored once. A 50,000-offer cache then parses in about half the time of v2, and loads
straight into an OfferTable without building 50,000 Offers (benchmarks/catalog_refresh.py).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from planner.errors import short
from planner.fsutil import atomic_write_text
from planner.gcpause import cyclic_gc_paused
from planner.offers.offer import Offer
from planner.offers.table import COLUMNS, OfferTable

SCHEMA = "gpuplan.offers/1"  # the embedded snapshot and v1 caches: a list of offer objects
CACHE_SCHEMA_V2 = "gpuplan.offers-cache/2"  # rows under a column header
CACHE_SCHEMA = "gpuplan.offers-cache/3"  # columns, the constant ones once
_OFFER_COLUMNS = list(COLUMNS)
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


# What read_cache raises for a file it cannot use (a corrupt, foreign or deeply nested one)
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, RecursionError)


def _cache_path(provider: str) -> Path:
    return cache_dir() / "offers" / f"{provider}.json"


@contextmanager
def cache_locked(provider: str) -> Iterator[None]:
    """Hold the provider's cache lock. A refresh reads, merges and replaces the cache under it,
    so two gpuplan processes sharing a cache folder (CI matrix jobs refreshing a region each)
    never write over each other's regions. An advisory flock on a file beside the cache,
    released when the process ends however it ends; where there is no flock (Windows) the
    cache is still replaced atomically, unlocked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path = _cache_path(provider).with_name(f".{provider}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def read_cache(provider: str) -> tuple[OfferTable, dict[str, Any]] | None:
    """The provider's cached offers, or None if absent. A corrupt file is reported, not used;
    the reasons for offers dropped go in ``doc["dropped"]``."""
    path = _cache_path(provider)
    if not path.exists():
        return None
    # Tens of thousands of new containers, none of them in a cycle (planner/gcpause.py).
    with cyclic_gc_paused():
        return _read_cache_doc(path, provider)


_TEXT_COLUMNS = ("provider", "instance_type", "region", "gpu", "billing", "fetched_at")
_OPTIONAL_TEXT_COLUMNS = ("availability", "tier", "zone", "location")  # a string or null
_OPTIONAL_SIZE_COLUMNS = ("vcpus", "ram_gib", "disk_gb")  # a number >= 0 or null
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
        if not (positive_number(value) or (name == "setup_fee_usd" and value == 0)):
            null = " or null" if nullable else ""
            return f"{name} must be a positive number{null}, got {short(repr(value), 30)}"
    for name in _OPTIONAL_TEXT_COLUMNS:
        if not isinstance(getattr(o, name), str | None):
            return f"{name} must be a string or null, got {short(repr(getattr(o, name)), 30)}"
    for name in _OPTIONAL_SIZE_COLUMNS:
        value = getattr(o, name)
        if value is not None and not (positive_number(value) or value == 0):
            return f"{name} must be a number >= 0 or null, got {short(repr(value), 30)}"
    if o.billing not in _BILLINGS:
        return f"billing must be hourly or monthly, got {short(repr(o.billing), 30)}"
    if not _date_valid(o.fetched_at):
        return f"fetched_at must be a date not in the future, got {short(repr(o.fetched_at), 40)}"
    if not isinstance(o.provider_data, dict) or not all(isinstance(n, str) for n in o.notes):
        return "provider_data must be an object and notes a list of strings"
    return None


def _date_valid(value: str) -> bool:
    """An ISO date-time no later than a day from now (a clock a little ahead is tolerated): a
    price dated later would never count as stale, and its age would print negative."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when <= datetime.now(UTC) + timedelta(days=1)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond any float (JSON allows 10**400): unusable
        return False


def _all_finite(values: list[int | float]) -> bool:
    try:  # math.isfinite over the column at C speed; one huge integer makes it raise
        return all(map(math.isfinite, values))
    except OverflowError:
        return False


def positive_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and _finite(value)
        and value > 0
    )


# Ten times any provider's catalog (the largest public ones list tens of thousands of offers;
# benchmarks/cli_speed.py ranks 100,000).
MAX_OFFERS = 1_000_000


def _read_cache_doc(path: Path, provider: str) -> tuple[OfferTable, dict[str, Any]]:
    doc = json.loads(path.read_bytes())
    if not isinstance(doc, dict):
        raise ValueError(f"a JSON {type(doc).__name__}, not an object")
    if doc.get("provider") != provider:
        raise ValueError(f"provider {short(repr(doc.get('provider')), 40)}, not '{provider}'")
    if not isinstance(doc.get("source"), (str, type(None))):  # shown as text by every reader
        raise ValueError(f"'source' must be a string, got {type(doc['source']).__name__}")
    schema = doc.get("schema")
    if schema == SCHEMA:
        return _checked(doc, doc["offers"], offer_from_dict, provider)
    if schema == CACHE_SCHEMA:
        names, columns, count = _v3_columns(doc)
    elif schema == CACHE_SCHEMA_V2:
        names, rows = doc["columns"], doc["rows"]
        transposed = _v2_columns(rows, len(names))
        if transposed is None:  # not a list of rows as wide as the header: row by row
            return _checked(doc, rows, _row_builder(names), provider)
        columns, count = transposed, len(rows)
    elif isinstance(schema, str) and schema.startswith("gpuplan.offers"):
        raise ValueError(f"schema {short(schema, 40)}, from a newer gpuplan than this one")
    else:
        raise ValueError(f"unexpected schema {short(repr(schema), 40)}")
    if names == _OFFER_COLUMNS and _columns_valid(dict(zip(names, columns, strict=True)), provider):
        doc["dropped"] = []  # the common case: nothing to report, no Offer built
        shared = [_full(_shared(n, c), count) for n, c in zip(names, columns, strict=True)]
        return OfferTable(shared), doc
    rows = [list(r) for r in zip(*(_full(c, count) for c in columns), strict=True)]
    return _checked(doc, rows, _row_builder(names), provider)


def _v3_columns(doc: dict[str, Any]) -> tuple[list[str], list[Sequence[Any]], int]:
    """v3's (names, columns, count of offers). A constant column comes as ``[value]``: checked
    once, repeated when the table is built (`_full`)."""
    count, constant, varying = doc["count"], doc["constant"], doc["columns"]
    if not isinstance(constant, dict) or not isinstance(varying, dict) or constant.keys() & varying:
        raise ValueError("malformed columns")
    # A count with every column constant is held by nothing else: bound it, or a corrupt file
    # would have the table built as that many offers (out of memory instead of a warning).
    if type(count) is not int or not 0 <= count <= MAX_OFFERS:
        raise ValueError(f"count must be an integer from 0 to {MAX_OFFERS:,}")
    if count > 1 and not varying:  # that many copies of one offer: no cache writes that
        raise ValueError("every column is constant: one offer repeated")
    if any(not isinstance(c, list) or len(c) != count for c in varying.values()):
        raise ValueError(f"every column must hold {short(repr(count), 20)} values")
    names = [n for n in _OFFER_COLUMNS if n in constant or n in varying]
    names += sorted(n for n in [*constant, *varying] if n not in _OFFER_FIELDS)  # a later version's
    columns = [[constant[n]] if n in constant else varying[n] for n in names]
    return names, columns, count


def _shared(name: str, column: Sequence[Any]) -> Sequence[Any]:
    """A text column with each distinct value one object (sys.intern). A cache repeats a few
    GPU, region and instance names over 50,000 offers; as one object each, they are freed at
    once and read from a warm cache when the ranking reads them in price order."""
    return list(map(sys.intern, column)) if name in _TEXT_COLUMNS and len(column) > 1 else column


def _full(column: Sequence[Any], count: int) -> Sequence[Any]:
    """A column as long as the table (every varying column is; a constant one is one value)."""
    return column if len(column) == count else list(column) * count


def _v2_columns(rows: Any, width: int) -> list[Sequence[Any]] | None:
    """v2's rows as columns (a transpose at C speed), or None unless every row is a list of
    ``width`` values."""
    if not isinstance(rows, list) or not rows:
        return None
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
        return None
    return list(zip(*rows, strict=True))


def _row_builder(names: list[str]) -> Callable[[Any], Offer]:
    if names != _OFFER_COLUMNS:  # written by another gpuplan version: match by name

        def by_name(r: Any) -> Offer:
            return offer_from_dict(dict(zip(names, r, strict=True)))

        return by_name
    notes, data = names.index("notes"), names.index("provider_data")

    def in_order(r: Any) -> Offer:
        if len(r) != len(names):
            raise ValueError("the row does not match the columns")
        r[notes], r[data] = tuple(r[notes] or ()), r[data] or {}
        return Offer(*r)

    return in_order


def _checked(
    doc: dict[str, Any], rows: Any, build: Callable[[Any], Offer], provider: str
) -> tuple[OfferTable, dict[str, Any]]:
    """Row by row: each offer built and checked, a bad one dropped with its reason."""
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
    return OfferTable.from_offers(offers), doc


_NUMBER_TYPES = frozenset({int, float})


def _columns_valid(columns: dict[str, Sequence[Any]], provider: str) -> bool:
    """True only if every offer builds an Offer that `offer_problem` accepts, of ``provider``:
    the same rules checked a column at a time (C-speed passes over 50,000 values instead of one
    Python call per offer). Anything unusual answers False, and the per-row path then drops and
    reports each bad offer exactly as before; this only skips that path when it has nothing to
    report."""
    for name in _TEXT_COLUMNS:
        values = columns[name]
        if set(map(type, values)) != {str} or "" in values:
            return False
    if set(columns["provider"]) != {provider} or not set(columns["billing"]) <= _BILLINGS:
        return False
    if not all(map(_date_valid, set(columns["fetched_at"]))):  # a few distinct dates
        return False
    counts = columns["gpu_count"]
    if set(map(type, counts)) != {int} or not 0 < min(counts) <= max(counts) <= 64:
        return False
    for name, nullable in _NUMBER_COLUMNS:
        values = columns[name]
        if nullable:
            values = [v for v in values if v is not None]
        if not values:
            continue
        lowest = 0 if name == "setup_fee_usd" else math.nextafter(0.0, 1.0)
        if not set(map(type, values)) <= _NUMBER_TYPES or not _all_finite(values):
            return False
        if min(values) < lowest:
            return False
    for name in _OPTIONAL_TEXT_COLUMNS:
        if not set(map(type, columns[name])) <= {str, type(None)}:
            return False
    for name in _OPTIONAL_SIZE_COLUMNS:
        values = [v for v in columns[name] if v is not None]
        if not values:
            continue
        if not set(map(type, values)) <= _NUMBER_TYPES or not _all_finite(values):
            return False
        if min(values) < 0:
            return False
    notes = columns["notes"]
    if set(map(type, notes)) != {list} or any(type(n) is not str for ns in notes for n in ns):
        return False
    return set(map(type, columns["provider_data"])) == {dict}


def write_cache(
    provider: str, offers: Iterable[Offer], fetched_at: str, source: str | None = None
) -> Path:
    """Atomically replace the provider's cache file (planner.fsutil.atomic_write_text), in
    the v3 format: a column whose values are all equal, and of one type, is stored once."""
    table = OfferTable.from_offers(offers)
    constant: dict[str, Any] = {}
    varying: dict[str, list[Any]] = {}
    for name in _OFFER_COLUMNS:
        values = list(table.column(name))  # tuples (notes) write as lists
        if values and len(set(map(type, values))) == 1 and values.count(values[0]) == len(values):
            constant[name] = values[0]
        else:
            varying[name] = values
    doc = {
        "schema": CACHE_SCHEMA,
        "provider": provider,
        "fetched_at": fetched_at,
        "source": source,
        "count": len(table),
        "constant": constant,
        "columns": varying,
    }
    return atomic_write_text(_cache_path(provider), json.dumps(doc, separators=(",", ":")))
