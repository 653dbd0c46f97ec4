"""The catalog: snapshot defaults, filtering and strict order, refresh isolation, and caches
that survive failed or killed refreshes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from planner.offers.catalog import (
    OfferFilter,
    age_days,
    cache_dir,
    filter_offers,
    load_catalog,
    snapshot_offers,
    write_cache,
)
from planner.offers.providers import provider_names
from planner.offers.refresh import refresh
from tests.fakes import provider_env

HTTP_PROVIDERS = ["gcp", "runpod", "vast", "hetzner"]


def cache_file(name: str) -> Path:
    return cache_dir() / "offers" / f"{name}.json"


# ------------------------------------------------------------------ snapshot and filters
def test_snapshot_covers_all_providers_and_common_gpus():
    offers = snapshot_offers()
    assert {o.provider for o in offers} == set(provider_names())
    gpus = {o.gpu for o in offers}
    assert {
        "t4",
        "l4",
        "a10g",
        "l40s",
        "rtx-a6000",
        "rtx-4090",
        "rtx-3090",
        "a100-40gb-sxm",
        "a100-80gb-sxm",
        "h100-sxm",
        "h200-sxm",
    } <= gpus
    for o in offers:
        assert o.source and o.fetched_at and o.price_usd_per_hour > 0


def test_offers_are_strictly_sorted_and_filtered():
    rows = filter_offers(snapshot_offers(), OfferFilter(gpu="H100", gpus=8))
    prices = [p for _, p in rows]
    assert prices == sorted(prices) and rows
    assert all(o.gpu.startswith("h100-") and o.gpu_count == 8 for o, _ in rows)
    keys = [(p, o.provider, o.instance_type, o.region) for o, p in rows]
    assert len(set(keys)) == len(keys)  # no ties left to chance


@pytest.mark.parametrize(
    "name, wanted",
    [
        ("A100", {"a100-40gb-sxm", "a100-40gb-pcie", "a100-80gb-sxm", "a100-80gb-pcie"}),
        ("h100", {"h100-sxm", "h100-pcie", "h100-nvl"}),
        ("H200", {"h200-sxm", "h200-nvl"}),
        ("A100 80GB", {"a100-80gb-sxm", "a100-80gb-pcie"}),
        ("A100 SXM4", {"a100-80gb-sxm"}),
        ("a100-80gb-pcie", {"a100-80gb-pcie"}),
        ("L40", {"l40"}),
        ("RTX 4090", {"rtx-4090"}),
    ],
)
def test_a_bare_family_name_means_every_variant(name, wanted):
    """A new-user sweep: --gpu a100 kept only the 40 GB SXM card (a provider's bare "A100"),
    so a cheaper 2x A100 80GB plan that --explain named "best A100" was left out."""
    from planner.offers.gpus import gpu_ids

    assert set(gpu_ids(name)) == wanted
    rows = filter_offers(snapshot_offers(), OfferFilter(gpu=name))
    assert {o.gpu for o, _ in rows} <= wanted
    if name == "A100":
        assert {"a100-40gb-sxm", "a100-80gb-sxm", "a100-80gb-pcie"} <= {o.gpu for o, _ in rows}


def test_spot_filter_drops_offers_without_spot_and_ranks_by_spot():
    rows = filter_offers(snapshot_offers(), OfferFilter(spot=True))
    assert rows and all(o.spot_price_usd_per_hour == p for o, p in rows)


def test_monthly_offers_spread_setup_over_horizon():
    hetzner = [o for o in snapshot_offers() if o.provider == "hetzner" and o.setup_fee_usd]
    o = hetzner[0]
    one = o.effective_usd_per_hour(horizon_months=1)
    twelve = o.effective_usd_per_hour(horizon_months=12)
    assert one is not None and twelve is not None and one > twelve > o.price_usd_per_hour


def test_a_monthly_rental_bills_whole_months():
    """A sweep: --horizon-months 0.5 priced a Hetzner GEX63 at half a month's rent (plus the
    setup fee over 365 h), $4.92/h, where half a month pays the whole month: $6.56/h."""
    from planner.offers.offer import monthly_usd_per_hour

    assert monthly_usd_per_hour(1197, 1199, 0.5) == pytest.approx((1197 + 1199) / 365)
    assert monthly_usd_per_hour(1197, 1199, 1.5) == pytest.approx((2 * 1197 + 1199) / 1095)
    for months in (1, 3, 12):  # whole months: the rent's hourly rate plus the spread fee
        expected = 1197 / 730 + 1199 / (730 * months)
        assert monthly_usd_per_hour(1197, 1199, months) == pytest.approx(expected)
    assert monthly_usd_per_hour(1197, None, 1.0000001) == pytest.approx(1197 / 730)
    tiny = 1e-7  # rounds to no months at all: still one month's rent
    assert monthly_usd_per_hour(1197, 0, tiny) == pytest.approx(1197 / (730 * tiny))


def test_snapshot_is_flagged_stale():
    status = load_catalog().sources
    embedded = {n for n, s in status.items() if s.origin == "embedded"}
    assert embedded == set(provider_names())
    assert all(status[n].stale for n in embedded)
    # Clouds known only through the public catalogs have no offers until a refresh.
    assert status["azure"].origin == "none" and status["azure"].offers == 0


# ------------------------------------------------------------------ refresh
def test_refresh_writes_caches_and_status_shows_them(monkeypatch):
    with ExitStack() as stack:
        for name in HTTP_PROVIDERS:
            stack.enter_context(provider_env(name, monkeypatch))
        outcomes = refresh(HTTP_PROVIDERS, explicit=True)
    assert {o.provider: o.status for o in outcomes} == dict.fromkeys(HTTP_PROVIDERS, "ok")
    cat = load_catalog()
    for name in HTTP_PROVIDERS:
        assert cat.sources[name].origin == "cache" and not cat.sources[name].stale
    assert cat.sources["aws"].origin == "embedded"


@pytest.mark.parametrize("fault", ["status500", "status429", "malformed", "empty", "hang"])
def test_one_failing_provider_never_sinks_the_others(monkeypatch, fault):
    monkeypatch.setenv("GPUPLAN_HTTP_TIMEOUT_S", "0.5")
    with provider_env("runpod", monkeypatch) as bad, provider_env("vast", monkeypatch):
        if fault.startswith("status"):
            bad.fail_first, bad.fail_status = 99, int(fault[6:])
        else:
            bad.mode, bad.hang_s = fault, 1.5
        outcomes = {o.provider: o for o in refresh(["runpod", "vast"], explicit=False)}
    assert outcomes["vast"].status == "ok" and cache_file("vast").exists()
    assert outcomes["runpod"].status == "failed" and outcomes["runpod"].message
    assert not cache_file("runpod").exists()
    if fault in {"status500", "status429", "hang"}:
        assert len(bad.requests) == 3  # retried with backoff, then gave up


def test_retry_recovers_from_a_transient_error(monkeypatch):
    with provider_env("vast", monkeypatch) as api:
        api.fail_first, api.fail_status = 1, 429
        [outcome] = refresh(["vast"], explicit=True)
    assert outcome.status == "ok" and len(api.requests) == 2


def test_missing_credentials_skip_unless_named(monkeypatch):
    # Hetzner has no public catalog: without Robot credentials there is nothing to read.
    [skipped] = refresh(["hetzner"], explicit=False)
    assert skipped.status == "skipped" and "HETZNER_ROBOT_USER" in skipped.message
    [failed] = refresh(["hetzner"], explicit=True)
    assert failed.status == "failed"


def test_missing_credentials_fall_back_to_the_public_catalog_and_say_why_it_failed():
    # conftest points GPUHUNT_CATALOG_URL at a closed loopback port.
    [outcome] = refresh(["runpod"], explicit=False)
    assert outcome.status == "failed" and outcome.via == "" and not cache_file("runpod").exists()
    assert "gpuhunt catalog" in outcome.message and "RUNPOD_API_KEY" in outcome.message


def test_failed_refresh_keeps_cache_and_its_age(monkeypatch):
    with provider_env("vast", monkeypatch):
        refresh(["vast"], explicit=True)
    before = cache_file("vast").read_bytes()
    mtime = cache_file("vast").stat().st_mtime_ns
    fetched_before = load_catalog(["vast"]).sources["vast"].fetched_at
    time.sleep(0.01)
    with provider_env("vast", monkeypatch) as api:
        api.mode = "empty"
        [outcome] = refresh(["vast"], explicit=True)
    assert outcome.status == "failed" and "no offers" in outcome.message
    assert cache_file("vast").read_bytes() == before
    assert cache_file("vast").stat().st_mtime_ns == mtime
    assert load_catalog(["vast"]).sources["vast"].fetched_at == fetched_before


def test_corrupt_cache_is_reported_and_snapshot_used():
    path = cache_file("runpod")
    path.parent.mkdir(parents=True)
    path.write_text("{half a file")
    cat = load_catalog(["runpod"])
    assert cat.sources["runpod"].origin == "embedded"
    assert any("unreadable cache" in w for w in cat.warnings)


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([], "a JSON list, not an object"),
        ({"provider": "vast", "schema": "gpuplan.offers-cache/3"}, "provider 'vast', not 'runpod'"),
        (
            {"provider": "runpod", "schema": "gpuplan.offers-cache/99"},
            "schema gpuplan.offers-cache/99, from a newer gpuplan",
        ),
    ],
)
def test_a_cache_this_version_cannot_read_says_why(doc, reason):
    """Sweep: a list, another provider's file and a newer gpuplan's cache were all "unexpected
    provider"; the warning's hint (refresh, or upgrade for a newer gpuplan's) needs the reason."""
    path = cache_file("runpod")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    cat = load_catalog(["runpod"])
    assert cat.sources["runpod"].origin == "embedded"
    assert any(reason in w for w in cat.warnings), cat.warnings
    assert json.loads(path.read_text()) == doc  # a read never rewrites it


