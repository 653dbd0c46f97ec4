"""RunPod: GPU types and per-GPU prices from the GraphQL API (plain HTTP, variables only, so no
value is ever spliced into the query text)."""

from __future__ import annotations

import os
from typing import Any

from planner.errors import ProviderError
from planner.offers.cache import positive_number
from planner.offers.offer import Offer
from planner.offers.providers._http import JsonHttp
from planner.offers.providers.base import (
    MissingCredentials,
    OfferQuery,
    Provider,
    register,
    sold_anywhere,
    utc_now_iso,
)

GPU_COUNTS = (1, 2, 4, 8)
TIERS = ("secure", "community")
# The CUDA the vLLM image needs on the host (infra.versions.IMAGE_CUDA; a test keeps them
# equal): a GPU type in stock only on hosts with an older driver cannot run the project.
MIN_HOST_CUDA = "13.0"


def _stock_alias(tier: str, count: int) -> str:
    return f"{tier}{count}"


# One lowestPrice per tier and GPU count, aliased, each with its own input variable: its
# stockStatus is null when no host of that tier has that many GPUs of the type free with a
# CUDA of at least minCudaVersion (GpuLowestPriceInput: gpuCount, secureCloud, minCudaVersion,
# as gpuhunt's RunPod provider queries it, dstackai/gpuhunt src/gpuhunt/providers/runpod.py).
GPU_TYPES_QUERY = (
    "query GpuTypes("
    + ", ".join(f"${_stock_alias(t, n)}: GpuLowestPriceInput" for t in TIERS for n in GPU_COUNTS)
    + ") {\n  gpuTypes {\n"
    "    id displayName memoryInGb maxGpuCount maxGpuCountSecureCloud maxGpuCountCommunityCloud\n"
    "    secureCloud communityCloud securePrice communityPrice secureSpotPrice communitySpotPrice\n"
    + "".join(
        f"    {_stock_alias(t, n)}: lowestPrice(input: ${_stock_alias(t, n)}) {{ stockStatus }}\n"
        for t in TIERS
        for n in GPU_COUNTS
    )
    + "  }\n}\n"
)


def stock_variables() -> dict[str, dict[str, Any]]:
    return {
        _stock_alias(t, n): {"gpuCount": n, "secureCloud": t == "secure",
                             "minCudaVersion": MIN_HOST_CUDA}
        for t in TIERS for n in GPU_COUNTS
    }  # fmt: skip


@register
class RunpodProvider(Provider):
    name = "runpod"
    api_label = "GraphQL API (gpuTypes)"
    sells_again = staticmethod(sold_anywhere)
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
        body = {"query": GPU_TYPES_QUERY, "variables": stock_variables()}
        answer = self.http.request("POST", "/graphql", json=body)
        if not isinstance(answer, dict) or answer.get("errors"):
            detail = answer.get("errors") if isinstance(answer, dict) else answer
            raise ProviderError(f"runpod: GraphQL error: {str(detail)[:200]}")
        gpu_types = (answer.get("data") or {}).get("gpuTypes")
        if not isinstance(gpu_types, list):
            raise ProviderError("runpod: answer has no data.gpuTypes list")
        fetched = utc_now_iso()
        offers: list[Offer] = []
        malformed = out_of_stock = 0
        for g in gpu_types:
            if not isinstance(g, dict) or not isinstance(g.get("id"), str):
                malformed += 1  # one odd entry never costs the others
                continue
            listed, missing = self._offers_for(g, fetched)
            offers += listed
            out_of_stock += missing
        if malformed:
            self.warnings.append(f"{malformed} GPU type entries without an id were left out")
        if out_of_stock:
            self.warnings.append(
                f"{out_of_stock} GPU type, count and cloud tier combinations are out of "
                f"stock now (on hosts with CUDA {MIN_HOST_CUDA} or newer) and left out"
            )
        return offers

    def _offers_for(self, g: dict[str, Any], fetched: str) -> tuple[list[Offer], int]:
        """The GPU type's offers, and how many tier x count combinations are out of stock."""
        gpu = self.resolve_gpu(
            str(g.get("displayName") or g.get("id")), (g.get("memoryInGb") or 0) * 1024 or None
        )
        if gpu is None:
            return [], 0
        out: list[Offer] = []
        out_of_stock = 0
        for tier in TIERS:
            price, spot = _number(g.get(f"{tier}Price")), _number(g.get(f"{tier}SpotPrice"))
            if not g.get(f"{tier}Cloud") or price <= 0:
                continue
            # the tier's largest pod (0: none), else the type's; an odd value is one GPU
            most = _count(g.get(f"maxGpuCount{tier.title()}Cloud"))
            if most is None:
                most = _count(g.get("maxGpuCount")) or 1
            for count in GPU_COUNTS:
                if count > most:
                    break
                alias = _stock_alias(tier, count)
                # a lowestPrice of null, or a null stockStatus: none free now (a field the
                # answer lacks says nothing either way: kept, stock unknown)
                answer = g.get(alias)
                stock = answer.get("stockStatus") if isinstance(answer, dict) else None
                if not isinstance(stock, str):
                    stock = None
                if alias in g and stock is None:
                    out_of_stock += 1
                    continue
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
        return out, out_of_stock


def _count(value: Any) -> int | None:
    """A GPU count field as a whole number of 0 or more; None for null or anything else."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return value if ok else None


def _number(value: Any) -> float:
    """A price field as a number; 0 (not sold) for null or anything that is not one."""
    return float(value) if positive_number(value) else 0.0
