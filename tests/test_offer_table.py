"""Offers held as columns (planner/offers/table.py) give the answers Offer objects give.

The catalog, the filter, the ranking and the FP8 screen read an OfferTable's columns and build
an Offer only for what is shown. Each is checked here against the straightforward per-offer
version (the code they replaced) on the embedded snapshot and on random catalogs full of ties.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from planner.decide.plan import Need
from planner.decide.rank import rank_offers
from planner.offers.catalog import OfferFilter, filter_offers, filter_table, snapshot_offers
from planner.offers.offer import Offer
from planner.offers.table import OfferTable
from tests.test_rank_groups import shaped_catalog, tied_catalog
from tests.test_recommend import planning_candidates


def reference_filter(offers: list[Offer], flt: OfferFilter) -> list[tuple[Offer, float]]:
    """The per-offer filter the columnar one replaced: one Offer at a time, stable sort."""
    from planner.offers.gpus import gpu_ids

    wanted_gpus = set(gpu_ids(flt.gpu)) if flt.gpu else None  # a family: all its variants
    wanted = [r.strip().lower() for r in (flt.regions or ()) if r.strip()]
    out = []
    for o in offers:
        where = " ".join(x for x in (o.region, o.zone, o.location) if x).lower()
        price = o.effective_usd_per_hour(spot=flt.spot, horizon_months=flt.horizon_months)
        if (
            (flt.providers and o.provider not in flt.providers)
            or (wanted_gpus and o.gpu not in wanted_gpus)
            or (wanted and not any(w in where for w in wanted))
            or (flt.instance_type and o.instance_type != flt.instance_type)
            or (flt.min_gpu_memory_gb and o.gpu_memory_gb < flt.min_gpu_memory_gb)
            or (flt.gpus and o.gpu_count != flt.gpus)
            or price is None
            or (flt.max_price_usd_per_hour is not None and price > flt.max_price_usd_per_hour)
        ):
            continue
        out.append((o, price))
    key = lambda pair: (pair[1], pair[0].provider, pair[0].instance_type, pair[0].region,  # noqa: E731
                        pair[0].gpu, pair[0].gpu_count, pair[0].tier or "")  # fmt: skip
    return sorted(out, key=key)


def mixed_offers(seed: int) -> list[Offer]:
    rng = random.Random(seed)
    offers = shaped_catalog(rng, 300) + tied_catalog(rng, 200) + snapshot_offers()
    # exact twins apart from facts the order does not read, so ties reach every key column
    offers += [replace(o, zone="z9", vcpus=99) for o in rng.sample(offers, 40)]
    offers += [replace(o, tier="community") for o in rng.sample(offers, 20)]  # None vs a tier
    rng.shuffle(offers)
    return offers


FILTERS = [
    OfferFilter(),
    OfferFilter(spot=True),
    OfferFilter(providers=("aws", "runpod", "hetzner")),
    OfferFilter(providers=("aws", "gcp", "runpod", "vast", "hetzner", "lambda", "azure", "oci")),
    OfferFilter(providers=("aws", "gcp", "runpod", "vast", "hetzner", "lambda")),  # no azure
    OfferFilter(gpu="H100"),
    OfferFilter(regions=("us", "r1", "fsn")),
    OfferFilter(instance_type="m3"),
    OfferFilter(min_gpu_memory_gb=48),
    OfferFilter(gpus=8),
    OfferFilter(max_price_usd_per_hour=2.0),
    OfferFilter(horizon_months=6.0, providers=("hetzner",)),
    OfferFilter(spot=True, max_price_usd_per_hour=1.0, gpus=1),
]


@pytest.mark.parametrize("flt", FILTERS, ids=repr)
@pytest.mark.parametrize("seed", [1, 2])
def test_columnar_filter_gives_the_per_offer_answer(flt, seed):
    offers = mixed_offers(seed)
    expected = reference_filter(offers, flt)
    got = filter_offers(offers, flt)
    assert [(id(o), p) for o, p in got] == [(id(o), p) for o, p in expected]
    table, prices = filter_table(OfferTable.from_offers(offers), flt)
    assert list(table) == [o for o, _ in expected] and prices == [p for _, p in expected]


def test_a_table_builds_offers_only_when_read_and_keeps_them():
    offers = [o for o in snapshot_offers() if o.provider == "hetzner"]
    assert len(offers) >= 3 and all(o.billing == "monthly" for o in offers)
    table = OfferTable.from_rows(_rows(offers))
    assert repr(table).endswith("0 built)")
    view = table.take([2, 0])[::-1]  # a view of a view
    assert view[0] == offers[0] and view[1] == offers[2]
    assert view[0] is table[0]  # built once, shared
    assert view.column("instance_type") == [offers[0].instance_type, offers[2].instance_type]
    assert repr(table).endswith("2 built)")
    for spot in (False, True):
        for horizon in (1.0, 12.0):
            assert table.effective_usd_per_hour(spot, horizon) == [
                o.effective_usd_per_hour(spot=spot, horizon_months=horizon) for o in offers
            ]
    both = OfferTable.concat([view, table])
    assert list(both) == [offers[0], offers[2], *offers] and both[1] is view[1]


@pytest.mark.parametrize("seed", [5, 6])
def test_values_worked_out_once_read_the_same_through_views(seed):
    """Prices and kinds are worked out over the shared columns and gathered into a view's
    order (planner/offers/table.py, _derive): through views of views, lazy ones included,
    they are each offer's own, whichever table asked first."""
    offers = mixed_offers(seed)
    rng = random.Random(seed)
    table = OfferTable.from_rows(_rows(offers))
    picks = rng.sample(range(len(offers)), 200)
    view = table.take(picks)
    inner = rng.sample(range(200), 50)
    later = view.take_later(lambda: inner, 50)
    names = ("gpu", "gpu_count", "provider")
    if seed % 2:  # the base table first, or the views first
        table.effective_usd_per_hour(True, 3.0), table.tuples(names)
    for t, rows in ((later, [picks[i] for i in inner]), (view, picks), (table, range(len(offers)))):
        chosen = [offers[i] for i in rows]
        assert t.tuples(names) == [(o.gpu, o.gpu_count, o.provider) for o in chosen]
        for spot, horizon in ((False, 1.0), (False, 3.0), (True, 3.0)):
            assert t.effective_usd_per_hour(spot, horizon) == [
                o.effective_usd_per_hour(spot=spot, horizon_months=horizon) for o in chosen
            ]
        assert list(t) == chosen


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize(
    "need", [Need(), Need(spot=True), Need(max_price_usd_per_hour=3.0), Need(workload="batch")],
    ids=repr,
)  # fmt: skip
def test_ranking_a_table_gives_the_ranking_of_its_offers(seed, need):
    offers = [o for o, _ in reference_filter(mixed_offers(seed), OfferFilter(spot=need.spot))]
    # a few 1x T4 machines, which the 8B model does not fit at 8192 tokens: rejections to order
    offers += [
        replace(o, instance_type=f"t4-{i}", gpu="t4", gpu_count=1, gpu_memory_gb=16.0)
        for i, o in enumerate(offers[:3])
    ]
    cands = planning_candidates("llama-3.1-8b", None)
    from_list = rank_offers(cands, offers, need)
    from_table = rank_offers(cands, OfferTable.from_rows(_rows(offers)), need)
    assert list(from_table.plans) == list(from_list.plans)
    assert list(from_table.offers) == list(from_list.offers)
    assert from_table.rejected == from_list.rejected
    assert from_table.best_per_candidate == from_list.best_per_candidate
    # the JSON reads the rejected offers' fields from the table's columns, no Offer built
    from planner.present.report import recommendation_to_dict

    rejected = recommendation_to_dict(from_table, 1, {})["rejected"]
    assert rejected == [
        {"provider": r.offer.provider, "instance_type": r.offer.instance_type,
         "region": r.offer.region, "gpu": r.offer.gpu, "gpu_count": r.offer.gpu_count,
         "reason": r.reason}
        for r in from_list.rejected
    ]  # fmt: skip
    assert len(rejected) > 1  # enough to see the order


