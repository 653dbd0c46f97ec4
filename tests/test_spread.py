"""`--spread`: identical machines may share an interactive load's streams even when one machine
serves it, and the planner says when they would cost materially less than the one machine it
recommends (the `cheaper:` line, `cheaper_spread` in the JSON).

Without the flag a load one machine serves keeps one machine (tests/test_load_sizing.py): one
endpoint, and nothing to balance on clouds where gpuplan provisions no load balancer."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import replace

import pytest

from planner.decide.objective import objective_value
from planner.decide.plan import Need
from planner.decide.rank import recommend
from planner.decide.suggest import MIN_SAVING, cheaper_spread
from planner.errors import NoFeasibleOfferError
from tests.oracle import brute_force_best
from tests.test_load_sizing import H100
from tests.test_recommend import offer, planning_candidates, random_catalog, ranked_as_oracle

SIXTEEN = offer("h100-sxm", 16, 2.5 * 18, name="sixteen")  # one machine, at 18 GPUs' price


def test_spread_ranks_the_machines_that_share_the_streams_with_the_one_machine():
    """1,000 streams of 8B: one 16-GPU machine serves them at $45/h; with --spread two
    8-GPU machines ($40/h) win, as the brute-force oracle finds, and no note claims that no
    single machine serves the streams."""
    cands = planning_candidates("llama-3.1-8b", None)
    offers = [*H100, SIXTEEN]
    one = recommend(cands, offers, Need(concurrency=1000)).plans[0]
    assert one.offer.instance_type == "sixteen" and one.machines == 1
    need = Need(concurrency=1000, spread=True)
    ranking = recommend(cands, offers, need)
    top = ranking.plans[0]
    assert top.machines == 2 and top.need == replace(need, stream_replicas=True)
    assert top.estimate.usd_per_hour == 40.0
    assert top.objective_value == brute_force_best(cands, offers, need)
    assert not any("no single machine" in n for n in ranking.notes)


@pytest.mark.parametrize(
    ("model", "gpu", "concurrency"),
    [("llama-3.1-8b", "b200", 260), ("mistral-7b", "mi300x", 300), ("mistral-7b", "h100", 260),
     ("llama-3.1-8b", None, 300), ("llama-3.1-70b", None, 100), ("llama-3.1-405b", "h200", 64)],
)  # fmt: skip
def test_spread_never_costs_more_than_one_machine(model, gpu, concurrency):
    """One machine is one of the options --spread ranks: on the embedded catalog its answer is
    never worse than the one-machine answer (one machine of a big card runs up to vLLM's
    default 1,024 sequences per replica, and so does each machine sharing the streams)."""
    from planner.app.plan import recommend as app_recommend
    from planner.settings import load_settings

    flags = {"model": model, "concurrency": concurrency, **({"gpu": gpu} if gpu else {})}
    one = app_recommend(load_settings(flags, env={})).ranking.plans[0]
    spread = app_recommend(load_settings({**flags, "spread": True}, env={})).ranking.plans[0]
    assert spread.objective_value <= one.objective_value
    if spread.machines == one.machines == 1:
        assert spread.estimate == one.estimate


@pytest.mark.parametrize(
    "flags", [{"workload": "batch"}, {"target_rps": 5.0}, {"job_requests": 1000}]
)
def test_spread_leaves_batch_jobs_and_throughput_targets_alone(flags):
    """Streams are shared only by an interactive load: a batch job or a target is planned as
    without --spread (a --spread that applied to them planned 2 x 1x MI300X for 300 requests
    of Llama 3.1 70B, -727 GiB free; --concurrency with them is now refused outright)."""
    from planner.app.plan import recommend as app_recommend
    from planner.settings import load_settings

    base = {"model": "llama-3.1-70b", **flags}
    plain = app_recommend(load_settings(base, env={})).ranking
    spread = app_recommend(load_settings({**base, "spread": True}, env={})).ranking
    assert not spread.plans[0].need.spread and not spread.plans[0].need.stream_replicas
    assert spread.plans[0] == plain.plans[0]
    assert all(p.estimate.memory_headroom_gib >= 0 for p in spread.plans[:10])
    # and the user is told the setting did nothing
    said = app_recommend(load_settings({**base, "spread": True}, env={})).warnings
    assert [w for w in said if w.startswith("spread is ignored")]
    assert not app_recommend(load_settings(base, env={})).warnings


def test_generate_repeats_the_ignored_spread_warning(cli, tmp_path):
    out = tmp_path / "p"
    args = ("--target-rps", "2", "--spread", "--providers", "aws", "--allow-cidr", "203.0.113.7/32")
    r = cli("generate", "llama-3.1-8b", *args, "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "warning: spread is ignored: a batch workload or a throughput target" in r.stderr
    plain = cli("generate", "llama-3.1-8b", *args[2:], "--out", str(tmp_path / "q"))
    assert "spread is ignored" not in plain.stderr


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("model", "need"),
    [
        ("llama-3.1-8b", Need(concurrency=300)),
        ("llama-3.1-8b", Need(context=2048, concurrency=64, min_tokens_per_s=60)),
        ("llama-3.1-70b", Need(concurrency=48, objective="cost-per-token")),
        ("qwen3-32b", Need(context=32768, concurrency=40, max_replicas=6)),
    ],
)  # fmt: skip
def test_spread_equals_brute_force_on_random_catalogs(model, need, seed):
    """With --spread every layout of every offer is tried on 1, 2, ... machines, the cheapest
    total wins: the planner's answer is the oracle's."""
    rng = random.Random(seed * 7907 + need.concurrency)
    offers = random_catalog(rng, 40)
    cands = planning_candidates(model, None)
    ranking = ranked_as_oracle(cands, offers, dataclasses.replace(need, spread=True))
    if ranking is not None:
        values = [p.objective_value for p in ranking.plans]
        assert values == sorted(values)


def test_the_suggestion_names_the_shared_plan_and_its_saving():
    cands = planning_candidates("llama-3.1-8b", None)
    offers = [*H100, offer("h100-sxm", 16, 2.5 * 40, name="sixteen")]  # $100/h: 40 GPUs' price
    current = recommend(cands, offers, Need(concurrency=1000)).plans[0]
    sug = cheaper_spread(current, cands, offers)
    shared = recommend(cands, offers, Need(concurrency=1000, spread=True)).plans[0]
    assert sug is not None and sug.current is current
    assert (sug.plan.offer, sug.plan.machines) == (shared.offer, shared.machines)
    assert sug.measure == "usd_per_hour" and sug.current_value == current.estimate.usd_per_hour
    assert sug.value == shared.estimate.usd_per_hour == 40.0
    assert sug.saving == pytest.approx(1 - sug.value / sug.current_value) and sug.saving >= 0.2


def test_two_machines_at_the_screen_bound_are_suggested():
    """The screen keeps machines priced at most (1 - MIN_SAVING) / 2 of the current $/h: two
    8x H100 machines at 39% of the 16-GPU machine's price each share 600 streams 22% cheaper
    (one of them alone holds too few)."""
    cands = planning_candidates("llama-3.1-8b", None)
    offers = [offer("h100-sxm", 16, 50.0, name="sixteen"), offer("h100-sxm", 8, 19.5, name="8")]
    current = recommend(cands, offers, Need(concurrency=600)).plans[0]
    assert current.offer.instance_type == "sixteen"
    sug = cheaper_spread(current, cands, offers)
    assert sug is not None and (sug.plan.offer.instance_type, sug.plan.machines) == ("8", 2)
    assert (sug.value, sug.saving) == (39.0, pytest.approx(0.22))


def test_no_suggestion_below_the_minimum_saving():
    """$40/h on two 8-GPU machines against one machine at $45/h saves 11%: not said."""
    cands = planning_candidates("llama-3.1-8b", None)
    current = recommend(cands, [*H100, SIXTEEN], Need(concurrency=1000)).plans[0]
    assert cheaper_spread(current, cands, [*H100, SIXTEEN]) is None


@pytest.mark.parametrize(
    "need",
    [
        Need(),  # one stream: another machine adds nothing
        Need(concurrency=1000, objective="speed"),  # not a cost the user ranks by
        Need(concurrency=1000, workload="batch"),  # saturated machines: no streams to share
        Need(concurrency=1000, spread=True),  # --spread ranked them already
    ],
)
def test_no_suggestion_where_it_does_not_apply(need):
    cands = planning_candidates("llama-3.1-8b", None)
    offers = [*H100, offer("h100-sxm", 16, 2.5 * 40, name="sixteen")]
    current = recommend(cands, offers, need).plans[0]
    assert cheaper_spread(current, cands, offers) is None


@pytest.mark.parametrize("seed", range(6))
def test_the_price_screen_loses_no_suggestion(seed):
    """The suggestion ranks only machines priced at most (1 - MIN_SAVING) / 2 of the current
    $/h; the brute-force oracle over every offer (the one machine included) finds a plan that
    saves MIN_SAVING exactly when the suggestion exists, at the suggestion's value."""
    rng = random.Random(seed * 389 + 11)
    offers = random_catalog(rng, 40)
    cands = planning_candidates("llama-3.1-8b", None)
    need = Need(concurrency=200)
    try:
        current = recommend(cands, offers, need).plans[0]
    except NoFeasibleOfferError:
        return
    if current.need != need:  # ranked with a fallback: not the case this test is about
        return
    sug = cheaper_spread(current, cands, offers)
    best = brute_force_best(cands, offers, dataclasses.replace(need, stream_replicas=True))
    saves = best < math.inf and 1 - best / current.estimate.usd_per_hour >= MIN_SAVING
    assert (sug is not None) == saves
    if sug is not None:
        assert sug.value == pytest.approx(best) and sug.plan.machines > 1
        assert objective_value(sug.plan, sug.plan.need) == pytest.approx(best)