def _wait_for(predicate, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_killed_refresh_leaves_previous_cache_intact(monkeypatch):
    """A `gpuplan catalog refresh` process killed mid-request leaves the old cache as it was."""
    with provider_env("runpod", monkeypatch):
        refresh(["runpod"], explicit=True)
    before = cache_file("runpod").read_bytes()
    with provider_env("runpod", monkeypatch) as api:
        api.mode, api.hang_s = "hang", 10
        proc = subprocess.Popen(
            [sys.executable, "-m", "planner.cli", "catalog", "refresh", "--provider", "runpod"],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert _wait_for(lambda: api.requests), "the refresh never reached the fake"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert cache_file("runpod").read_bytes() == before
    assert list(cache_file("runpod").parent.glob("*.tmp")) == []


def test_ctrl_c_during_a_refresh_exits_at_once_and_keeps_the_cache(monkeypatch):
    """Ctrl-C while a cloud does not answer: 'interrupted', exit 130, within seconds (not once
    the call in flight has timed out and been retried), and the cache as it was."""
    import time

    with provider_env("runpod", monkeypatch):
        refresh(["runpod"], explicit=True)
    before = cache_file("runpod").read_bytes()
    with provider_env("runpod", monkeypatch) as api:
        api.mode, api.hang_s = "hang", 20
        env = {**os.environ, "GPUPLAN_HTTP_TIMEOUT_S": "30"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "planner.cli", "catalog", "refresh", "--provider", "runpod"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert _wait_for(lambda: api.requests), "the refresh never reached the fake"
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
            took = time.monotonic() - start
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert took < 10, f"exited {took:.1f} s after Ctrl-C"
    assert cache_file("runpod").read_bytes() == before


def test_process_killed_during_cache_write_leaves_old_file(tmp_path):
    """Kill a process inside write_cache (held in fsync) and the old file is still whole."""
    offers = [o for o in snapshot_offers() if o.provider == "vast"]
    write_cache("vast", offers[:3], "2026-11-01T00:00:00+00:00")
    before = cache_file("vast").read_bytes()
    marker = tmp_path / "in-fsync"
    code = (
        "import os, sys, time\n"
        "from planner.offers.catalog import snapshot_offers, write_cache\n"
        "def slow_fsync(fd):\n"
        f"    open({str(marker)!r}, 'w').close(); time.sleep(30)\n"
        "os.fsync = slow_fsync\n"
        "offers = [o for o in snapshot_offers() if o.provider == 'vast'] * 50\n"
        "write_cache('vast', offers, '2026-11-22T00:00:00+00:00')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    try:
        assert _wait_for(marker.exists), "the writer never reached fsync"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert cache_file("vast").read_bytes() == before
    assert json.loads(before)["fetched_at"] == "2026-11-01T00:00:00+00:00"
    assert load_catalog(["vast"]).sources["vast"].offers == 3  # the temp file is never read


# ------------------------------------------------------------------ command line
def test_offers_command_formats(cli):
    r = cli("offers", "--gpu", "a10g", "--format", "json")
    assert r.exit_code == 0
    data = json.loads(r.output)
    prices = [o["ranked_price_usd_per_hour"] for o in data["offers"]]
    assert prices and prices == sorted(prices)
    assert all(o["gpu"] == "a10g" for o in data["offers"])
    r = cli("offers", "--provider", "hetzner", "--format", "csv")
    assert r.exit_code == 0
    lines = r.output.strip().splitlines()
    assert lines[0].startswith("provider,instance_type") and len(lines) > 1
    assert "STALE" in cli("offers", "--limit", "3").output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["offers", "--gpu", "H1OO"], "unknown GPU"),
        (["offers", "--provider", "azur"], "unknown provider"),
        (["offers", "--gpus", "0"], "--gpus"),
    ],
)
def test_offers_bad_input(cli, args, needle):
    r = cli(*args)
    assert r.exit_code == 2 and needle in r.output and "Traceback" not in r.output


def test_refresh_exit_codes(cli, monkeypatch):
    r = cli("catalog", "refresh")
    assert r.exit_code == 4 and "skipped" in r.output  # nothing had credentials
    with provider_env("vast", monkeypatch):
        r = cli("catalog", "refresh", "--provider", "vast,runpod")
        assert r.exit_code == 0, r.output  # one of two named failed: reported, not fatal
        r = cli("catalog", "refresh", "--provider", "runpod")
        assert r.exit_code == 4 and "RUNPOD_API_KEY" in r.output
    r = cli("catalog", "status", "--format", "json")
    status = {p["provider"]: p for p in json.loads(r.output)["providers"]}
    assert status["vast"]["origin"] == "cache" and status["runpod"]["origin"] == "embedded"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GPUPLAN_HTTP_TIMEOUT_S", "abc"),
        ("GPUPLAN_HTTP_TIMEOUT_S", "0"),
        ("GPUPLAN_RETRY_BACKOFF_S", "nan"),
        ("GPUPLAN_RETRY_BACKOFF_S", "-1"),
        ("GPUPLAN_EUR_USD", "inf"),
        ("GPUPLAN_RETRY_BACKOFF_S", "1e300"),  # passed a floor-only check, then overflowed sleep
        ("GPUPLAN_HTTP_TIMEOUT_S", "601"),
    ],
)
def test_a_bad_number_in_the_environment_is_a_usage_error_naming_it(
    cli, monkeypatch, variable, value
):
    # said once, before any cloud is asked (not once per cloud as "unexpected ValueError")
    monkeypatch.setenv(variable, value)
    with provider_env("vast", monkeypatch):
        r = cli("catalog", "refresh", "--provider", "vast")
    assert r.exit_code == 2, r.output
    assert f"error: {variable} must be a number" in r.output and "hint: unset it" in r.output
    assert "unexpected" not in r.output and "vast " not in r.output


