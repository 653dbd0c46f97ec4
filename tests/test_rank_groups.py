"""The fast paths of a big catalog give the answers of the straightforward ones.

Ranking prices whole machine groups at once (planner/decide/rank.py, objective.priced_order):
on catalogs full of repeated machine shapes, every offer must get the objective value that a
brute-force search of that offer alone finds (tests/oracle.py), the rejections must be exactly
the offers with no feasible layout, and the grouped scores must be the numbers objective_value
and tie_break give on each priced point. The cache reader checks rows a column at a time
(cache._columns_valid): it must accept only files the per-row check accepts whole, so that every
bad row is still dropped and reported as before.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace

import pytest

from planner.decide.fit import feasible_fits
from planner.decide.load import operate
from planner.decide.objective import (
    OBJECTIVES,
    PricedPoint,
    figures,
    objective_value,
    priced_order,
    tie_break,
)
from planner.decide.plan import Need
from planner.decide.rank import candidates_for, rank_offers
from planner.model.sources import load_model_spec
from planner.offers import cache, catalog
from planner.offers.gpus import gpu_table
from planner.offers.offer import Offer
from planner.offers.table import OfferTable
from tests.cachedocs import set_offer_value, v2_doc
from tests.oracle import brute_force_per_offer
from tests.test_recommend import SCENARIOS, planning_candidates

G = gpu_table()
SHAPES = [  # (gpu, count, provider): few machine kinds, many offers of each
    ("l4", 1, "aws"), ("l4", 4, "gcp"), ("a10g", 1, "runpod"), ("a100-80gb-sxm", 8, "aws"),
    ("h100-sxm", 1, "runpod"), ("h100-sxm", 2, "lambda"), ("h100-sxm", 8, "gcp"),
    ("l40s", 2, "vast"), ("rtx-4090", 1, "vast"), ("t4", 4, "azure"), ("mi300x", 1, "runpod"),
    ("rtx-6000-ada", 1, "hetzner"),
]  # fmt: skip


def shaped_catalog(rng: random.Random, n: int) -> list[Offer]:
    """Offers of a few shapes at random prices; some without a spot price, some monthly
    rentals, and some twins (same provider, instance and region) to exercise the tie-breaks."""
    out = []
    for i in range(n):
        gpu, count, provider = rng.choice(SHAPES)
        price = round(rng.uniform(0.2, 3.0) * count * G[gpu].memory_gb / 40, rng.choice([2, 4]))
        monthly = provider == "hetzner"
        offer = Offer(
            provider=provider, instance_type=f"m{i % 7}", region=f"r{rng.randrange(3)}",
            gpu=gpu, gpu_count=count, gpu_memory_gb=G[gpu].memory_gb, vcpus=8, ram_gib=64,
            disk_gb=None, price_usd_per_hour=price,
            spot_price_usd_per_hour=round(price / 3, 4) if rng.random() < 0.6 else None,
            billing="monthly" if monthly else "hourly", source="test", fetched_at="2026-11-29",
            monthly_price_usd=price * 730 if monthly else None,
            setup_fee_usd=79.0 if monthly else None, tier=rng.choice([None, "secure", "community"]),
        )  # fmt: skip
        out.append(offer)
    return out


EXTRA = [
    ("llama-3.1-70b", "auto", Need(max_price_usd_per_hour=9.0, horizon_months=3)),
    ("llama-3.1-8b", "auto", Need(max_price_usd_per_hour=1.5, spot=True)),
    ("qwen3-30b-a3b", "auto", Need(objective="latency", max_price_usd_per_hour=4.0)),
    ("llama-3.1-8b", None, Need(objective="cost-per-token", horizon_months=12)),
    ("llama-3.1-405b", "auto", Need(workload="batch")),
]


@pytest.mark.parametrize(
    ("model", "quant", "need"), SCENARIOS + EXTRA, ids=[s[0] for s in SCENARIOS + EXTRA]
)
def test_grouped_ranking_matches_a_per_offer_search(model, quant, need):
    rng = random.Random(len(model) * 31 + int(need.concurrency))
    offers = shaped_catalog(rng, 150)
    cands = planning_candidates(model, quant)
    values = brute_force_per_offer(cands, offers, need)
    ranking = rank_offers(cands, offers, need)
    feasible = {id(o): v for o, v in zip(offers, values, strict=True) if v != math.inf}
    assert sorted(id(o) for o in ranking.offers) == sorted(feasible)
    # rejections in input order, each offer once
    assert [id(r.offer) for r in ranking.rejected] == [
        id(o) for o, v in zip(offers, values, strict=True) if v == math.inf
    ]
    for plan, o in zip(ranking.plans, ranking.offers, strict=True):
        assert plan.offer is o
        assert plan.objective_value == pytest.approx(feasible[id(o)], rel=1e-12)
    scores = [p.objective_value for p in ranking.plans]
    assert scores == sorted(scores)
    if need.max_price_usd_per_hour is not None and not ranking.notes:
        # an offer that only the price cap rules out says so
        free = brute_force_per_offer(cands, offers, replace(need, max_price_usd_per_hour=None))
        capped = {id(o) for o, v in zip(offers, free, strict=True) if v != math.inf}
        reasons = [r.reason for r in ranking.rejected if id(r.offer) in capped]
        assert reasons and all("> --max-price" in why for why in reasons)


@pytest.mark.parametrize(
    "need",
    [Need(objective=o, concurrency=3) for o in OBJECTIVES]
    + [
        Need(objective="cost-per-token", target_output_tokens_per_s=3000),
        Need(objective="speed", target_output_tokens_per_s=3000),
        Need(workload="batch"),
        Need(objective="latency", workload="batch"),
    ],
    ids=repr,
)
def test_priced_order_is_objective_value_and_tie_break(need):
    cand = candidates_for(load_model_spec("llama-3.1-8b"), None)[0]
    fits, why = feasible_fits(cand, G["l4"], 4, False, need)
    assert fits, why
    usds = [0.123456789, 1.0, 3.333333, 17.5, 123.45678901, 0.00005]
    for fit in fits:
        op = operate(fit, need)
        points = [PricedPoint(op, u) for u in usds]
        want = [(objective_value(p, need), tie_break(p, need), p.usd_per_hour) for p in points]
        assert priced_order(op, need, usds) == want


def test_a_priced_point_reads_the_figures_the_plan_shows():
    # The ranking reads PricedPoint; the plan shows figures(): the same numbers, rounded alike
    # (a tie-break on a figure rounded otherwise could order plans the table shows equal).
    cand = candidates_for(load_model_spec("llama-3.1-8b"), None)[0]
    for need in (Need(concurrency=3), Need(workload="batch")):
        for fit in feasible_fits(cand, G["l4"], 4, False, need)[0]:
            op = operate(fit, need)
            for usd in (0.123456789, 17.5):
                shown, read = figures(op, usd), PricedPoint(op, usd)
                for name in shown.__dataclass_fields__:
                    assert getattr(read, name) == getattr(shown, name), name
                # and the rounding the plan shows: one stream's figure and all streams' alike
                assert shown.aggregate_output_tokens_per_s == round(op.tokens_per_s, 2)
                assert shown.single_stream_tokens_per_s == round(1 / op.itl_s, 2)
                assert figures(op, usd, rounded=False).ttft_ms == op.ttft_s * 1000


def tied_catalog(rng: random.Random, n: int) -> list[Offer]:
    """shaped_catalog with prices from a short list, so that many offers of a kind score
    alike (the top-k search must then look past the offers it priced first)."""
    out = []
    for o in shaped_catalog(rng, n):
        price = rng.choice([0.5, 0.75, 1.0, 1.00001, 2.0]) * o.gpu_count
        monthly = price * 730 if o.billing == "monthly" else None
        spot = None if o.spot_price_usd_per_hour is None else rng.choice([0.2, 0.25]) * price
        out.append(replace(o, price_usd_per_hour=price, spot_price_usd_per_hour=spot,
                           monthly_price_usd=monthly))  # fmt: skip
    return out


@pytest.mark.parametrize(
    ("model", "quant", "need"), SCENARIOS + EXTRA, ids=[s[0] for s in SCENARIOS + EXTRA]
)
def test_top_plans_are_the_first_of_every_offer_sorted(model, quant, need):
    """rank._Picker.pick_top prices a few offers per kind of machine; the plans, their
    count and each candidate's best must be those of pricing and sorting every offer."""
    from planner.decide import rank

    rng = random.Random(len(model) * 17 + int(need.concurrency))
    cands = planning_candidates(model, quant)
    for offers in (shaped_catalog(rng, 400), tied_catalog(rng, 400)):
        ranking = rank_offers(cands, offers, need)
        ranked_need = ranking.plans[0].need if ranking.plans else need  # maybe relaxed
        picker = rank._Picker(cands, ranked_need, OfferTable.from_offers(offers))
        every, _, per_cand = picker.pick_all()
        every.sort()
        assert len(ranking.plans) == len(every)
        for n in (1, 10, 11, 45, len(every)):
            assert ranking.plans.prefix(n) == every[:n]
        assert [p.offer for p in ranking.plans] == [offers[r[rank._POS]] for r in every]
        assert list(ranking.offers) == [offers[r[rank._POS]] for r in every]
        assert ranking.best_per_candidate == tuple(
            picker.plan(per_cand[i]) if i in per_cand else None for i in range(len(cands))
        )
        for k in (1, 2, 5):  # shallow: each candidate's best is often on a kind left unpriced
            fast = rank._Picker(cands, ranked_need, OfferTable.from_offers(offers)).pick_top(k)
            assert fast is None or fast == (every[:k], len(every), per_cand)