def _rows(offers: list[Offer]) -> list[list[object]]:
    from planner.offers.catalog import offer_to_dict
    from planner.offers.table import COLUMNS

    return [[offer_to_dict(o)[c] for c in COLUMNS] for o in offers]


def test_equal_plans_rank_by_provider_instance_region_then_tier():
    """The documented tie-break, read from the table's columns: the same machine at the same
    price sorts by provider, instance type, region, then tier (None first)."""
    base = next(o for o in snapshot_offers() if o.provider == "runpod" and o.gpu == "h100-sxm")
    twins = [
        replace(base, instance_type="m2", region="r1", tier=None),
        replace(base, instance_type="m1", region="r2", tier="secure"),
        replace(base, instance_type="m1", region="r2", tier=None),
        replace(base, instance_type="m1", region="r1", tier="secure"),
    ]
    cands = planning_candidates("llama-3.1-8b", None)
    ranking = rank_offers(cands, OfferTable.from_rows(_rows(twins)), Need())
    assert [(o.instance_type, o.region, o.tier) for o in ranking.offers] == [
        ("m1", "r1", "secure"), ("m1", "r2", None), ("m1", "r2", "secure"), ("m2", "r1", None),
    ]  # fmt: skip


def reference_screen(current, cands, offers):
    """The per-offer FP8 screen the column-wise one replaced (planner/decide/suggest.py)."""
    import math

    from planner.decide.fit import MULTI_NODE_PROVIDERS
    from planner.decide.suggest import MIN_SAVING, compared_measure
    from planner.offers.gpus import gpu_table

    need, native = current.need, cands[0]
    floor_bytes = 0.9 * native.weights.served * 8 / native.fmt.bits
    hourly = compared_measure(need) == "usd_per_hour"
    bound = current.estimate.usd_per_hour * (1 - MIN_SAVING) if hourly else math.inf
    out = []
    for o in offers:
        price = o.effective_usd_per_hour(spot=need.spot, horizon_months=need.horizon_months)
        gpu = gpu_table().get(o.gpu)
        nodes = need.max_nodes if o.provider in MULTI_NODE_PROVIDERS else 1
        if (math.inf if price is None else price) > bound or gpu is None:
            continue
        usable = gpu.usable_memory_bytes * need.gpu_memory_utilization * o.gpu_count * nodes
        if usable >= floor_bytes:
            out.append(o)
    return out


