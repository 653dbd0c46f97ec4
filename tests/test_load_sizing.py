"""Issue 11: replicas or extra GPUs only when the load or the memory needs them.

On a catalog whose price is proportional to the GPU count (each card sold as 1, 2, 4 and 8 GPU
machines at one price per GPU, on a cloud with and one without multi-node), the cheapest plan
rents exactly as many GPUs as the brute-force oracle finds necessary (tests/oracle.py): a light
load gets one GPU and no replicas; a load whose KV cache does not fit one GPU gets more GPUs
(tensor parallel or data-parallel replicas on the node), and no more than it needs."""

from __future__ import annotations

import math

import pytest

from planner.decide.plan import Need
from planner.decide.rank import recommend
from planner.model.sources import load_model_spec
from tests.oracle import brute_force_best, fewest_gpus, node_holds_model
from tests.test_recommend import G, offer, planning_candidates


def per_gpu_catalog(*gpus_and_prices: tuple[str, float]):
    out = []
    for gpu, usd_per_gpu_hour in gpus_and_prices:
        for count in (1, 2, 4, 8):
            for provider, markup in (("runpod", 1.0), ("aws", 1.1)):
                price = round(usd_per_gpu_hour * markup * count, 4)
                out.append(offer(gpu, count, price, provider=provider, name=f"{provider}-{count}"))
    return out


def kv_gib_per_request(model: str, context: int) -> float:
    from planner.model.footprint import kv_bytes_per_request

    return kv_bytes_per_request(load_model_spec(model), 1, "auto", context) / 2**30


H100 = per_gpu_catalog(("h100-sxm", 2.5))
MIXED = per_gpu_catalog(("h100-sxm", 2.5), ("l40s", 0.9), ("a10g", 0.6))

CASES = [
    # (model, need, catalog, light: one GPU and no replica expected)
    ("llama-3.1-8b", Need(), H100, True),
    ("llama-3.1-8b", Need(concurrency=8), H100, True),
    ("llama-3.1-8b", Need(concurrency=8), MIXED, True),
    ("llama-3.1-8b", Need(target_output_tokens_per_s=100), H100, True),
    ("llama-3.1-8b", Need(context=131072, concurrency=16), H100, False),
    ("llama-3.1-8b", Need(context=131072, concurrency=16), MIXED, False),
    ("llama-3.1-8b", Need(context=32768, concurrency=64), MIXED, False),
    ("qwen3-32b", Need(context=32768, concurrency=24), MIXED, False),
    ("llama-3.1-70b", Need(), H100, False),
    ("llama-3.1-70b", Need(context=65536, concurrency=16), H100, False),
    ("llama-3.1-8b", Need(target_output_tokens_per_s=40_000), H100, False),
]


@pytest.mark.parametrize(("model", "need", "catalog", "light"), CASES)
def test_gpus_and_replicas_only_when_the_load_or_memory_needs_them(model, need, catalog, light):
    cands = planning_candidates(model, None)
    ranking = recommend(cands, catalog, need)
    top = ranking.plans[0]
    e = top.estimate
    rented = top.layout.nodes * e.replicas * top.offer.gpu_count
    assert top.objective_value == pytest.approx(brute_force_best(cands, catalog, need), rel=1e-12)
    # of the card it chose (prices are per GPU for one card), no more GPUs than needed
    same_card = [o for o in catalog if o.gpu == top.offer.gpu]
    assert rented == fewest_gpus(cands, same_card, need)
    if light:
        assert rented == 1 and top.layout.dp == 1 and e.replicas == 1
        return
    assert rented > 1
    if not need.target_output_tokens_per_s:
        assert e.replicas == 1 and top.layout.dp <= need.concurrency
        # a pipeline across nodes only where one node cannot hold the model itself, never for
        # the streams' KV cache (tests/oracle.py tries every TP degree)
        for p in ranking.plans:
            gpu, count = G[p.offer.gpu], p.offer.gpu_count
            assert p.layout.pp == 1 or not node_holds_model(cands[0], gpu, count, need)
        assert e.max_concurrency >= need.concurrency  # the streams' KV fits, as vLLM sizes it


def test_long_context_streams_that_do_not_fit_one_gpu_get_more_gpus_on_one_node():
    """16 streams of 128k tokens of Llama 3.1 8B hold 16 x 16 GiB of KV cache: no 80 GB card
    holds that, so the plan spreads the streams over the GPUs of one machine (TP shards the KV
    heads, DP replicas split the streams) - the smallest machine that holds them - and not a
    pipeline over several smaller machines: one GPU holds the model itself."""
    need = Need(context=131072, concurrency=16)
    assert kv_gib_per_request("llama-3.1-8b", need.context) == pytest.approx(16.0)
    ranking = recommend(planning_candidates("llama-3.1-8b", None), H100, need)
    top = ranking.plans[0]
    assert top.offer.gpu_count == 8 and top.layout.nodes == 1 and top.estimate.replicas == 1
    assert all(p.layout.pp == 1 for p in ranking.plans)
    assert top.estimate.batch == math.ceil(need.concurrency / top.layout.dp)
    smaller = [r.reason for r in ranking.rejected if r.offer.gpu_count < 8]
    assert len(smaller) == 6 and all("does not fit" in reason for reason in smaller)
    assert any("pipeline parallel across nodes is planned only" in r for r in smaller)


@pytest.mark.parametrize("tp", [None, 1])
@pytest.mark.parametrize("concurrency", [1, 2, 3])
def test_a_light_load_on_a_big_machine_gets_no_more_replicas_than_streams(concurrency, tp):
    """Only 8-GPU machines for sale: a light load rents one (it must), but runs no more vLLM
    replicas than it has streams, and the plan says how many GPUs the load uses."""
    eight = [o for o in H100 if o.gpu_count == 8]
    need = Need(concurrency=concurrency, tp=tp)
    top = recommend(planning_candidates("llama-3.1-8b", None), eight, need).plans[0]
    assert top.layout.dp <= concurrency and top.estimate.replicas == 1
    used = top.layout.tp * top.layout.dp
    assert used == 8 or any(f"uses {used} of the machine's 8 GPUs" in n for n in top.notes)
