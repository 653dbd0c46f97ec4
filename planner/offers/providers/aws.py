"""AWS: GPU instance types from EC2 (GpuInfo), on-demand prices from the Price List API, spot
prices from the spot price history. boto3 is imported only here, only when refreshing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from planner.errors import ProviderError
from planner.offers.offer import Offer, spot_zone_data
from planner.offers.providers.base import (
    MissingCredentials,
    OfferQuery,
    Provider,
    register,
    utc_now_iso,
)

DEFAULT_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "ap-northeast-1",
    "ap-southeast-1",
)
# The Price List API answers only in us-east-1, eu-central-1 and ap-south-1.
PRICING_REGION = "us-east-1"
PRICING_FILTERS = {
    "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
    "capacitystatus": "Used", "marketoption": "OnDemand", "instanceFamily": "GPU instance",
}  # fmt: skip


def pricing_filters(region: str) -> list[dict[str, str]]:
    """The get_products filters for on-demand Linux prices of GPU instances in one region."""
    pairs = {"regionCode": region, **PRICING_FILTERS}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in pairs.items()]


def on_demand_price(product_json: str) -> tuple[str, float] | None:
    """(instance type, USD per hour) from one Price List product document."""
    doc = json.loads(product_json)
    itype = doc["product"]["attributes"].get("instanceType")
    for term in doc.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            usd = float(dim.get("pricePerUnit", {}).get("USD", "0") or 0)
            if itype and usd > 0 and dim.get("unit") == "Hrs":
                return itype, usd
    return None


@register
class AwsProvider(Provider):
    name = "aws"
    api_label = "API (ec2.describe_instance_types, pricing.get_products, spot price history)"
    credentials_hint = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"

    def __init__(
        self, session: Any, *, endpoint_url: str | None = None, pricing_client: Any = None
    ) -> None:
        super().__init__()
        self.session = session
        self.endpoint_url = endpoint_url
        self._pricing = pricing_client

    @classmethod
    def from_env(cls, base_url: str | None = None) -> AwsProvider:
        try:
            import boto3
        except ImportError:
            raise ProviderError(
                "aws: boto3 is not installed", "pip install 'gpuplan[aws]'"
            ) from None
        session = boto3.Session()
        if session.get_credentials() is None:
            raise MissingCredentials(f"aws: no credentials; set {cls.credentials_hint}")
        return cls(session, endpoint_url=cls.base_url(base_url))

    def _client(self, service: str, region: str) -> Any:
        from botocore.config import Config

        config = Config(
            retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=30
        )
        return self.session.client(
            service, region_name=region, endpoint_url=self.endpoint_url, config=config
        )

    def list_offers(self, query: OfferQuery) -> list[Offer]:
        regions = query.regions or DEFAULT_REGIONS
        pricing = self._pricing or self._client("pricing", PRICING_REGION)
        # Price List calls go one region at a time (the client is shared); EC2 calls in parallel.
        with ThreadPoolExecutor(max_workers=min(8, len(regions))) as pool:
            ec2_parts = list(pool.map(self._region_instances, regions))
        offers: list[Offer] = []
        fetched = utc_now_iso()
        for region, (types, spot) in zip(regions, ec2_parts, strict=True):
            if not types:
                continue
            prices = self._on_demand_prices(pricing, region)
            for itype, info in sorted(types.items()):
                price, data = prices.get(itype), spot_zone_data(spot.get(itype, {}))
                # the cheapest zone's spot price, where the AWS target places a spot machine
                spot_price = data["spot_by_zone"][data["spot_zone"]] if data else None
                if price is None:
                    self.warnings.append(f"no on-demand price for {itype} in {region}")
                    continue
                offers.append(Offer(
                    provider="aws", instance_type=itype, region=region, gpu=info["gpu"],
                    gpu_count=info["count"], gpu_memory_gb=info["memory_gb"], vcpus=info["vcpus"],
                    ram_gib=info["ram_gib"], disk_gb=info["disk_gb"], price_usd_per_hour=price,
                    spot_price_usd_per_hour=spot_price,
                    billing="hourly", provider_data=data,
                    source="aws: ec2.describe_instance_types, pricing.get_products, "
                           "ec2.describe_spot_price_history",
                    fetched_at=fetched,
                ))  # fmt: skip
        return offers

    def _region_instances(
        self, region: str
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
        from botocore.exceptions import BotoCoreError, ClientError

        ec2 = self._client("ec2", region)
        try:
            offered = set()
            for page in ec2.get_paginator("describe_instance_type_offerings").paginate(
                LocationType="region", Filters=[{"Name": "location", "Values": [region]}]
            ):
                offered |= {o["InstanceType"] for o in page["InstanceTypeOfferings"]}
            types: dict[str, dict[str, Any]] = {}
            # Every NVIDIA GPU family is g* or p* (g4dn ... g7e, gr6, p3 ... p6); GpuInfo has no
            # server-side filter, so narrowing by name keeps the listing small.
            for page in ec2.get_paginator("describe_instance_types").paginate(
                Filters=[{"Name": "instance-type", "Values": ["g*", "p*"]}]
            ):
                for it in page["InstanceTypes"]:
                    info = self._gpu_info(it)
                    if info and it["InstanceType"] in offered:
                        types[it["InstanceType"]] = info
            spot = self._spot_prices(ec2, sorted(types))
        except (BotoCoreError, ClientError) as exc:
            raise ProviderError(f"aws: EC2 in {region} failed: {exc}") from None
        return types, spot

    def _gpu_info(self, it: dict[str, Any]) -> dict[str, Any] | None:
        gpu_info = it.get("GpuInfo")
        if not gpu_info or not gpu_info.get("Gpus"):
            return None
        dev = gpu_info["Gpus"][0]
        if dev.get("Count", 0) < 1:
            return None  # fractional GPUs (g6f): not a whole card for vLLM
        gpu = self.resolve_gpu(dev["Name"], dev.get("MemoryInfo", {}).get("SizeInMiB"))
        if gpu is None:
            return None
        storage = it.get("InstanceStorageInfo") or {}
        return {
            "gpu": gpu.id,
            "count": dev["Count"],
            "memory_gb": gpu.memory_gb,
            "vcpus": it.get("VCpuInfo", {}).get("DefaultVCpus"),
            "ram_gib": round(it.get("MemoryInfo", {}).get("SizeInMiB", 0) / 1024, 2) or None,
            "disk_gb": storage.get("TotalSizeInGB"),
        }

    def _spot_prices(self, ec2: Any, types: list[str]) -> dict[str, dict[str, float]]:
        """Each type's spot price by availability zone (AWS prices spot per zone)."""
        spot: dict[str, dict[str, float]] = {}
        now = datetime.now(UTC)
        for i in range(0, len(types), 20):
            pages = ec2.get_paginator("describe_spot_price_history").paginate(
                InstanceTypes=types[i : i + 20], ProductDescriptions=["Linux/UNIX"], StartTime=now
            )
            for page in pages:
                for h in page["SpotPriceHistory"]:
                    # the zone's ID (use1-az1: the same zone in every account; its name,
                    # us-east-1a, maps to a different zone in each) where the API gives it
                    zone = h.get("AvailabilityZoneId") or h.get("AvailabilityZone") or ""
                    price = float(h["SpotPrice"])
                    zones = spot.setdefault(h["InstanceType"], {})
                    if price > 0:
                        zones[zone] = min(price, zones.get(zone, price))
        return {t: dict(sorted(z.items())) for t, z in spot.items() if z}

    def _on_demand_prices(self, pricing: Any, region: str) -> dict[str, float]:
        from botocore.exceptions import BotoCoreError, ClientError

        prices: dict[str, float] = {}
        try:
            pages = pricing.get_paginator("get_products").paginate(
                ServiceCode="AmazonEC2",
                Filters=pricing_filters(region),
                FormatVersion="aws_v1",
                PaginationConfig={"PageSize": 100},
            )
            for page in pages:
                for doc in page["PriceList"]:
                    parsed = on_demand_price(doc)
                    if parsed:
                        prices[parsed[0]] = parsed[1]
        except (BotoCoreError, ClientError, KeyError, ValueError) as exc:
            raise ProviderError(f"aws: Price List for {region} failed: {exc}") from None
        return prices
