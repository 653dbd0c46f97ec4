"""Issue 11: when the user did not choose a quantization, say when FP8 (near-lossless) serves the
same load at least 20% cheaper, with the figures; in the table, the JSON document and generate."""

from __future__ import annotations

import json
import random

import pytest

from planner.decide.objective import objective_value
from planner.decide.plan import Need
from planner.decide.rank import candidates_for, recommend
from planner.decide.suggest import (
    MIN_SAVING,
    best_alternative,
    cheaper_quantization,
    near_lossless_candidates,
    screen_offers,
)
from planner.errors import NoFeasibleOfferError
from planner.model.sources import load_model_spec, quantized_variants
from tests.test_recommend import offer, planning_candidates, random_catalog

CIDR = "203.0.113.7/32"


def suggest(model: str, offers, need: Need):
    spec = load_model_spec(model)
    cands = candidates_for(spec, None)
    current = recommend(cands, offers, need).plans[0]
    alts = near_lossless_candidates(cands, quantized_variants(spec.name))
    alternative = best_alternative(current, alts, offers, every_offer=offers)
    return current, cheaper_quantization(current, alternative)


def test_fp8_on_one_node_instead_of_two_bf16_nodes():
    """The issue's case: Llama 3.1 405B in BF16 needs two 8x H100 nodes; FP8 fits one."""
    p5 = offer("h100-sxm", 8, 55.04, provider="aws", name="p5.48xlarge")
    current, sug = suggest("llama-3.1-405b", [p5], Need())
    assert current.layout.nodes == 2 and current.quant_format == "bf16"
    assert sug is not None and sug.plan.quant_format == "fp8" and sug.plan.layout.nodes == 1
    assert (sug.measure, sug.value, sug.current_value) == ("usd_per_hour", 55.04, 110.08)
    assert sug.saving == pytest.approx(0.5) and sug.quant_flag == "--quant fp8"
    assert "--quantization" in sug.plan.vllm_args  # online FP8 of the same checkpoint
    assert sug.plan.need == current.need


@pytest.mark.parametrize(("two_gpu_price", "suggested"), [(3.0, True), (3.4, False)])
def test_only_a_saving_of_at_least_20_percent_is_suggested(two_gpu_price, suggested):
    """70B in BF16 needs four H100s ($4.00/h); FP8 fits two: 25% saves enough, 15% does not."""
    four, two = offer("h100-sxm", 4, 4.0, name="four"), offer("h100-sxm", 2, two_gpu_price)
    current, sug = suggest("llama-3.1-70b", [four, two], Need())
    assert current.offer.instance_type == "four"
    assert (sug is not None) is suggested
    if sug:
        assert sug.saving >= MIN_SAVING and sug.plan.offer.gpu_count == 2
    # the threshold holds for any plan compared, not only for those the search returns
    spec = load_model_spec("llama-3.1-70b")
    alt = recommend(near_lossless_candidates(candidates_for(spec, None)), [two], Need()).plans[0]
    assert (cheaper_quantization(current, alt) is not None) is suggested


def test_a_plan_for_another_need_is_never_compared():
    """An FP8 plan ranked without the default service level (none met it) is no suggestion
    for a BF16 plan that meets it."""
    four, slow = offer("h100-sxm", 4, 4.0, name="four"), offer("l4", 4, 1.0, name="slow")
    cands = candidates_for(load_model_spec("llama-3.1-70b"), None)
    current = recommend(cands, [four], Need()).plans[0]
    fp8 = near_lossless_candidates(cands)
    relaxed = recommend(fp8, [slow], Need()).plans[0]
    assert not relaxed.need.default_service_level and current.need.default_service_level
    assert relaxed.estimate.usd_per_hour < (1 - MIN_SAVING) * current.estimate.usd_per_hour
    assert cheaper_quantization(current, relaxed) is None
    assert best_alternative(current, fp8, [four, slow]) is None
    assert best_alternative(current, fp8, [four, slow], accept=lambda p: True) is None


def test_cost_per_token_objective_compares_cost_per_token():
    l40s = offer("l40s", 1, 1.0)
    current, sug = suggest("qwen3-32b", [l40s, offer("h100-sxm", 2, 5.0)], Need(workload="batch"))
    assert sug is not None and sug.measure == "usd_per_million_output_tokens"
    assert sug.value == sug.plan.estimate.usd_per_million_output_tokens
    assert sug.value <= (1 - MIN_SAVING) * current.estimate.usd_per_million_output_tokens


