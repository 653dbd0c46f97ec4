"""Refresh faults an SRE meets: a region-limited refresh whose source answers other region
names, two refreshes sharing one cache folder, credentials in a mirror URL, a public source
that rate-limits, and a cache this version cannot read."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from planner.offers.catalog import cache_dir, load_catalog
from planner.offers.refresh import refresh
from tests.fakes import provider_env


def cache_file(name: str) -> Path:
    return cache_dir() / "offers" / f"{name}.json"


def listing(name: str) -> Counter:
    return Counter((o.instance_type, o.region, o.tier) for o in load_catalog([name]).offers)


def test_a_region_limited_refresh_never_lists_an_offer_twice(monkeypatch):
    """RunPod's API prices every data center alike (region "global") and ignores --region:
    the answer replaces the cached offers of the regions it holds, not only those asked."""
    with provider_env("runpod", monkeypatch):
        refresh(["runpod"], explicit=True)
        before = listing("runpod")
        [outcome] = refresh(["runpod"], explicit=True, regions=("EU-RO-1",))
    assert outcome.status == "ok"
    after = listing("runpod")
    assert after == before and set(after.values()) == {1}