@pytest.mark.parametrize("url", ["::not a url", "ftp://mirror.example", "https://"])
def test_a_mistyped_provider_url_is_a_usage_error_not_a_provider_down(cli, monkeypatch, url):
    with provider_env("vast", monkeypatch):
        monkeypatch.setenv("GPUPLAN_VAST_URL", url)
        r = cli("catalog", "refresh", "--provider", "vast")
    assert r.exit_code == 2, r.output
    assert "error: GPUPLAN_VAST_URL=" in r.output and "is not an http(s) URL" in r.output
    assert "may be down" not in r.output


def test_a_cloud_named_twice_is_refreshed_once(cli, monkeypatch):
    from planner.offers.providers import parse_provider_list

    assert parse_provider_list("vast,gcp,VAST") == ["vast", "gcp"]
    with provider_env("vast", monkeypatch) as api:
        outcomes = refresh(["vast", "vast"], explicit=True)
        asked = len(api.requests)
    assert [o.provider for o in outcomes] == ["vast"] and outcomes[0].status == "ok"
    with provider_env("vast", monkeypatch) as api:
        refresh(["vast"], explicit=True)
        assert len(api.requests) == asked  # the same calls as naming it once


def test_no_wait_between_retries_is_allowed(monkeypatch):
    from planner.offers.providers._http import env_number

    monkeypatch.setenv("GPUPLAN_RETRY_BACKOFF_S", "0")
    assert env_number("GPUPLAN_RETRY_BACKOFF_S") == 0.0
    monkeypatch.delenv("GPUPLAN_EUR_USD", raising=False)
    assert env_number("GPUPLAN_EUR_USD") == 1.1637