# ------------------------------------------------------------------ cache rows, column-wise
ROW_CHANGES = [
    ("price_usd_per_hour", float("nan")), ("price_usd_per_hour", float("inf")),
    ("price_usd_per_hour", True), ("price_usd_per_hour", -1), ("price_usd_per_hour", "1.0"),
    ("gpu_count", True), ("gpu_count", 65), ("gpu_count", 0), ("gpu_count", 2.0),
    ("gpu_memory_gb", None), ("region", ""), ("instance_type", 5), ("fetched_at", None),
    ("spot_price_usd_per_hour", 0), ("spot_price_usd_per_hour", float("-inf")),
    ("monthly_price_usd", -0.0), ("setup_fee_usd", -1.0), ("setup_fee_usd", False),
    ("notes", ["fine", 3]), ("notes", 7), ("provider_data", []), ("provider_data", "x"),
    ("provider", "vast"), ("billing", "weekly"), ("billing", None),
    # accepted by the per-row check, so they must load either way
    ("setup_fee_usd", 0), ("price_usd_per_hour", 2), ("notes", "text"), ("notes", None),
    ("provider_data", None), ("tier", 3), ("spot_price_usd_per_hour", None),
]  # fmt: skip


def _load_both_ways(monkeypatch, path, text):
    path.write_text(text)
    fast = catalog.read_cache("runpod")
    with monkeypatch.context() as m:
        m.setattr(cache, "_columns_valid", lambda columns, provider: False)
        path.write_text(text)
        slow = catalog.read_cache("runpod")
    return fast, slow


