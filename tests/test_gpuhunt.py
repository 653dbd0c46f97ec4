"""Refresh without credentials through gpuhunt, against a loopback mirror of its published
catalogs (tests/fakegpuhunt.py) and a fake of Vast's public offer search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.offers.catalog import cache_dir, load_catalog
from planner.offers.providers import cloud_names, parse_provider_list
from planner.offers.providers._gpuhunt import CATALOG_CLOUDS, version_date
from planner.offers.refresh import refresh
from tests.fakegpuhunt import VERSION, VERSION_DATE, FakeCatalog, row, vast_public_route
from tests.fakes import FakeApi

PUBLIC = ["aws", "azure", "cloudrift", "gcp", "lambda", "nebius", "oci", "runpod", "verda"]


def cache_file(name: str) -> Path:
    return cache_dir() / "offers" / f"{name}.json"


@pytest.fixture
def mirror(monkeypatch):
    with FakeCatalog() as fake:
        monkeypatch.setenv("GPUHUNT_CATALOG_URL", fake.base)
        yield fake


def offers_by(name: str):
    return [o for o in load_catalog([name]).offers]


def test_catalog_clouds_match_gpuhunts_own_lists():
    from gpuhunt._internal.catalog import OFFLINE_PROVIDERS, ONLINE_PROVIDERS

    offline = {c.gpuhunt_name for c in CATALOG_CLOUDS.values() if not c.online}
    online = {c.gpuhunt_name for c in CATALOG_CLOUDS.values() if c.online}
    assert offline == set(OFFLINE_PROVIDERS)
    assert online <= set(ONLINE_PROVIDERS)
    assert {"azure", "oci", "lambda", "hetzner"} <= set(cloud_names())
    assert parse_provider_list("azure,lambda") == ["azure", "lambda"]


def test_refresh_without_credentials_reads_every_public_catalog(mirror, cli):
    outcomes = {o.provider: o for o in refresh(PUBLIC, explicit=False)}
    assert {n: o.status for n, o in outcomes.items()} == dict.fromkeys(PUBLIC, "ok")
    assert outcomes["gcp"].warnings[1:] == [
        "skipped 1 spot-only machine(s) with no on-demand price",
        "skipped 1 offers of non-GPU accelerators (TPU, Gaudi, ...)",
    ]
    for o in outcomes.values():
        assert o.via == "gpuhunt" and f"/{VERSION}/catalog.zip" in o.source
        assert mirror.base in o.source and o.fetched_at == VERSION_DATE
    # Each catalog downloads once per refresh, not once per cloud asking.
    zips = [p for m, p, _ in mirror.requests if p.endswith("catalog.zip")]
    assert len(zips) == len(set(zips)) == len(PUBLIC)

    r = cli("offers", "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)["offers"]
    where = {(o["provider"], o["region"]) for o in rows}
    assert {
        ("aws", "us-east-1"), ("aws", "eu-west-1"), ("aws", "ap-northeast-1"),
        ("gcp", "us-central1"), ("gcp", "europe-west4"), ("azure", "eastus"),
        ("azure", "westeurope"), ("azure", "southcentralus"), ("runpod", "EU-RO-1"),
        ("runpod", "US"), ("lambda", "us-east-1"), ("lambda", "us-west-1"),
        ("oci", "us-ashburn-1"), ("oci", "eu-frankfurt-1"),
    } <= where  # fmt: skip
    fresh = [o for o in rows if o["provider"] in PUBLIC]
    assert all(o["fetched_at"] == VERSION_DATE and VERSION in o["source"] for o in fresh)

    status = load_catalog().sources
    assert status["azure"].origin == "cache" and VERSION in (status["azure"].source or "")
    assert status["hetzner"].origin == "embedded"


def test_structured_facts_from_the_catalog(mirror):
    refresh(["gcp", "runpod", "aws", "oci"], explicit=False)
    gcp = {(o.instance_type, o.region): o for o in offers_by("gcp")}
    g2 = gcp[("g2-standard-4", "us-central1")]
    # on-demand and spot rows joined; zones of one region joined into provider_data
    assert g2.price_usd_per_hour == 0.70683 and g2.spot_price_usd_per_hour == 0.28
    assert g2.provider_data["zones"] == ["us-central1-a", "us-central1-b"]
    assert g2.gpu == "l4" and g2.vcpus == 4 and g2.ram_gib == 16
    assert gcp[("g2-standard-4", "europe-west4")].zone == "europe-west4-a"
    # spot-only machines and calendar-mode reservations carry no on-demand price
    assert not any(t.startswith("a3-") for t, _ in gcp)
    assert not any(t.startswith("v5litepod") for t, _ in gcp)  # TPUs are not GPUs

    runpod = {(o.instance_type, o.region): o for o in offers_by("runpod")}
    secure = runpod[("1x NVIDIA GeForce RTX 4090", "EU-RO-1")]
    community = runpod[("1x NVIDIA GeForce RTX 4090", "US")]
    assert (secure.tier, community.tier) == ("secure", "community")
    assert secure.provider_data == {
        "gpu_type_id": "NVIDIA GeForce RTX 4090",
        "data_center_id": "EU-RO-1",
    }
    assert not any(o.gpu_count == 8 for o in runpod.values())  # flagged cluster row skipped

    aws = {(o.instance_type, o.region) for o in offers_by("aws")}
    assert ("m5.large", "us-east-1") not in aws and ("p5.48xlarge", "us-east-1") in aws
    assert [o.instance_type for o in offers_by("oci") if o.region == "eu-frankfurt-1"] == [
        "BM.GPU.H100.8"
    ]


def test_amd_instinct_offers_keep_their_card(monkeypatch):
    """OCI prices MI300X and MI355X bare-metal shapes and CloudRift MI350X machines (gpuhunt
    providers/oci.py, cloudrift.py: names "MI300X", "MI355X", "MI350X", vendor amd, 288 GB on
    the CDNA 4 cards); offers naming a card missing from the GPU table are dropped."""
    amd = {"vendor": "amd", "cpu": 128, "ram": 3072.0}
    catalogs = {
        "oci": [
            row("BM.GPU.MI300X.8", "us-chicago-1", 48.0, "MI300X", 8, 192, **amd),
            row("BM.GPU.MI355X.8", "us-chicago-1", 68.0, "MI355X", 8, 288, **amd),
        ],
        "cloudrift": [row("mi350x-32c-nr-1", "us-east-nc-nr-1", 2.6, "MI350X", 1, 288, **amd)],
    }
    with FakeCatalog(catalogs) as fake:
        monkeypatch.setenv("GPUHUNT_CATALOG_URL", fake.base)
        outcomes = refresh(["oci", "cloudrift"], explicit=False)
    assert [(o.status, o.offers) for o in outcomes] == [("ok", 2), ("ok", 1)]
    assert not [w for o in outcomes for w in o.warnings if "not in the GPU table" in w]
    got = {o.instance_type: (o.gpu, o.gpu_count, o.gpu_memory_gb) for o in offers_by("oci")}
    assert got == {"BM.GPU.MI300X.8": ("mi300x", 8, 192), "BM.GPU.MI355X.8": ("mi355x", 8, 288)}
    [rift] = offers_by("cloudrift")
    assert (rift.gpu, rift.gpu_count, rift.gpu_memory_gb) == ("mi350x", 1, 288)


def test_catalog_down_leaves_the_cache_untouched_and_says_why(mirror, monkeypatch, cli):
    refresh(["aws", "azure"], explicit=False)
    before = {n: cache_file(n).read_bytes() for n in ("aws", "azure")}
    monkeypatch.setenv("GPUHUNT_CATALOG_URL", "http://127.0.0.1:9/v3")  # nothing listens
    outcomes = refresh(["aws", "azure"], explicit=False)
    assert all(o.status == "failed" and "gpuhunt catalog" in o.message for o in outcomes)
    assert {n: cache_file(n).read_bytes() for n in before} == before
    assert load_catalog(["aws"]).sources["aws"].fetched_at == VERSION_DATE  # never re-dated

    r = cli("catalog", "refresh", "--provider", "aws,azure,lambda")
    assert r.exit_code == 4, r.output
    assert "gpuhunt catalog" in r.output and "aws" in r.output


def test_one_broken_catalog_never_sinks_the_others(mirror):
    mirror.broken = {"azure"}
    outcomes = {o.provider: o for o in refresh(["aws", "azure", "oci"], explicit=False)}
    assert outcomes["aws"].status == outcomes["oci"].status == "ok"
    assert outcomes["azure"].status == "failed" and "HTTP" in outcomes["azure"].message
    assert not cache_file("azure").exists()


def test_region_limited_refresh_merges_into_the_cache(mirror):
    refresh(["aws"], explicit=False)
    everything = {(o.instance_type, o.region): o for o in offers_by("aws")}
    mirror.catalogs["aws"] = [
        r if r["location"] != "eu-west-1" else {**r, "price": "0.999"}
        for r in mirror.catalogs["aws"]
    ]
    mirror.version = "20261130-4300"
    [outcome] = refresh(["aws"], explicit=False, regions=("eu-west-1",))
    assert outcome.status == "ok" and outcome.offers == 1
    after = {(o.instance_type, o.region): o for o in offers_by("aws")}
    assert set(after) == set(everything)  # other regions kept, not dropped
    assert after[("g5.xlarge", "eu-west-1")].price_usd_per_hour == 0.999
    assert after[("g5.xlarge", "eu-west-1")].fetched_at == "2026-11-30"
    # the regions not refreshed keep their own date: stale data is never re-dated
    assert after[("g5.xlarge", "us-east-1")].fetched_at == VERSION_DATE


def test_vast_live_through_gpuhunt_without_a_key(monkeypatch):
    with FakeApi(vast_public_route) as api:
        monkeypatch.setenv("GPUPLAN_VAST_URL", api.url)
        [outcome] = refresh(["vast"], explicit=False)
    assert outcome.status == "ok" and outcome.via == "gpuhunt", outcome.message
    assert "VAST_API_KEY" in outcome.warnings[0]  # says the direct API was not used, and why
    [(method, path, headers)] = api.requests
    assert path.rstrip("/") == "/api/v0/bundles"
    assert method == "POST" and "authorization" not in headers
    body = vast_public_route.bodies[-1]
    assert body["limit"] == 3000 and body["verified"] == {"eq": True}
    offers = offers_by("vast")
    rtx_se = [o for o in offers if o.gpu == "rtx-4090" and o.region == "SE" and o.gpu_count == 1]
    assert len(rtx_se) == 1  # the cheapest per GPU, count and country
    assert rtx_se[0].provider_data["num_gpus"] == 1 and rtx_se[0].spot_price_usd_per_hour
    assert all("|" not in o.region and len(o.region) <= 12 for o in offers)
    # RAM in GiB, as the direct provider gives it: the offer's half of cpu_ram (MB)
    from tests.fakes.providers import fixture

    raw = {str(o["id"]): o for o in fixture("vast", "bundles.json")["offers"]}
    mb = raw[str(rtx_se[0].provider_data["offer_id"])]["cpu_ram"]
    assert rtx_se[0].ram_gib == pytest.approx(mb / 2 * 1e6 / 2**30, abs=0.06)


def test_direct_provider_wins_when_credentials_are_set(mirror, monkeypatch):
    from tests.fakes import provider_env

    with provider_env("runpod", monkeypatch):
        [outcome] = refresh(["runpod"], explicit=False)
    assert outcome.status == "ok" and outcome.via == "direct"
    assert "GraphQL" in outcome.source
    assert not [p for _, p, _ in mirror.requests if "/runpod/" in p]


def test_undated_catalog_version_is_dated_now_and_says_so(mirror):
    mirror.version = "latest-build"
    [outcome] = refresh(["lambda"], explicit=False)
    assert outcome.status == "ok" and any("no date" in w for w in outcome.warnings)
    assert version_date("20261129-4211") == "2026-11-29"
    assert version_date("20261399-1") is None and version_date("latest") is None


def test_recommend_ranks_catalog_only_clouds(mirror, cli):
    refresh(PUBLIC, explicit=False)
    r = cli(
        "recommend", "llama-3.1-8b", "--providers", "azure,lambda,oci", "--format", "json",
        "--top", "50",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    ranked = {p["offer"]["provider"] for p in doc["plans"]}
    assert ranked == {"azure", "lambda", "oci"}


def test_refresh_prints_nothing_of_gpuhunts_logs(mirror, monkeypatch):
    """In a real process (pytest's log capture would hide Python's last-resort handler)."""
    import subprocess
    import sys

    bad = dict(mirror.catalogs["aws"][0], price="not-a-number")  # gpuhunt skips it, with a log
    mirror.catalogs["aws"] = [*mirror.catalogs["aws"], bad]
    mirror.broken = {"azure"}  # gpuhunt logs the failed download with its traceback
    proc = subprocess.run(
        [sys.executable, "-m", "planner.cli", "catalog", "refresh", "--provider", "aws,azure"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Skipping malformed row" not in proc.stderr and "Traceback" not in proc.stderr
    assert "azure" in proc.stdout and "HTTP Error 500" in proc.stdout
