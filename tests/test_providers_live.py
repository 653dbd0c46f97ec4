"""What each direct provider reads from its real API, beyond the shared contract in
tests/test_providers.py: units, which offers are really sold, how far a search reaches."""

from __future__ import annotations

import pytest

from tests.test_providers import by_type, offers_of


def test_gcp_prices_a3_mega_with_its_own_skus_not_a3_highs(monkeypatch, tmp_path):
    """a3-megagpu-8g carries the same H100 card as a3-highgpu-8g, but GCP bills it with its own
    SKUs: "Nvidia H100 80GB Mega GPU" and "A3Plus Instance Core/Ram"."""
    offers, _ = offers_of("gcp", monkeypatch, tmp_path)
    o = by_type(offers)
    ssd = 16 * 375 * 0.08 / 730  # both come with 16 local SSD partitions (see below)
    mega = o[("a3-megagpu-8g", "us-east4")]
    assert mega.gpu == "h100-sxm" and mega.gpu_count == 8
    assert mega.price_usd_per_hour == pytest.approx(
        208 * 0.026924 + 1872 * 0.002344 + 8 * 10.344276 + ssd, abs=1e-4
    )
    high = o[("a3-highgpu-8g", "us-east4")]
    assert high.price_usd_per_hour == pytest.approx(
        208 * 0.035495 + 1872 * 0.004757 + 8 * 9.79655 + ssd, abs=1e-4
    )


def test_gcp_bills_the_local_ssds_a_machine_type_comes_with(monkeypatch, tmp_path):
    """A2 Ultra and A3 High/Mega machines come with local SSDs (bundledLocalSsds: 375 GiB a
    partition), billed at the "SSD backed Local Storage" SKU per GiB-month (on demand; the Spot
    SKU says "attached to Spot Preemptible VMs"): about $0.66/h on an a3-highgpu-8g here."""
    offers, _ = offers_of("gcp", monkeypatch, tmp_path)
    o = by_type(offers)
    ultra, plain = o[("a2-ultragpu-1g", "us-central1")], o[("a2-highgpu-1g", "us-central1")]
    vm = ultra.vcpus * 0.031611 + ultra.ram_gib * 0.004237 + 3.92808
    assert ultra.price_usd_per_hour == pytest.approx(vm + 375 * 0.08 / 730, abs=1e-4)
    assert plain.price_usd_per_hour == pytest.approx(
        plain.vcpus * 0.031611 + plain.ram_gib * 0.004237 + 2.933908, abs=1e-4
    )  # no local SSD: nothing added
    # Spot: the "attached to Spot Preemptible VMs" SKU, not the legacy preemptible one
    spot_vm = ultra.vcpus * 0.009483 + ultra.ram_gib * 0.001271 + 1.178424
    assert ultra.spot_price_usd_per_hour == pytest.approx(spot_vm + 375 * 0.048 / 730, abs=1e-4)


def test_gcp_leaves_out_deprecated_machine_types(monkeypatch, tmp_path):
    """A machine type the API marks deprecated in a zone (deprecated.state) is not offered
    there, as gpuhunt skips it (OBSOLETE and DELETED ones cannot be created at all)."""
    offers, _ = offers_of("gcp", monkeypatch, tmp_path)
    names = {name for name, _ in by_type(offers)}
    assert "g2-standard-24" in names and "g2-standard-32" not in names


def test_gcp_keeps_machine_types_sold_as_spot_only_for_spot_plans(monkeypatch, tmp_path):
    """a3-highgpu-1g/2g/4g are sold only as Spot or Flex-start VMs: the listing keeps them (a
    Spot plan may use them) and the GCP target refuses them on demand (infra.targets.gcp
    dws_only, the one place that says so). Review: the listing had dropped them, so a refresh
    took single-GPU H100s away from --spot."""
    from infra.targets.gcp import dws_only

    offers, _ = offers_of("gcp", monkeypatch, tmp_path)
    assert ("a3-highgpu-1g", "us-east4") in by_type(offers)
    assert dws_only("a3-highgpu-1g") and not dws_only("a3-highgpu-8g")


