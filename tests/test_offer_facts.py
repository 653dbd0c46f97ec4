"""Offers carry structured facts: emit orders from provider_data, never from display strings;
the snapshot builder turns the reference's prose cells into clean fields."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from infra.emit import ProjectOptions, plan_data
from planner.decide.plan import Need
from planner.decide.rank import candidates_for, recommend
from planner.model.sources import load_model_spec
from planner.offers.gpus import gpu_table
from planner.offers.offer import Offer

ROOT = Path(__file__).resolve().parents[1]


def offer(provider: str, instance: str, region: str, gpu: str, **kw) -> Offer:
    base = Offer(
        provider=provider, instance_type=instance, region=region, gpu=gpu, gpu_count=1,
        gpu_memory_gb=gpu_table()[gpu].memory_gb, vcpus=8, ram_gib=64.0, disk_gb=None,
        price_usd_per_hour=1.0, spot_price_usd_per_hour=None, billing="hourly",
        source="test", fetched_at="2026-11-29",
    )  # fmt: skip
    return replace(base, **kw)


def data_for(o: Offer) -> dict:
    plan = recommend(candidates_for(load_model_spec("llama-3.1-8b"), None), [o], Need()).plans[0]
    return plan_data(plan, ProjectOptions(allowed_cidrs=("203.0.113.0/24",)))


def test_emit_orders_from_provider_data_not_display_strings():
    # Display strings that say something else: emit must not read them.
    runpod = offer(
        "runpod", "1x whatever (secure)", "any community cloud", "l40s", tier="community",
        provider_data={"gpu_type_id": "NVIDIA L40S (id from the API)"},
    )  # fmt: skip
    d = data_for(runpod)
    assert d["gpu_type_id"] == "NVIDIA L40S (id from the API)" and d["cloud_type"] == "COMMUNITY"

    vast = offer("vast", "1x RTX 4090", "SE", "rtx-4090", provider_data={"gpu_name": "RTX 4090D"})
    assert data_for(vast)["vast_gpu_name"] == "RTX 4090D"

    gcp = offer(
        "gcp", "n1-standard-8+1xt4", "us-east1", "t4", availability="zones: us-east1-a",
        provider_data={"machine_type": "n1-standard-8", "accelerator_count": 1,
                       "zones": ["us-east1-d", "us-east1-c"]},
    )  # fmt: skip
    d = data_for(gcp)
    assert (d["machine_type"], d["accelerator_count"], d["zone"]) == (
        "n1-standard-8",
        1,
        "us-east1-c",
    )

    hetzner = offer(
        "hetzner", "GEX131", "Falkenstein / Nuremberg", "rtx-6000-ada",
        billing="monthly", monthly_price_usd=1000.0, setup_fee_usd=100.0,
        provider_data={"product_id": "GEX131", "location": "NBG1"},
    )  # fmt: skip
    d = data_for(hetzner)
    assert (d["product_id"], d["location"]) == ("GEX131", "NBG1")


def test_snapshot_rtx_pro_6000_offers_order_the_edition_they_were_priced_for():
    from planner.offers.catalog import snapshot_offers

    pro = [o for o in snapshot_offers() if o.gpu == "rtx-pro-6000-blackwell"]
    vast = {o.instance_type: data_for(o)["vast_gpu_name"] for o in pro if o.provider == "vast"}
    assert vast == {
        "1x-RTX_PRO_6000_S-32-65536": "RTX PRO 6000 S",
        "1x-RTX-PRO-6000-Workstation-live-median": "RTX PRO 6000 WS",
    }
    runpod = {data_for(o)["gpu_type_id"] for o in pro if o.provider == "runpod"}
    assert runpod == {"NVIDIA RTX PRO 6000 Blackwell Server Edition"}


def test_catalog_only_clouds_have_no_target_yet():
    from planner.errors import DeployError

    with pytest.raises(DeployError, match="azure"):
        data_for(offer("azure", "Standard_NC24ads_A100_v4", "eastus", "a100-80gb-sxm"))


# ------------------------------------------------------------------ the snapshot builder
def builder():
    spec = importlib.util.spec_from_file_location(
        "build_snapshot", ROOT / "scripts/build_snapshot.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        (
            "Germany, DE, EU | Washington, US, NA | Hong Kong, HK, AS (HK row states 49140 MiB)",
            [("DE", "Germany, DE"), ("US", "Washington, US"), ("HK", "Hong Kong, HK")],
        ),
        ("Thailand, TH, AS | , US, NA", [("TH", "Thailand, TH"), ("US", "US")]),
        ("Texas, US, NA | Oregon, US, NA", [("US", "Texas, US")]),  # one offer per country
    ],
)
def test_vast_cells_become_one_place_per_country(cell, expected):
    assert builder().vast_places(cell) == expected


def test_hetzner_cells_and_sources():
    b = builder()
    assert b.hetzner_places("FSN1 / HEL1 / NBG1") == ["FSN1", "HEL1", "NBG1"]
    assert b.hetzner_places("HEL1 (Helsinki)") == ["HEL1"]
    src = b.clean_source(
        "github:skypilot-org/skypilot-catalog/catalogs/v8/gcp/vms.csv@006059e ; machine-type->GPU"
        " count: https://cloud.google.com/compute/docs/gpus/ (GPU count per G2/A2/A3 type)",
        "2026-11-22",
    )
    assert src == (
        "https://github.com/skypilot-org/skypilot-catalog/blob/006059e/catalogs/v8/gcp/vms.csv"
        " read 2026-11-22 ; https://cloud.google.com/compute/docs/gpus/ read 2026-11-22"
    )
    with pytest.raises(ValueError, match="no followable URL"):
        b.clean_source("research note, repository not recorded", "2026-10-08")
