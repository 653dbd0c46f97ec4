"""A ranking's plans and rejections, worked out and built as they are read (pure).

A report shows the first ten plans of a ranking (--top) out of tens of thousands of offers:
the ranking finds those first (planner/decide/rank.py, _Picker.pick_top) and builds a Plan
only for an option that is read. Reading further asks the ranking for four times as many
options, or for every one sorted once that is most of them.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from planner.decide.plan import Plan
from planner.offers.offer import Offer
from planner.offers.table import OfferTable

FIRST_PLANS = 10  # options a ranking works out first: a report's default --top


class LazyPlans(Sequence[Plan]):
    """``count`` plans in order, of which the options of the first are known (``picks``);
    ``first(k)`` gives the first ``k`` options and ``build`` makes an option's Plan."""

    def __init__(
        self, picks: list[typing.Any], count: int, build: Callable[[typing.Any], Plan],
        first: Callable[[int], list[typing.Any]],
    ) -> None:  # fmt: skip
        self._picks, self._count, self._build, self._first = picks, count, build, first
        self._built: dict[int, Plan] = {}

    def __len__(self) -> int:
        return self._count

    @property
    def built(self) -> int:
        """How many Plans have been built so far (the report builds only what it shows)."""
        return len(self._built)

    def prefix(self, n: int) -> list[typing.Any]:
        """The options of the first ``n`` plans (of every plan when ``n`` is past the end)."""
        if len(self._picks) < min(n, self._count):
            self._picks = self._first(max(n, 4 * len(self._picks)))
        return self._picks[:n]

    def _get(self, i: int) -> Plan:
        if i not in self._built:
            self._built[i] = self._build(self.prefix(i + 1)[i])
        return self._built[i]

    @typing.overload
    def __getitem__(self, i: int) -> Plan: ...
    @typing.overload
    def __getitem__(self, i: slice) -> list[Plan]: ...
    def __getitem__(self, i: int | slice) -> Plan | list[Plan]:
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._get(i)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Rejection:
    offer: Offer
    reason: str


class Rejections(Sequence[Rejection]):
    """The offers of a table at ``positions`` with why each was rejected, an Offer built only
    when one is read: a load most of a 50,000-offer cache cannot serve rejects tens of
    thousands, and a table report only counts them. ``reasons`` and ``fields`` read them
    without building any Offer."""

    def __init__(self, offers: OfferTable, positions: Sequence[int], reasons: Sequence[str]):
        self._offers, self._positions, self.reasons = offers, positions, reasons

    def __len__(self) -> int:
        return len(self._positions)

    @typing.overload
    def __getitem__(self, i: int) -> Rejection: ...
    @typing.overload
    def __getitem__(self, i: slice) -> tuple[Rejection, ...]: ...
    def __getitem__(self, i: int | slice) -> Rejection | tuple[Rejection, ...]:
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        return Rejection(self._offers[self._positions[i]], self.reasons[i])

    def fields(self, names: Sequence[str]) -> list[tuple[typing.Any, ...]]:
        """Fields ``names`` of each rejected offer, a tuple per rejection, in order."""
        return self._offers.values_at(names, self._positions)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]  # mutable-looking, as a list
