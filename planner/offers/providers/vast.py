"""Vast.ai: the marketplace's offer search over plain HTTP (the vastai SDK pins a cryptography
version that conflicts with runpod's). Keeps the cheapest verified, rentable offer per GPU,
count and location; offer ids are ephemeral and only ever shown, never pinned."""

from __future__ import annotations

import os
from typing import Any

from planner.errors import ProviderError
from planner.offers.offer import Offer
from planner.offers.providers._http import JsonHttp
from planner.offers.providers.base import (
    MissingCredentials,
    OfferQuery,
    Provider,
    register,
    utc_now_iso,
)

MIN_RELIABILITY = 0.95


def search_body(limit: int = 1000) -> dict[str, Any]:
    return {
        "verified": {"eq": True}, "rentable": {"eq": True}, "rented": {"eq": False},
        "external": {"eq": False}, "reliability2": {"gte": MIN_RELIABILITY},
        "num_gpus": {"gte": 1}, "type": "on-demand", "order": [["dph_total", "asc"]],
        "limit": limit,
    }  # fmt: skip


@register
class VastProvider(Provider):
    name = "vast"
    api_label = "API (POST /api/v0/bundles/)"
    listings_vary = "machine"
    credentials_hint = "VAST_API_KEY"
    default_base_url = "https://console.vast.ai"

    def __init__(self, api_key: str, base_url: str) -> None:
        super().__init__()
        self.http = JsonHttp("vast", base_url, headers={"Authorization": f"Bearer {api_key}"})

    @classmethod
    def from_env(cls, base_url: str | None = None) -> VastProvider:
        key = os.environ.get("VAST_API_KEY")
        if not key:
            raise MissingCredentials(f"vast: no API key; set {cls.credentials_hint}")
        return cls(key, cls.base_url(base_url) or "")

    def list_offers(self, query: OfferQuery) -> list[Offer]:
        answer = self.http.request("POST", "/api/v0/bundles/", json=search_body())
        raw = answer.get("offers") if isinstance(answer, dict) else None
        if not isinstance(raw, list):
            raise ProviderError("vast: answer has no 'offers' list")
        fetched = utc_now_iso()
        best: dict[tuple[str, int, str], Offer] = {}
        for o in raw:
            offer = self._offer(o, fetched)
            if offer is None:
                continue
            if query.regions and not any(r.lower() in offer.region.lower() for r in query.regions):
                continue
            key = (offer.gpu, offer.gpu_count, offer.region)
            if key not in best or offer.price_usd_per_hour < best[key].price_usd_per_hour:
                best[key] = offer
        return list(best.values())

    def _offer(self, o: dict[str, Any], fetched: str) -> Offer | None:
        try:
            count, price = int(o["num_gpus"]), float(o["dph_total"])
        except (KeyError, TypeError, ValueError):
            self.warnings.append("skipped a malformed offer")
            return None
        gpu = self.resolve_gpu(str(o.get("gpu_name", "")), o.get("gpu_ram"))
        if gpu is None or count < 1 or price <= 0:
            return None
        min_bid = o.get("min_bid")
        place = str(o.get("geolocation") or "").strip()
        return Offer(
            provider="vast", instance_type=f"{count}x {o.get('gpu_name')} offer {o.get('id')}",
            region=vast_region(place), location=place or None, gpu=gpu.id, gpu_count=count,
            gpu_memory_gb=gpu.memory_gb, vcpus=_int(o.get("cpu_cores_effective")),
            ram_gib=round(o["cpu_ram"] / 1024, 1) if o.get("cpu_ram") else None,
            disk_gb=o.get("disk_space"), price_usd_per_hour=round(price, 4),
            spot_price_usd_per_hour=round(float(min_bid), 4) if min_bid else None,
            billing="hourly", source="vast: POST /api/v0/bundles/", fetched_at=fetched,
            availability=f"reliability {o.get('reliability2', o.get('reliability'))}",
            provider_data={
                "offer_id": o.get("id"), "gpu_name": o.get("gpu_name"), "num_gpus": count,
                "min_reliability": MIN_RELIABILITY,
            },
        )  # fmt: skip


def vast_region(geolocation: str) -> str:
    """'Hamburg, DE' -> 'DE': the country code ends Vast's geolocation; 'unknown' when absent."""
    code = geolocation.rsplit(",", 1)[-1].strip().upper()
    return code if len(code) == 2 and code.isalpha() else (geolocation or "unknown")


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
