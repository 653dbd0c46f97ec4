"""Every filter of `gpuplan offers` and `gpuplan recommend`, through the command line: the
filtered answer must be exactly the unfiltered answer's rows that pass the filter, so a
filter that is dropped (too many rows) or inverted (the wrong rows) fails."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from planner.offers.gpus import gpu_table

Row = dict[str, Any]


def offer_key(o: Row) -> tuple[Any, ...]:
    return (o["provider"], o["instance_type"], o["region"], o["gpu"], o["gpu_count"])


def offers_json(cli, *args: str) -> list[Row]:
    r = cli("offers", "--format", "json", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["offers"]


def plans_json(cli, *args: str) -> list[Row]:
    r = cli("recommend", "llama-3.1-8b", "--format", "json", "--top", "1000", *args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["plans"]


def assert_exact_subset(filtered: list[Row], everything: list[Row], keep: Callable) -> None:
    """``filtered`` holds exactly the rows of ``everything`` that ``keep`` accepts, in the same
    order, and the filter really removes something (else it could not be told from no
    filter)."""
    expected = [offer_key(r.get("offer", r)) for r in everything if keep(r)]
    assert expected, "the filter keeps nothing: choose a value the data has"
    assert len(expected) < len(everything), "the filter removes nothing: choose another value"
    assert [offer_key(r.get("offer", r)) for r in filtered] == expected


# ------------------------------------------------------------------ gpuplan offers
@pytest.mark.parametrize(
    ("args", "keep"),
    [
        (["--region", "EU-Central-1"], lambda o: "eu-central-1" in o["region"].lower()),
        (["--min-gpu-memory", "48"], lambda o: o["gpu_memory_gb"] >= 48),  # 48 GB cards stay
        (["--max-price", "2.5"], lambda o: o["ranked_price_usd_per_hour"] <= 2.5),
        (["--gpus", "8"], lambda o: o["gpu_count"] == 8),
    ],
    ids=["region", "min-gpu-memory", "max-price", "gpus"],
)
def test_offers_filter(cli, args, keep):
    assert_exact_subset(offers_json(cli, *args), offers_json(cli), keep)


def test_offers_min_gpu_memory_keeps_the_boundary(cli):
    """`--min-gpu-memory` is a minimum: a card with exactly that much memory is kept."""
    rows = offers_json(cli, "--min-gpu-memory", "48")
    assert any(o["gpu_memory_gb"] == 48 for o in rows)


# ------------------------------------------------------------------ gpuplan recommend
def test_recommend_region_filter_takes_a_list_of_substrings(cli):
    wanted = ("eu-central-1", "us-east4")
    assert_exact_subset(
        plans_json(cli, "--region", ",".join(wanted)),
        plans_json(cli),
        lambda p: any(w in p["offer"]["region"].lower() for w in wanted),
    )


def test_recommend_instance_type_filter(cli):
    assert_exact_subset(
        plans_json(cli, "--instance-type", "g5.12xlarge"),
        plans_json(cli),
        lambda p: p["offer"]["instance_type"] == "g5.12xlarge",
    )


def test_recommend_max_price_filter(cli):
    assert_exact_subset(
        plans_json(cli, "--max-price", "1.0"),
        plans_json(cli),
        lambda p: p["estimate"]["usd_per_hour"] <= 1.0,
    )


def test_recommend_max_ttft_filter(cli):
    """Under --max-ttft an offer may get another layout (more GPUs in tensor parallel cut the
    prefill time), so the answer is not a plain subset: every plan meets the bound, every
    offer whose usual plan met it is still there, and offers that cannot meet it are gone."""
    everything = plans_json(cli)
    bounded = plans_json(cli, "--max-ttft", "60")
    assert bounded and all(p["estimate"]["ttft_ms"] <= 60 for p in bounded)
    fast = {offer_key(p["offer"]) for p in everything if p["estimate"]["ttft_ms"] <= 60}
    assert fast and fast <= {offer_key(p["offer"]) for p in bounded}
    assert len(bounded) < len(everything)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--max-price", "0.01"], "max-price"),
        (["--max-ttft", "1"], "max-ttft"),
        (["--instance-type", "no-such-machine"], "no offer"),
        (["--region", "atlantis"], "no offer"),
    ],
)
def test_recommend_filters_that_leave_nothing_are_exit_3(cli, args, needle):
    r = cli("recommend", "llama-3.1-8b", *args)
    assert r.exit_code == 3 and needle in r.output and "Traceback" not in r.output


@pytest.mark.parametrize(
    ("args", "first", "hint"),
    [
        (["--max-price", "0.01"], "x from $", "hint: raise --max-price"),
        (["--spot", "--providers", "hetzner"], "none of the 6 matching offers has a spot price",
         "hint: drop --spot"),
    ],
)  # fmt: skip
def test_no_feasible_offer_hint_fits_the_commonest_reason(cli, args, first, hint):
    r = cli("recommend", "llama-3.1-8b", *args)
    assert r.exit_code == 3, r.output
    assert first in r.stderr.splitlines()[0]
    assert r.stderr.splitlines()[1].startswith(hint)


def test_a_card_without_a_dense_fp16_figure_is_refused_with_a_hint(cli, monkeypatch):
    # Every card of the GPU table has one; a card without (as the RTX PRO 6000 Blackwell was
    # before its AIConfigurator figures) cannot be estimated, and the refusal says so.
    r = cli("recommend", "llama-3.1-8b", "--gpu", "rtx-pro-6000-blackwell")
    assert r.exit_code == 0, r.output
    card = gpu_table()["rtx-pro-6000-blackwell"]
    monkeypatch.setitem(
        gpu_table(), card.id, replace(card, bf16_tflops_dense=None, fp16_tflops_dense=None)
    )
    r = cli("recommend", "llama-3.1-8b", "--gpu", "rtx-pro-6000-blackwell")
    assert r.exit_code == 3, r.output
    assert "no published dense" in r.stderr.splitlines()[0]
    assert r.stderr.splitlines()[1].startswith("hint: choose another --gpu")