@pytest.mark.parametrize(
    "need",
    [Need(concurrency=24), Need(spot=True, concurrency=24), Need(workload="batch"),
     Need(spot=True, workload="batch")],
    ids=repr,
)  # fmt: skip
@pytest.mark.parametrize("model", ["llama-3.1-8b", "llama-3.1-70b"])
def test_fp8_screen_keeps_what_the_per_offer_screen_kept(model, need):
    """Offers without a price pass only a screen in $ per token (an infinite bound)."""
    from planner.decide.suggest import screen_offers

    offers = mixed_offers(7)
    cands = planning_candidates(model, None)
    current = rank_offers(cands, offers, need).plans[0]
    got = screen_offers(current, cands, OfferTable.from_rows(_rows(offers)))
    expected = reference_screen(current, cands, offers)
    assert got == expected and expected


@pytest.mark.parametrize("seed", [8, 9])
@pytest.mark.parametrize(
    ("flt", "need"),
    [(OfferFilter(), Need()), (OfferFilter(spot=True), Need(spot=True, workload="batch")),
     (OfferFilter(), Need(horizon_months=6.0, objective="cost")),
     (OfferFilter(gpus=1), Need(max_price_usd_per_hour=1.5)),
     (OfferFilter(providers=("aws", "hetzner", "lambda")), Need(objective="speed"))],
    ids=repr,
)  # fmt: skip
def test_ranking_the_unsorted_filter_result_with_its_order_keys(flt, need, seed):
    """recommend ranks filter_table(ordered=False)'s result, breaking ties with the filter's
    order keys (planner/offers/catalog.py, order_keys): the ranking of the sorted result."""
    from planner.offers.catalog import order_keys

    offers = mixed_offers(seed)
    offers += [replace(o, region="r0", zone="zz") for o in offers[::5]]  # price and name twins
    table = OfferTable.from_rows(_rows(offers))
    cands = planning_candidates("llama-3.1-8b", "auto")
    ordered, _ = filter_table(table, flt)
    loose, _ = filter_table(table, flt, ordered=False)
    assert len(loose) == len(ordered) and set(map(id, loose)) == set(map(id, ordered))
    want = rank_offers(cands, ordered, need)
    got = rank_offers(cands, loose, need, order_keys(loose, flt))
    assert len(got.plans) == len(want.plans)
    assert list(got.plans[:25]) == list(want.plans[:25])
    assert list(got.offers) == list(want.offers)
    assert got.rejected == want.rejected and got.best_per_candidate == want.best_per_candidate