def _vast_market(monkeypatch, extra: list[dict]) -> tuple[list, list[str], int]:
    """Vast's fixture market plus ``extra`` offers, searched through a loopback API that answers
    like the real search (filters, price order, limit): (offers, warnings, requests made)."""
    import json

    from planner.offers.providers import OfferQuery, provider_classes
    from tests.fakes.providers import fixture, provider_env, vast_search

    market = fixture("vast", "bundles.json")["offers"] + extra

    def route(method, path, body, headers):
        return 200, {"offers": vast_search(market, json.loads(body))}

    with provider_env("vast", monkeypatch, route=route) as api:
        provider = provider_classes()["vast"].from_env()
        offers = provider.list_offers(OfferQuery())
    return offers, provider.warnings, len(api.requests)


def _cheap_4090() -> dict:
    from tests.fakes.providers import fixture

    return next(o for o in fixture("vast", "bundles.json")["offers"] if o["gpu_name"] == "RTX 4090")


def test_vast_reads_the_whole_market_not_its_cheapest_page(monkeypatch):
    """The search answers at most ``limit`` offers, cheapest first: with more cheap offers than
    one page, the 8x H100 machine (the priciest) must still be found, in bounded requests."""
    cheap = _cheap_4090()
    # more RTX 4090s than the 1000 offers a page holds, several at each price
    extra = [{**cheap, "id": 10_000 + i, "dph_total": 0.32 + (i // 7) * 0.001} for i in range(1050)]
    offers, warnings, requests = _vast_market(monkeypatch, extra)
    h100 = [o for o in offers if o.gpu_count == 8]
    assert h100 and h100[0].price_usd_per_hour == 17.6
    assert 2 <= requests <= 3
    assert not any("stopped after" in w for w in warnings)


def test_vast_ram_is_the_offers_share_of_the_machine_in_gib(monkeypatch, tmp_path):
    """cpu_ram is the whole machine's, in MB; an offer renting 16 of 64 cores gets a quarter."""
    offers, _ = offers_of("vast", monkeypatch, tmp_path)
    rtx = next(o for o in offers if o.provider_data["offer_id"] == 2201)
    assert rtx.vcpus == 16
    assert rtx.ram_gib == pytest.approx(64000e6 / 4 / 2**30, abs=0.05)  # 14.9, not 62.5
    h100 = next(o for o in offers if o.gpu_count == 8)
    assert h100.ram_gib == pytest.approx(512000e6 / 2**30, abs=0.05)  # all cores: all of it


def test_vast_paging_ends_when_a_full_page_shares_one_price(monkeypatch):
    """More offers at one price than a page holds: the walk steps past that price instead of
    asking for the same page again (bounded, no endless loop)."""
    extra = [{**_cheap_4090(), "id": 20_000 + i, "dph_total": 0.5} for i in range(2500)]
    offers, _, requests = _vast_market(monkeypatch, extra)
    assert any(o.gpu_count == 8 for o in offers)
    assert requests <= 4


def test_an_odd_vast_entry_costs_only_itself(monkeypatch):
    """A null or non-object entry in the search's 'offers' failed the whole refresh as
    'unexpected AttributeError'; it is skipped, the others listed."""
    import json

    from planner.offers.providers import OfferQuery, provider_classes
    from tests.fakes.providers import fixture, provider_env, vast_search

    market = fixture("vast", "bundles.json")["offers"]

    def route(method, path, body, headers):
        return 200, {"offers": [None, "odd", 7, *vast_search(market, json.loads(body))]}

    with provider_env("vast", monkeypatch, route=route):
        offers = provider_classes()["vast"].from_env().list_offers(OfferQuery())
    assert any(o.gpu_count == 8 for o in offers)
