"""Offers held as columns: a catalog of 50,000 offers without 50,000 Offer objects.

A user's cache holds tens of thousands of offers, and `gpuplan recommend` shows ten plans and a
few rejections. Filtering and ranking read a handful of fields of every offer (GPU, count,
provider, price, the tie-break names); building a frozen Offer of 22 fields for each one cost
more than the ranking itself (benchmarks/catalog_refresh.py). An OfferTable keeps one list per
Offer field and builds an Offer only when one is read (then keeps it, so an offer read twice is
the same object). It is a Sequence[Offer]: code that iterates it gets Offers as before.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields
from itertools import compress, repeat
from operator import attrgetter, is_not
from typing import Any

from planner.offers.offer import ON_DEMAND_RULES, Offer, monthly_usd_per_hour, sold_on_demand

COLUMNS = tuple(f.name for f in fields(Offer))  # Offer's fields, in order
_INDEX = {name: i for i, name in enumerate(COLUMNS)}
_NOTES, _DATA = _INDEX["notes"], _INDEX["provider_data"]


class OfferTable(Sequence[Offer]):
    """Offers as columns: ``columns[i]`` holds field ``COLUMNS[i]`` of every offer. A table
    taken from another (``take``: a filter's result, a ranking's order) shares its columns
    and its built Offers, and gathers a column only when it is read."""

    __slots__ = ("_base", "_built", "_derived", "_gathered", "_later", "_len", "_rows")

    def __init__(self, columns: Sequence[Sequence[Any]], built: dict[int, Offer] | None = None):
        if len(columns) != len(COLUMNS) or len({len(c) for c in columns}) > 1:
            raise ValueError("an offer table needs one column per Offer field, all as long")
        self._base = tuple(columns)
        self._rows: list[int] | None = None  # positions in _base, when taken from a table
        self._len = len(columns[0])
        self._built: dict[int, Offer] = built if built is not None else {}  # by _base position
        self._gathered: dict[Any, list[Any]] = {}  # columns (by index) and _derive's, in order
        # values worked out from the columns (prices, machine kinds), by _base position
        self._derived: dict[Any, list[Any]] = {}
        self._later: Callable[[], list[int]] | None = None  # _rows, when first needed

    @classmethod
    def empty(cls) -> OfferTable:
        return cls([[] for _ in COLUMNS])

    @classmethod
    def from_offers(cls, offers: Iterable[Offer]) -> OfferTable:
        """A table of existing Offers (reading one back gives the very object)."""
        offers = list(offers)
        columns = [list(map(attrgetter(name), offers)) for name in COLUMNS]
        return cls(columns, dict(enumerate(offers)))

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]]) -> OfferTable:
        """A table of rows in Offer field order (a transpose at C speed)."""
        if not rows:
            return cls.empty()
        return cls(list(zip(*rows, strict=True)))

    @classmethod
    def concat(cls, tables: Sequence[OfferTable]) -> OfferTable:
        columns: list[list[Any]] = [[] for _ in COLUMNS]
        built: dict[int, Offer] = {}
        start = 0
        for t in tables:
            for i, mine in enumerate(columns):
                mine += t._column(i)
            if t._built:  # the snapshot's offers, read or not
                view = t._view()
                rows = range(len(t)) if view is None else view
                built.update((start + j, t._built[i]) for j, i in enumerate(rows) if i in t._built)
            start += len(t)
        return cls(columns, built)

    def __len__(self) -> int:
        return self._len

    @typing.overload
    def __getitem__(self, i: int) -> Offer: ...
    @typing.overload
    def __getitem__(self, i: slice) -> OfferTable: ...
    def __getitem__(self, i: int | slice) -> Offer | OfferTable:
        if isinstance(i, slice):
            return self.take(range(*i.indices(self._len)))
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(i)
        rows = self._view()
        if rows is not None:
            i = rows[i]
        got = self._built.get(i)
        if got is None:
            row = [c[i] for c in self._base]
            # the cache stores notes as a JSON list; an Offer holds a tuple and its own dict
            row[_NOTES], row[_DATA] = tuple(row[_NOTES] or ()), dict(row[_DATA] or {})
            got = self._built[i] = Offer(*row)
        return got

    def __iter__(self) -> typing.Iterator[Offer]:
        return map(self.__getitem__, range(self._len))

    def column(self, name: str) -> Sequence[Any]:
        """Field ``name`` of every offer, in order (read-only by convention)."""
        return self._column(_INDEX[name])

    def _column(self, i: int) -> Sequence[Any]:
        rows = self._view()
        if rows is None:
            return self._base[i]
        got = self._gathered.get(i)
        if got is None:
            got = self._gathered[i] = list(map(self._base[i].__getitem__, rows))
        return got

    def _view(self) -> list[int] | None:
        """Positions in _base (None: _base itself), worked out now if they were deferred."""
        if self._later is not None:
            later, self._later = self._later, None
            self._rows = later()
        return self._rows

    def values_at(self, names: Sequence[str], positions: Sequence[int]) -> list[tuple[Any, ...]]:
        """Fields ``names`` of the offers at ``positions``, a tuple per offer (a few offers'
        fields, without gathering whole columns of a view)."""
        rows = self._view()
        at = positions if rows is None else list(map(rows.__getitem__, positions))
        columns = [list(map(self._base[_INDEX[n]].__getitem__, at)) for n in names]
        return list(zip(*columns, strict=True))

    def column_or(self, name: str, default: Any) -> Sequence[Any]:
        """Field ``name`` of every offer, ``default`` where it is falsy (``o.tier or ""``)."""
        values = self.column(name)
        if values.count(None) == self._len:  # a field no offer sets: one C-level pass
            return [default] * self._len
        return [v or default for v in values]

    def take(self, positions: Iterable[int]) -> OfferTable:
        """The offers at ``positions``, in that order: a view sharing this table's columns
        and built Offers (copying 22 columns in a new order costs more than reading them)."""
        mine = self._view()
        rows = list(positions) if mine is None else list(map(mine.__getitem__, positions))
        view = OfferTable.__new__(OfferTable)
        view._base, view._built, view._rows, view._len = self._base, self._built, rows, len(rows)
        view._gathered, view._later, view._derived = {}, None, self._derived
        return view

    def take_later(self, positions: Callable[[], Iterable[int]], count: int) -> OfferTable:
        """``take(positions())`` of ``count`` offers, with ``positions`` called only when an
        offer or a column is first read (a ranking's full order, which a report of its top
        ten never needs)."""

        def rows() -> list[int]:
            got = self.take(positions())._rows
            if got is None or len(got) != count:
                raise ValueError(f"expected {count} deferred positions")
            return got

        view = self.take(())
        view._len, view._later = count, rows
        return view

    def effective_usd_per_hour(
        self, spot: bool = False, horizon_months: float = 1.0
    ) -> list[float | None]:
        """Offer.effective_usd_per_hour of every offer, in one pass over the columns."""
        return list(self._derive(("usd_per_hour", spot, horizon_months), self._prices))

    def tuples(self, names: tuple[str, ...]) -> Sequence[tuple[Any, ...]]:
        """``(o.<name>, ...)`` of every offer, in order: a machine's kind, say (read-only)."""
        columns = [self._base[_INDEX[n]] for n in names]
        return self._derive(("tuples", names), lambda _: list(zip(*columns, strict=True)))

    def _derive(self, key: Any, make: Callable[..., list[Any]]) -> list[Any]:
        """``make(*key[1:])`` worked out once over the shared columns, in their order, and
        gathered once into this table's: a view (a filter's result, sorted by price) reads
        its offers out of order, so it reads one list, not each column the value needs."""
        got = self._gathered.get(key)
        if got is None:
            base = self._derived.get(key)
            if base is None:
                base = self._derived[key] = make(*key[1:])
            rows = self._view()
            got = self._gathered[key] = base if rows is None else list(map(base.__getitem__, rows))
        return got

    def _prices(self, spot: bool, horizon_months: float) -> list[float | None]:
        """effective_usd_per_hour over the shared columns (every offer of the base table)."""
        column = self._base.__getitem__
        if spot:
            return list(column(_INDEX["spot_price_usd_per_hour"]))
        monthly = column(_INDEX["monthly_price_usd"])
        prices: list[float | None] = list(column(_INDEX["price_usd_per_hour"]))
        provider, kind = column(_INDEX["provider"]), column(_INDEX["instance_type"])
        unsold = {
            i
            for i, p in enumerate(provider)
            if p in ON_DEMAND_RULES and not sold_on_demand(p, kind[i])
        }
        for i in unsold:
            prices[i] = None
        billing, fee = column(_INDEX["billing"]), column(_INDEX["setup_fee_usd"])
        # only the few monthly rentals (Hetzner) need arithmetic
        for i in compress(range(len(prices)), map(is_not, monthly, repeat(None))):
            if billing[i] == "monthly" and i not in unsold:
                prices[i] = monthly_usd_per_hour(monthly[i], fee[i], horizon_months)
        return prices

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and len(other) == self._len and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"OfferTable({self._len} offers, {len(self._built)} built)"