# ------------------------------------------------------------------ a clean embedded snapshot
SOURCE = re.compile(r"^https://\S+ read \d{4}-\d{2}-\d{2}( ; https://\S+ read \d{4}-\d{2}-\d{2})*$")
INTERNAL = re.compile(
    r"\b(note id|repository not recorded|research note|catalog zones|any)\b", re.I
)


def test_snapshot_cells_are_short_clean_and_sourced():
    offers = snapshot_offers()
    for o in offers:
        for cell in (o.region, o.instance_type, o.location or ""):
            assert "|" not in cell and "(" not in cell and not INTERNAL.search(cell), cell
        assert len(o.region) <= 16 and o.region.strip() == o.region and o.region, o.region
        assert SOURCE.match(o.source), o.source
        assert not INTERNAL.search(o.source), o.source
        datetime.fromisoformat(o.fetched_at)
    keys = [(o.provider, o.instance_type, o.region, o.tier) for o in offers]
    assert len(keys) == len(set(keys))


def test_snapshot_structured_facts():
    offers = snapshot_offers()
    medians = [o for o in offers if o.provider == "vast" and o.region == "global"]
    assert medians and all(o.provider_data["price_kind"] == "marketplace_median" for o in medians)
    # a bucket listing three countries became one offer per country
    bucket = {o.region for o in offers if o.instance_type == "1x-RTX_4090-32-65536"}
    assert bucket == {"DE", "US", "HK"}
    gex131 = {o.region: o for o in offers if o.instance_type == "GEX131"}
    assert set(gex131) == {"NBG1", "FSN1"}
    assert gex131["FSN1"].provider_data == {"product_id": "GEX131", "location": "FSN1"}
    n1 = next(o for o in offers if o.instance_type == "n1-standard-4+2xT4")
    assert n1.provider_data == {"machine_type": "n1-standard-4", "accelerator_count": 2}
    runpod = [o for o in offers if o.provider == "runpod"]
    assert {o.region for o in runpod} == {"global"}
    assert all(o.provider_data["cloud_type"] == (o.tier or "").upper() for o in runpod)


