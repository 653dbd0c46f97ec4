"""The machines of the catalog a plan could rent (pure): the $/h it would pay for each, and
which candidates one of them holds with one request (no pipeline over nodes is planned for
those)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress

from planner.decide.fit import Candidate, holds_model
from planner.decide.plan import Need
from planner.offers.gpus import GpuSpec, gpu_table
from planner.offers.offer import Offer
from planner.offers.table import OfferTable


def speed_known(gpu: GpuSpec) -> bool:
    """Whether the GPU table has the dense 16-bit throughput the speed model needs."""
    return bool(gpu.bf16_tflops_dense or gpu.fp16_tflops_dense)


def monthly_for_a_job(offers: OfferTable, need: Need) -> set[int]:
    """Positions of monthly rentals when the load is a job: it pays for its hours, a monthly
    rental bills whole months (none otherwise)."""
    if not need.job_requests:
        return set()
    return {pos for pos, bill in enumerate(offers.column("billing")) if bill == "monthly"}


def plan_prices(
    offers: OfferTable, need: Need, monthly: set[int] | None = None
) -> list[float | None]:
    """The $/h a plan pays per machine of each offer (spot, horizon), None where none can be
    planned (no such price, or a monthly rental for a job; ``monthly``: those positions)."""
    prices = offers.effective_usd_per_hour(need.spot, need.horizon_months)
    skip = monthly_for_a_job(offers, need) if monthly is None else monthly
    return [None if pos in skip else p for pos, p in enumerate(prices)] if skip else list(prices)


def held_candidates(
    cands: Sequence[Candidate],
    offers: Iterable[Offer],
    need: Need,
    prices: Sequence[float | None] | None = None,
) -> dict[int, str]:
    """The candidates (by index) one node of the catalog holds with one request, each with
    such a node: no pipeline over nodes is planned for them. The catalog: machines a plan could
    rent (priced within --max-price, a GPU with a published speed, --gpus, no monthly rental
    for a job); ``prices``: their plan_prices if known."""
    table = offers if isinstance(offers, OfferTable) else OfferTable.from_offers(offers)
    if prices is None:
        prices = plan_prices(table, need)
    cap = need.max_price_usd_per_hour  # a node over --max-price cannot be the plan
    priced = [price is not None and (cap is None or price <= cap) for price in prices]
    kinds = set(compress(table.tuples(("gpu", "gpu_count")), priced))
    gpus, out = gpu_table(), {}
    for idx, cand in enumerate(cands):
        for gpu_id, count in sorted(kinds, key=lambda k: (k[1], k[0])):  # the smallest named
            if need.gpus is not None and count != need.gpus:
                continue
            gpu = gpus.get(gpu_id)
            if gpu is None or not speed_known(gpu):
                continue
            if holds_model(cand, gpu, count, need):
                out[idx] = f"{count}x {gpu_id}"
                break
    return out