def _rows_valid(rows, provider: str) -> bool:
    """The column check on v2 rows: True only if every row builds an Offer the per-row check
    accepts."""
    columns = cache._v2_columns(rows, len(cache._OFFER_COLUMNS))
    return columns is not None and cache._columns_valid(
        dict(zip(cache._OFFER_COLUMNS, columns, strict=True)), provider
    )


@pytest.mark.parametrize("v3", [False, True], ids=["v2 rows", "v3 columns"])
@pytest.mark.parametrize(("column", "value"), ROW_CHANGES, ids=repr)
def test_column_checks_load_what_the_row_checks_load(monkeypatch, column, value, v3):
    offers = [o for o in catalog.snapshot_offers() if o.provider == "runpod"]
    path = catalog.write_cache("runpod", offers, "2026-11-29", "test")
    doc = json.loads(path.read_text()) if v3 else v2_doc("runpod", offers)
    if not v3:
        assert _rows_valid(json.loads(json.dumps(doc["rows"])), "runpod")  # clean: fast
    set_offer_value(doc, len(offers) // 2, column, value)
    fast, slow = _load_both_ways(monkeypatch, path, json.dumps(doc))
    assert fast is not None and slow is not None
    assert fast[0] == slow[0]
    assert fast[1]["dropped"] == slow[1]["dropped"]
    if slow[1]["dropped"] and not v3:
        assert not _rows_valid(json.loads(json.dumps(doc))["rows"], "runpod")


# ------------------------------------------------------------------ the collector pause
def test_cyclic_gc_pause_restores_the_collector_and_ages_what_it_made():
    import gc

    from planner.gcpause import cyclic_gc_paused

    assert gc.isenabled()
    with cyclic_gc_paused():
        assert not gc.isenabled()
        made = [object()]  # a tracked container
        with cyclic_gc_paused():  # nested: the outer pause decides
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    # moved to the oldest generation without a collection walking it
    assert any(o is made for o in gc.get_objects(generation=2))
    gc.disable()
    try:
        with cyclic_gc_paused():
            pass
        assert not gc.isenabled()  # a collector the caller turned off stays off
    finally:
        gc.enable()