def test_offer_filter_takes_regions_and_an_instance_type():
    offers = snapshot_offers()
    rows = filter_offers(offers, OfferFilter(regions=("us-east-1", "FSN1")))
    assert {o.region for o, _ in rows} == {"us-east-1", "FSN1"}
    rows = filter_offers(offers, OfferFilter(regions=("falkenstein",)))  # the location name
    assert rows and {o.region for o, _ in rows} == {"FSN1"}
    [(only, _)] = filter_offers(
        offers, OfferFilter(instance_type="p5.48xlarge", regions=("us-east-1",))
    )
    assert only.instance_type == "p5.48xlarge"


def test_cache_formats_round_trip_and_old_caches_still_load():
    from planner.offers.catalog import CACHE_SCHEMA, SCHEMA, offer_to_dict, read_cache
    from tests.cachedocs import v2_doc

    offers = [o for o in snapshot_offers() if o.provider == "gcp"][:3]
    offers[1] = replace(offers[1], notes=("a note",), zone="us-central1-b")
    # equal values of two types are not one constant: 24 stays an int, 24.0 a float
    offers = [replace(o, gpu_memory_gb=gb) for o, gb in zip(offers, [24.0, 24, 24.0], strict=True)]
    write_cache("gcp", offers, "2026-11-29", "https://example.test/gcp read 2026-11-29")
    doc = json.loads(cache_file("gcp").read_text())
    assert doc["schema"] == CACHE_SCHEMA and doc["count"] == 3
    # stored once: what all three share; per offer: what differs
    assert doc["constant"]["provider"] == "gcp" and "notes" in doc["columns"]
    assert "gpu_memory_gb" not in doc["constant"]
    assert read_cache("gcp")[0] == offers  # provider_data and notes survive the columns
    assert [type(o.gpu_memory_gb) for o in read_cache("gcp")[0]] == [
        type(o.gpu_memory_gb) for o in offers
    ]
    # v2, as earlier versions wrote it (users have them): the same offers
    cache_file("gcp").write_text(json.dumps(v2_doc("gcp", offers)))
    assert read_cache("gcp")[0] == offers
    # v2 from another version: its own column order and a column this one does not know
    v2 = v2_doc("gcp", offers)
    columns = [*reversed(v2["columns"]), "future_field"]
    rows = [[*reversed(r), 1] for r in v2["rows"]]
    cache_file("gcp").write_text(json.dumps({**v2, "columns": columns, "rows": rows}))
    assert read_cache("gcp")[0] == offers
    # v3 from a later version: a column this one does not know, constant or not
    later = {**doc, "constant": {**doc["constant"], "future": 1},
             "columns": {**doc["columns"], "future2": [1, 2, 3]}}  # fmt: skip
    cache_file("gcp").write_text(json.dumps(later))
    assert read_cache("gcp")[0] == offers
    old = {"schema": SCHEMA, "provider": "gcp", "fetched_at": "2026-11-29",
           "offers": [offer_to_dict(o) for o in offers]}  # fmt: skip
    cache_file("gcp").write_text(json.dumps(old))
    assert read_cache("gcp")[0] == offers