# ------------------------------------------------------------------ settings and CLI
@pytest.mark.parametrize(
    ("args", "env"),
    [(["--spread"], {}), ([], {"GPUPLAN_SPREAD": "true"})],
)
def test_spread_from_flag_or_environment(cli, monkeypatch, args, env):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    r = cli("recommend", "llama-3.1-8b", "--concurrency", "300", "--format", "json", *args)
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["need"]["stream_replicas"] is True and data["cheaper_spread"] is None
    assert data["plans"][0]["estimate"]["replicas"] > 1


def test_recommend_and_generate_say_the_cheaper_spread(cli, tmp_path, monkeypatch):
    """300 streams of 8B on the embedded catalog: one machine of 2 MI300Xs ($4.78/h) against
    5 machines of 4 RTX 3090s on Vast ($3.35/h in total, which no load balancer fronts)."""
    r = cli("recommend", "llama-3.1-8b", "--concurrency", "300", "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["plans"][0]["estimate"]["replicas"] == 1
    spread = data["cheaper_spread"]
    assert spread["machines"] > 1 and spread["flag"] == "--spread"
    assert spread["saving_pct"] >= spread["min_saving_pct"] == 20.0
    assert spread["value"] < 0.8 * spread["current_value"]
    assert spread["current_value"] == data["plans"][0]["estimate"]["usd_per_hour"]
    assert spread["load_balancer"] is False
    machines = spread["plan"]["estimate"]["replicas"]
    assert f"over the {machines} endpoints yourself; plan it with --spread" in spread["message"]
    # the plan suggested is what --spread then recommends
    asked = cli("recommend", "llama-3.1-8b", "--concurrency", "300", "--format", "json",
                "--spread")  # fmt: skip
    top = json.loads(asked.stdout)["plans"][0]
    assert top == spread["plan"] and json.loads(asked.stdout)["cheaper_spread"] is None
    text = cli("recommend", "llama-3.1-8b", "--concurrency", "300", "--top", "1")
    assert f"cheaper: {spread['message']}" in " ".join(text.stdout.split())
    # a user who pinned one machine (or asked for HTTPS at a domain, which generate refuses
    # for shared machines) gets no such line
    pinned = cli("recommend", "llama-3.1-8b", "--concurrency", "300", "--format", "json",
                 "--one-machine")  # fmt: skip
    assert json.loads(pinned.stdout)["cheaper_spread"] is None
    monkeypatch.setenv("GPUPLAN_TLS_DOMAIN", "llm.example.com")
    https = cli("recommend", "llama-3.1-8b", "--concurrency", "300", "--format", "json")
    assert json.loads(https.stdout)["cheaper_spread"] is None
    monkeypatch.delenv("GPUPLAN_TLS_DOMAIN")
    out = tmp_path / "p"
    args = ("--concurrency", "300", "--providers", "aws,gcp", "--allow-cidr", "203.0.113.7/32")
    gen = cli("generate", "llama-3.1-8b", *args, "--out", str(out))
    assert gen.exit_code == 0, gen.output
    said = " ".join(gen.stdout.split())
    assert "sharing the 300 streams" in said and "gpuplan generate puts a load balancer" in said
    plan = json.loads((out / "gpuplan.plan.json").read_text())
    assert "stream_replicas" not in plan["need"]


@pytest.mark.parametrize(("generated", "checked"), [("", "1"), ("1", "0")])
def test_check_reports_spread_that_the_plan_does_not_answer(cli, tmp_path, monkeypatch,
                                                            generated, checked):  # fmt: skip
    """A project generated without --spread and checked with it, or the other way round:
    `check` reports the difference (exit 6); with the same settings it checks clean."""
    settings = {"MODEL": "llama-3.1-8b", "CONCURRENCY": "300", "PROVIDERS": "aws,gcp",
                "ALLOW_CIDRS": "203.0.113.7/32", "OUT": str(tmp_path / "p")}  # fmt: skip
    for key, value in settings.items():
        monkeypatch.setenv(f"GPUPLAN_{key}", value)
    if generated:
        monkeypatch.setenv("GPUPLAN_SPREAD", generated)
    assert cli("generate").exit_code == 0
    assert cli("check").exit_code == 0
    monkeypatch.setenv("GPUPLAN_SPREAD", checked)
    r = cli("check")
    assert r.exit_code == 6, r.output
    want = "True, the plan was made for False" if checked == "1" else "False, the plan was made"
    assert f"plan differs: spread: settings say {want}" in r.stdout
    if generated:  # machines sharing the streams, which one machine of that kind cannot serve
        said = " ".join(cli("check", "--prices").stdout.split())
        assert "prices: the committed offer (" in said and " x gcp " in said
        assert ") no longer serves the load these settings ask (" in said


def test_the_fp8_suggestion_under_spread_is_what_spread_with_fp8_gives(cli):
    """With --spread the FP8 alternative is ranked as --spread --quant fp8 ranks it (it was
    ranked on one machine and, finding the need different, said nothing)."""
    base = ("recommend", "llama-3.1-70b", "--concurrency", "200", "--spread", "--format", "json")
    doc = json.loads(cli(*base).stdout)
    fp8 = json.loads(cli(*base, "--quant", "fp8").stdout)["plans"][0]
    sug = doc["cheaper_quantization"]
    assert sug is not None and sug["plan"]["offer"] == fp8["offer"]
    assert (
        sug["value"]
        == fp8["estimate"]["usd_per_hour"]
        < doc["plans"][0]["estimate"]["usd_per_hour"]
    )
    assert fp8["estimate"]["replicas"] > 1 and sug["plan"]["need"]["spread"] is True


def test_a_batch_need_that_says_stream_replicas_keeps_its_memory_check():
    """A plan file can carry stream_replicas with a batch workload (hand-edited or old): the
    fit still holds --concurrency requests in memory, as for any batch job."""
    cands = planning_candidates("llama-3.1-70b", None)
    offers = [offer("mi300x", 1, 2.4), offer("h200-sxm", 8, 36.7)]
    plain = recommend(cands, offers, Need(workload="batch", concurrency=300)).plans
    odd = recommend(cands, offers, Need(workload="batch", concurrency=300, stream_replicas=True))
    assert [p.offer for p in odd.plans] == [p.offer for p in plain]
    assert all(p.estimate.memory_headroom_gib >= 0 for p in odd.plans)
