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
    mega = o[("a3-megagpu-8g", "us-east4")]
    assert mega.gpu == "h100-sxm" and mega.gpu_count == 8
    assert mega.price_usd_per_hour == pytest.approx(
        208 * 0.026924 + 1872 * 0.002344 + 8 * 10.344276, abs=1e-4
    )
    high = o[("a3-highgpu-8g", "us-east4")]
    assert high.price_usd_per_hour == pytest.approx(
        208 * 0.035495 + 1872 * 0.004757 + 8 * 9.79655, abs=1e-4
    )


def test_gcp_skips_machine_types_not_sold_on_demand(monkeypatch, tmp_path):
    """a3-highgpu-1g/2g/4g are listed by the machine types API but sold only as Spot or
    Flex-start VMs: they are not on-demand offers."""
    offers, warnings = offers_of("gcp", monkeypatch, tmp_path)
    assert ("a3-highgpu-1g", "us-east4") not in by_type(offers)
    assert any("a3-highgpu-1g: not sold on demand" in w for w in warnings)
