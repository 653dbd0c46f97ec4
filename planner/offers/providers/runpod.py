"""RunPod: GPU types and per-GPU prices from the GraphQL API (plain HTTP, variables only, so no
value is ever spliced into the query text)."""

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

GPU_TYPES_QUERY = """
query GpuTypes($lowest: GpuLowestPriceInput) {
  gpuTypes {
    id displayName memoryInGb maxGpuCount secureCloud communityCloud
    securePrice communityPrice secureSpotPrice communitySpotPrice
    lowestPrice(input: $lowest) { stockStatus }
  }
}
"""
GPU_COUNTS = (1, 2, 4, 8)


@register
class RunpodProvider(Provider):
    name = "runpod"
    api_label = "GraphQL API (gpuTypes)"
    listings_vary = "machine"
    credentials_hint = "RUNPOD_API_KEY"
    default_base_url = "https://api.runpod.io"

    def __init__(self, api_key: str, base_url: str) -> None:
        super().__init__()
        self.http = JsonHttp("runpod", base_url, headers={"Authorization": f"Bearer {api_key}"})

    @classmethod
    def from_env(cls, base_url: str | None = None) -> RunpodProvider:
        key = os.environ.get("RUNPOD_API_KEY")
        if not key:
            raise MissingCredentials(f"runpod: no API key; set {cls.credentials_hint}")
        return cls(key, cls.base_url(base_url) or "")

    def list_offers(self, query: OfferQuery) -> list[Offer]:
        body = {"query": GPU_TYPES_QUERY, "variables": {"lowest": {"gpuCount": 1}}}
        answer = self.http.request("POST", "/graphql", json=body)
        if not isinstance(answer, dict) or answer.get("errors"):
            detail = answer.get("errors") if isinstance(answer, dict) else answer
            raise ProviderError(f"runpod: GraphQL error: {str(detail)[:200]}")
        gpu_types = (answer.get("data") or {}).get("gpuTypes")
        if not isinstance(gpu_types, list):
            raise ProviderError("runpod: answer has no data.gpuTypes list")
        fetched = utc_now_iso()
        offers = []
        for g in gpu_types:
            offers += self._offers_for(g, fetched)
        return offers

    def _offers_for(self, g: dict[str, Any], fetched: str) -> list[Offer]:
        gpu = self.resolve_gpu(
            str(g.get("displayName") or g.get("id")), (g.get("memoryInGb") or 0) * 1024 or None
        )
        if gpu is None:
            return []
        stock = (g.get("lowestPrice") or {}).get("stockStatus")
        out = []
        for tier in ("secure", "community"):
            price = g.get(f"{tier}Price") or 0
            if not g.get(f"{tier}Cloud") or price <= 0:
                continue
            spot = g.get(f"{tier}SpotPrice") or 0
            for count in GPU_COUNTS:
                if count > (g.get("maxGpuCount") or 1):
                    break
                out.append(Offer(
                    provider="runpod", instance_type=f"{count}x {g['id']}",
                    # RunPod prices a GPU type alike in every data center of a tier.
                    region="global", gpu=gpu.id, gpu_count=count,
                    gpu_memory_gb=gpu.memory_gb, vcpus=None, ram_gib=None, disk_gb=None,
                    price_usd_per_hour=round(count * price, 4),
                    spot_price_usd_per_hour=round(count * spot, 4) if spot > 0 else None,
                    billing="hourly", source="runpod: GraphQL gpuTypes", fetched_at=fetched,
                    availability=stock, tier=tier,
                    provider_data={"gpu_type_id": g["id"], "cloud_type": tier.upper()},
                ))  # fmt: skip
        return out