def test_no_suggestion_when_ranking_by_speed_or_for_a_quantized_checkpoint():
    p5 = offer("h100-sxm", 8, 55.04, provider="aws", name="p5.48xlarge")
    assert suggest("llama-3.1-405b", [p5], Need(objective="speed"))[1] is None
    spec = load_model_spec("llama-3.1-70b")
    assert (
        near_lossless_candidates(candidates_for(spec, "auto", quantized_variants(spec.name))) == []
    )
    [awq] = [v for v in quantized_variants(spec.name) if v.quant and v.quant.format == "awq"]
    assert near_lossless_candidates(candidates_for(awq, None)) == []


def test_no_suggestion_when_fp8_misses_a_constraint_bf16_meets():
    """Same need, same constraints: a cheaper FP8 plan below the service level is none."""
    four, slow = offer("h100-sxm", 4, 4.0, name="four"), offer("l4", 4, 1.0, name="slow")
    lax = Need(min_tokens_per_s=1, max_ttft_ms=60_000)
    assert suggest("llama-3.1-70b", [four, slow], lax)[1].plan.offer.instance_type == "slow"
    current, sug = suggest("llama-3.1-70b", [four, slow], Need(min_tokens_per_s=25))
    assert current.offer.instance_type == "four" and sug is None


SCENARIOS = [
    ("llama-3.1-8b", Need()),
    ("llama-3.1-70b", Need(concurrency=4)),
    ("llama-3.1-70b", Need(context=32768, concurrency=8, spot=True)),
    ("qwen3-32b", Need(target_output_tokens_per_s=2000)),
    ("gemma-2-27b", Need(max_price_usd_per_hour=6)),
]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("model", "need"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_cheapest_first_search_equals_a_full_ranking(model, need, seed):
    """The screen (price, memory for FP8 weights) and best_alternative's early stop in $/h must
    find what ranking every offer finds (the `accept` path ranks every offer)."""
    offers = random_catalog(random.Random(seed * 104729 + len(model)), 60)
    spec = load_model_spec(model)
    cands = candidates_for(spec, None)
    try:
        current = recommend(cands, offers, need).plans[0]
    except NoFeasibleOfferError:  # no BF16 plan on this catalog: nothing to compare
        return
    alts = near_lossless_candidates(cands, quantized_variants(spec.name))
    fast = best_alternative(current, alts, screen_offers(current, cands, offers), catalog=offers)
    full = best_alternative(current, alts, offers, accept=lambda p: True, catalog=offers)
    assert (fast is None) == (full is None)
    if fast is not None:
        assert objective_value(fast, need) == objective_value(full, need)
        assert fast.offer == full.offer


# ------------------------------------------------------------------ app, CLI and generate
def test_recommend_cli_suggests_fp8_in_table_and_json(cli):
    args = ("recommend", "llama-3.1-405b", "--providers", "aws", "--gpu", "h100")
    r = cli(*args, "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    sug = doc["cheaper_quantization"]
    assert doc["plans"][0]["quant_format"] == "bf16" and doc["plans"][0]["layout"]["nodes"] == 2
    assert (sug["format"], sug["quant_flag"], sug["measure"]) == (
        "fp8",
        "--quant fp8",
        "usd_per_hour",
    )
    assert sug["saving_pct"] >= 20 and sug["min_saving_pct"] == 20
    assert sug["plan"]["layout"]["nodes"] == 1 and sug["plan"]["schema"] == "gpuplan.plan/1"
    assert sug["current_value"] == doc["plans"][0]["estimate"]["usd_per_hour"]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "cheaper: fp8 would serve this load on 1x aws p5.48xlarge" in text
    assert f"(-{sug['saving_pct']:.0f}%)" in text and "--quant fp8" in text


@pytest.mark.parametrize("how", [("--quant", "bf16"), ("--quant", "auto"), "env"])
def test_no_suggestion_when_the_user_chose_a_quantization(cli, monkeypatch, how):
    args = ["recommend", "llama-3.1-405b", "--providers", "aws", "--gpu", "h100"]
    if how == "env":
        monkeypatch.setenv("GPUPLAN_QUANT", "bf16")
    else:
        args += how
    r = cli(*args, "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["cheaper_quantization"] is None
    assert "cheaper:" not in cli(*args).output


def test_generate_says_fp8_is_cheaper_than_the_plan_it_wrote(cli, tmp_path):
    out = tmp_path / "p"
    r = cli(
        "generate", "llama-3.1-405b", "--providers", "aws", "--gpu", "h100",
        "--allow-cidr", CIDR, "--out", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "cheaper: fp8 would serve this load on 1x aws p5.48xlarge" in text
    assert "--pipeline-parallel-size" in (out / "gpuplan.plan.json").read_text()


def test_pre_quantized_fp8_checkpoints_are_candidates_served_under_the_base_name():
    from planner.present.suggestions import suggestion_line

    spec = load_model_spec("llama-3.3-70b")
    cands = near_lossless_candidates(candidates_for(spec, None), quantized_variants(spec.name))
    names = {c.spec.name for c in cands}
    assert names == {spec.name, "nvidia/Llama-3.3-70B-Instruct-FP8",
                     "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"}  # fmt: skip
    assert {c.base_model for c in cands} == {spec.name}  # NVFP4 (4-bit) is not near-lossless
    [nvidia] = [c for c in cands if c.spec.name.startswith("nvidia/")]
    four, two = offer("h100-sxm", 4, 4.0, name="four"), offer("h100-sxm", 2, 2.0, name="two")
    current = recommend(candidates_for(spec, None), [four], Need()).plans[0]
    sug = cheaper_quantization(current, recommend([nvidia], [two], Need()).plans[0])
    assert sug is not None and sug.quant_flag is None
    args = sug.plan.vllm_args
    assert args[0] == nvidia.spec.name and args[args.index("--served-model-name") + 1] == spec.name
    assert f"pass {nvidia.spec.name} as MODEL" in suggestion_line(sug)


def test_online_fp8_candidate_is_what_quant_fp8_plans():
    spec = load_model_spec("llama-3.1-70b")
    [mine] = near_lossless_candidates(candidates_for(spec, None))
    [ref] = candidates_for(spec, "fp8")
    for name in ("spec", "fmt", "qc", "online_quantization", "weights", "active_params"):
        assert getattr(mine, name) == getattr(ref, name), name
    assert mine.base_model == ref.base_model


def test_screen_keeps_a_single_node_that_holds_fp8_but_not_bf16():
    """405B in BF16 (~756 GiB) needs two 8x H100 nodes on AWS; one RunPod 8x A100-80GB (no
    multi-node) holds FP8 (~382 GiB): the memory screen must keep it, and drop a card that
    cannot hold even half the BF16 weights."""
    aws = offer("h100-sxm", 8, 50.0, provider="aws", name="p5")
    a100 = offer("a100-80gb-sxm", 8, 15.0, name="a100")
    small = offer("l40s", 8, 10.0, name="small")  # 8 x 48 GB: no room for FP8 405B
    cands = candidates_for(load_model_spec("llama-3.1-405b"), None)
    current = recommend(cands, [aws, a100, small], Need()).plans[0]
    assert current.offer.instance_type == "p5" and current.layout.nodes == 2
    screened = screen_offers(current, cands, [aws, a100, small])
    assert [o.instance_type for o in screened] == ["p5", "a100"]
    sug = cheaper_quantization(
        current, best_alternative(current, near_lossless_candidates(cands), screened)
    )
    assert sug is not None and sug.plan.offer.instance_type == "a100" and sug.value == 15.0


def test_screen_counts_the_nodes_of_multi_node_clouds():
    """405B on AWS 8x A100-40GB nodes (39.39 GiB each): BF16 needs three, FP8 two (one node
    cannot hold it)."""
    node = offer("a100-40gb-sxm", 8, 10.0, provider="aws", name="p4d")
    cands = candidates_for(load_model_spec("llama-3.1-405b"), None)
    need = Need(max_nodes=4)
    current = recommend(cands, [node], need).plans[0]
    assert current.layout.nodes == 3
    sug = cheaper_quantization(
        current,
        best_alternative(
            current, near_lossless_candidates(cands), screen_offers(current, cands, [node])
        ),
    )
    assert sug is not None and sug.plan.layout.nodes == 2 and sug.value == 20.0


def test_suggestion_breaks_ties_in_the_filter_order_on_an_unsorted_catalog():
    """recommend hands the suggestion the filtered offers unsorted (planner/app/plan.py); the
    FP8 search gets them in the filter's order, so that twins whose plans score alike (same
    machine, $/h equal to 4 decimals) resolve as on the sorted list: the cheaper one."""
    from planner.app.plan import Recommendation, cheaper_quantization_for
    from planner.offers.catalog import OfferFilter, filter_table, order_keys
    from planner.offers.table import OfferTable

    spec = load_model_spec("llama-3.1-405b")
    variants = quantized_variants(spec.name)
    cands = candidates_for(spec, None, variants)
    dear = offer("h100-sxm", 8, 55.040004, provider="aws", name="p5.48xlarge")
    cheap = offer("h100-sxm", 8, 55.040001, provider="aws", name="p5.48xlarge")
    table, flt = OfferTable.from_offers([dear, cheap]), OfferFilter()
    need = Need(objective="cost-per-token")  # no cut at the best $/h: ties reach the ranking
    found = []
    for ordered in (True, False):
        offers, _ = filter_table(table, flt, ordered=ordered)
        ranking = recommend(cands, offers, need, order_keys(offers, flt))
        rec = Recommendation(ranking, (), {}, variants=tuple(variants), offers=offers)
        sug = cheaper_quantization_for(rec, ranking.plans[0])
        assert sug is not None and ranking.plans[0].offer is cheap
        found.append(sug.plan.offer)
    assert found == [cheap, cheap]


def test_fp8_on_one_machine_instead_of_bf16_streams_shared_by_two():
    """160 streams of Llama 3.1 70B: in BF16 one 8x H100 machine holds the KV cache of 157,
    so two share them ($40/h); in FP8 one holds them all ($20/h). The suggestion is that one
    machine, planned as `--quant fp8` would plan it (no stream replicas), and is compared."""
    eight = offer("h100-sxm", 8, 20.0, name="eight")
    current, sug = suggest("llama-3.1-70b", [eight], Need(concurrency=160))
    assert current.estimate.replicas == 2 and current.need.stream_replicas
    assert sug is not None and sug.plan.estimate.replicas == 1
    assert not sug.plan.need.stream_replicas and sug.saving == pytest.approx(0.5)


def test_fp8_shares_the_streams_between_fewer_machines():
    """500 streams of Llama 3.1 70B on 8x H100 ($20/h): BF16 holds 157 a machine (4 machines,
    $80/h), FP8 183 (3 machines, $60/h). No FP8 plan serves them on one machine, so the FP8
    plan is the one `--quant fp8` gives, ranked on every offer: 25% cheaper, suggested."""
    eight = offer("h100-sxm", 8, 20.0, name="eight")
    current, sug = suggest("llama-3.1-70b", [eight], Need(concurrency=500))
    assert current.estimate.replicas == 4 and current.need.stream_replicas
    assert sug is not None and sug.plan.quant_format == "fp8"
    assert sug.plan.estimate.replicas == 3 and sug.plan.need.stream_replicas
    assert (sug.value, sug.current_value) == (60.0, 80.0) and sug.saving == pytest.approx(0.25)
    # 400 streams: both need 3 machines, nothing cheaper to suggest
    assert suggest("llama-3.1-70b", [eight], Need(concurrency=400))[1] is None


def test_the_spread_suggestion_plans_no_pipeline_when_a_node_holds_the_model():
    """Review of issue 11: the --spread suggestion ranked a price-screened part of the
    catalog, in which no node held Qwen3-30B-A3B FP8, and suggested 2 x (1x L4 TP1 x PP2)
    while a 2x L4 machine of the catalog holds it: the rule is decided on every offer."""
    from planner.decide.suggest import cheaper_spread

    cands = planning_candidates("qwen3-30b-a3b", "fp8")
    offers = [offer("l4", 1, 0.30, provider="gcp", name="one"),
              offer("l4", 2, 2.00, provider="gcp", name="two")]  # fmt: skip
    current = recommend(cands, offers, Need(concurrency=12, context=2048, max_nodes=2)).plans[0]
    assert current.offer.instance_type == "two" and current.layout.pp == 1
    found = cheaper_spread(current, cands, offers)
    assert found is None or found.plan.layout.pp == 1