def _gcp(instance_type: str, gpu: str, count: int, price: float, spot: float | None) -> Offer:
    from tests.test_generate import make_offer

    return replace(
        make_offer("gcp"), instance_type=instance_type, gpu=gpu, gpu_count=count,
        price_usd_per_hour=price, spot_price_usd_per_hour=spot, provider_data={},
    )  # fmt: skip


def test_machines_gcp_does_not_sell_on_demand_have_no_on_demand_price():
    """Sweep: A4 (B200), A3 Ultra and A3 High below 8 GPUs are sold through reservations, DWS
    flex-start or spot only; ranked on demand at their listed price, an a4-highgpu-8g led
    DeepSeek-R1's table at $360.86/h and generate then skipped it for a plan 26% dearer. They
    have no on-demand price now (Offer and OfferTable alike); their spot price stays."""
    from planner.offers.offer import sold_on_demand

    for kind, sold in [("a4-highgpu-8g", False), ("a4x-highgpu-4g", False),
                       ("a3-ultragpu-8g", False), ("a3-highgpu-1g", False),
                       ("a3-highgpu-4g", False), ("a3-highgpu-8g", True),
                       ("a3-megagpu-8g", True), ("a2-highgpu-1g", True)]:  # fmt: skip
        assert sold_on_demand("gcp", kind) is sold, kind
    assert sold_on_demand("aws", "a4-highgpu-8g")  # the rule is GCP's
    a4 = _gcp("a4-highgpu-8g", "b200", 8, 40.0, 20.0)
    a3 = _gcp("a3-highgpu-8g", "h100-sxm", 8, 88.0, 30.0)
    assert a4.effective_usd_per_hour() is None and a4.effective_usd_per_hour(spot=True) == 20.0
    assert a3.effective_usd_per_hour() == 88.0
    table = OfferTable.from_offers([a4, a3])
    assert table.effective_usd_per_hour() == [None, 88.0]
    assert table.effective_usd_per_hour(spot=True) == [20.0, 30.0]
    kept, _ = filter_table(table, OfferFilter())
    assert [o.instance_type for o in kept] == ["a3-highgpu-8g"]


def test_a_gpu_only_sold_as_spot_is_refused_on_demand_with_a_spot_hint(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from planner.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["recommend", "llama-3.1-8b", "--gpu", "b200", "--providers", "gcp"]
    r = CliRunner().invoke(main, args, env={"HF_HUB_OFFLINE": "1"})
    assert r.exit_code == 3, r.output
    assert "not sold on demand" in r.output and "hint: add --spot" in r.output, r.output
    spot = CliRunner().invoke(main, [*args, "--spot"], env={"HF_HUB_OFFLINE": "1"})
    assert spot.exit_code == 0 and "a4-highgpu-8g" in spot.output, spot.output


def test_offers_says_why_a_spot_only_gpu_lists_nothing_on_demand(tmp_path, monkeypatch):
    """Review: `gpuplan offers --gpu b200 --providers gcp` printed an empty table and nothing
    else; recommend says why."""
    from click.testing import CliRunner

    from planner.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["offers", "--gpu", "b200", "--providers", "gcp"]
    r = CliRunner().invoke(main, args, env={"HF_HUB_OFFLINE": "1"})
    assert r.exit_code == 0 and "not sold on demand: add --spot" in r.output, r.output
    spot = CliRunner().invoke(main, [*args, "--spot"], env={"HF_HUB_OFFLINE": "1"})
    assert "a4-highgpu-8g" in spot.output and "not sold on demand" not in spot.output


def test_spot_only_counts_machines_not_sold_on_demand_not_ones_over_a_price_cap():
    """recommend and offers both ask catalog.spot_only why an on-demand search came back empty.
    A first version counted every offer a spot search found: `offers --max-price 5` over an
    on-demand $10 machine with a $3 spot price would have said "not sold on demand"."""
    from planner.offers.catalog import spot_only

    pricey = replace(_gcp("a3-highgpu-8g", "h100-sxm", 8, 10.0, 3.0), provider="aws",
                     instance_type="p5.48xlarge")  # fmt: skip
    a4 = _gcp("a4-highgpu-8g", "b200", 8, 40.0, 4.0)
    capped = OfferFilter(max_price_usd_per_hour=5.0)
    assert spot_only(OfferTable.from_offers([pricey]), capped) == 0
    assert spot_only(OfferTable.from_offers([pricey, a4]), capped) == 1
    assert spot_only(OfferTable.from_offers([a4]), replace(capped, spot=True)) == 0