def _all_constant(doc, count):
    doc["constant"].update({k: v[0] for k, v in doc["columns"].items()})
    doc["columns"].clear()
    doc["count"] = count


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(count=4),  # a column shorter than the count
        lambda d: d["columns"].update(instance_type=["x"]),
        lambda d: d.update(constant=[]),
        lambda d: d["constant"].update(instance_type="x"),  # both constant and per offer
        lambda d: _all_constant(d, count=10**15),  # nothing bounds it but the check itself
        lambda d: _all_constant(d, count=-1),
        lambda d: _all_constant(d, count=900_000),  # in bounds, but one offer repeated
        lambda d: d.update(source={"a": 1}),  # shown as text: sliced, printed
        lambda d: d.update(source=5),
    ],
)
def test_malformed_v3_cache_is_reported_and_snapshot_used(change):
    offers = [o for o in snapshot_offers() if o.provider == "gcp"][:3]
    path = write_cache("gcp", offers, "2026-11-29", "test")
    doc = json.loads(path.read_text())
    assert "instance_type" in doc["columns"]  # the three differ in instance type
    change(doc)
    path.write_text(json.dumps(doc))
    cat = load_catalog(["gcp"])
    assert cat.sources["gcp"].origin == "embedded"
    assert any("ignoring unreadable cache" in w for w in cat.warnings), cat.warnings
    assert any("gpuplan catalog refresh --provider" in w for w in cat.warnings), cat.warnings


def test_source_labels_are_short():
    from dataclasses import replace

    from planner.offers.catalog import source_label

    o = snapshot_offers()[0]
    cases = {
        "http://127.0.0.1:1/v3/aws/20261129-4211/catalog.zip (gpuhunt)": "gpuhunt 20261129-4211",
        "http://127.0.0.1:1/api/v0/bundles/ (live, via gpuhunt)": "gpuhunt live",
        "aws API (ec2.describe_instance_types, pricing.get_products)": "aws API",
        "gcp: compute machineTypes/acceleratorTypes, cloudbilling skus": "gcp API",
        "https://www.runpod.io/pricing read 2026-10-08": "www.runpod.io",
        o.source: "github.com/skypilot-org",
    }
    assert {src: source_label(replace(o, source=src)) for src in cases} == cases


def test_a_price_dated_a_little_ahead_is_fresh_not_of_negative_age():
    # a clock up to a day ahead is tolerated (cache.py); its prices are 0 days old, not -0.5
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    assert age_days("2026-12-03T00:00:00+00:00", now) == 0.0
    assert age_days("2026-11-30T12:00:00+00:00", now) == 2.0
