"""GCP: GPU machine types from the Compute API and prices from the Cloud Billing Catalog.

A VM's price is vCPUs x the family's core SKU + GiB x its RAM SKU + GPUs x the GPU SKU (gpuhunt
and SkyPilot price GCP the same way). a2/a3/g2 machine types bundle their GPUs; N1 machines take
attached T4 or V100 cards, offered here as n1-standard-(4 x GPUs) with 1, 2 or 4 GPUs.
google-cloud-compute and google-cloud-billing are imported only here, only when refreshing.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from planner.errors import ProviderError
from planner.offers.offer import Offer
from planner.offers.providers.base import (
    MissingCredentials,
    OfferQuery,
    Provider,
    register,
    utc_now_iso,
)

COMPUTE_ENGINE_SERVICE = "services/6F81-5844-456A"
GPU_SKU = re.compile(r"^(?:spot preemptible )?nvidia (?:tesla )?(.+?) gpu running in ", re.I)
VM_SKU = re.compile(
    r"^(?:spot preemptible )?(\w+) (?:predefined )?instance (core|ram) running in ", re.I
)
SKIP_SKU = ("sole tenancy", "reserved", "premium", "custom", "commitment", "dws")
ATTACHABLE = {"t4": (1, 2, 4), "v100-sxm2-16gb": (1, 2, 4, 8)}


def sku_price(sku: Any) -> float:
    unit = sku.pricing_info[0].pricing_expression.tiered_rates[-1].unit_price
    return float(unit.units) + unit.nanos / 1e9


def gcp_provider_data(
    instance_type: str, attached_host: str | None, gpu_count: int, zones: Iterable[str]
) -> dict[str, Any]:
    """What infrastructure code needs: the machine type to order, how many GPUs to attach to it
    (N1 hosts take attached GPUs; a2/a3/g2 bundle theirs: 0), and the zones that sell it."""
    return {
        "machine_type": attached_host or instance_type,
        "accelerator_count": gpu_count if attached_host else 0,
        "zones": sorted(zones),
    }


@register
class GcpProvider(Provider):
    name = "gcp"
    api_label = "API (compute machineTypes/acceleratorTypes, Cloud Billing Catalog)"
    # N1 machines with attached GPUs are named here n1-standard-{4 x GPUs}+{GPUs}x{GPU}, in the
    # public catalogs after other machine types: the same machine, another name
    listings_vary = "name"
    credentials_hint = (
        "GOOGLE_CLOUD_PROJECT and Application Default Credentials "
        "(GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`)"
        " or GOOGLE_OAUTH_ACCESS_TOKEN"
    )

    def __init__(self, project: str, credentials: Any, api_endpoint: str | None = None) -> None:
        super().__init__()
        self.project = project
        self.credentials = credentials
        self.api_endpoint = api_endpoint

    @classmethod
    def from_env(cls, base_url: str | None = None) -> GcpProvider:
        project = os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("CLOUDSDK_CORE_PROJECT")
        if not project:
            raise MissingCredentials(f"gcp: no project; set {cls.credentials_hint}")
        try:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError
        except ImportError:
            raise ProviderError(
                "gcp: google-cloud-compute / google-cloud-billing not installed",
                "pip install 'gpuplan[gcp]'",
            ) from None
        token = os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN")
        if token:
            # A short-lived token from CI (`gcloud auth print-access-token`, workload identity);
            # the same variable the Terraform Google provider reads.
            from google.oauth2.credentials import Credentials

            return cls(project, Credentials(token=token), cls.base_url(base_url))
        try:
            credentials, _ = google.auth.default()
        except DefaultCredentialsError:
            raise MissingCredentials(f"gcp: no credentials; set {cls.credentials_hint}") from None
        return cls(project, credentials, cls.base_url(base_url))

    def _options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"credentials": self.credentials, "transport": "rest"}
        if self.api_endpoint:
            opts["client_options"] = {"api_endpoint": self.api_endpoint}
        return opts

    def list_offers(self, query: OfferQuery) -> list[Offer]:
        from google.api_core import exceptions as gexc

        try:
            machines = self._machine_types(query)
            prices = self._sku_prices()
        except gexc.GoogleAPIError as exc:
            raise ProviderError(f"gcp: API call failed: {exc}") from None
        fetched = utc_now_iso()
        offers = []
        for (region, name), m in sorted(machines.items()):
            family = name.split("-")[0].lower()
            on_demand = self._price(prices, "ondemand", region, family, m)
            if on_demand is None:
                self.warnings.append(f"no complete price for {name} in {region}")
                continue
            offers.append(Offer(
                provider="gcp", instance_type=name, region=region, gpu=m["gpu"].id,
                gpu_count=m["count"], gpu_memory_gb=m["gpu"].memory_gb, vcpus=m["vcpus"],
                ram_gib=m["ram_gib"], disk_gb=None, price_usd_per_hour=on_demand,
                spot_price_usd_per_hour=self._price(prices, "spot", region, family, m),
                billing="hourly", fetched_at=fetched,
                source="gcp: compute machineTypes/acceleratorTypes, cloudbilling skus",
                availability=f"zones: {', '.join(sorted(m['zones']))}",
                provider_data=gcp_provider_data(
                    name, m.get("machine_type"), m["count"], m["zones"]
                ),
            ))  # fmt: skip
        return offers

    def _machine_types(self, query: OfferQuery) -> dict[tuple[str, str], dict[str, Any]]:
        from google.cloud import compute_v1

        client = compute_v1.MachineTypesClient(**self._options())
        machines: dict[tuple[str, str], dict[str, Any]] = {}
        n1: dict[tuple[str, str], dict[str, Any]] = {}
        for scope, listing in client.aggregated_list(request={"project": self.project}):
            zone = scope.rsplit("/", 1)[-1]
            region = zone.rsplit("-", 1)[0]
            if query.regions and region not in query.regions:
                continue
            for mt in listing.machine_types:
                base = {"vcpus": mt.guest_cpus, "ram_gib": round(mt.memory_mb / 1024, 2)}
                if mt.accelerators:
                    acc = mt.accelerators[0]
                    gpu = self.resolve_gpu(acc.guest_accelerator_type)
                    if gpu is None:
                        continue
                    entry = machines.setdefault(
                        (region, mt.name),
                        {**base, "gpu": gpu, "count": acc.guest_accelerator_count, "zones": set()},
                    )
                    entry["zones"].add(zone)
                elif mt.name.startswith("n1-standard-"):
                    n1.setdefault((region, mt.name), {**base, "zones": set()})["zones"].add(zone)
        accelerators = self._attachable(query)
        for (region, gpu_id), zones in accelerators.items():
            for count in ATTACHABLE[gpu_id]:
                host = n1.get((region, f"n1-standard-{4 * count}"))
                if host is None or not zones & host["zones"]:
                    continue
                from planner.offers.gpus import gpu_table

                name = f"n1-standard-{4 * count}+{count}x{gpu_id}"
                machines[(region, name)] = {
                    **host,
                    "machine_type": f"n1-standard-{4 * count}",
                    "gpu": gpu_table()[gpu_id],
                    "count": count,
                    "zones": zones & host["zones"],
                }
        return machines

    def _attachable(self, query: OfferQuery) -> dict[tuple[str, str], set[str]]:
        from google.cloud import compute_v1

        client = compute_v1.AcceleratorTypesClient(**self._options())
        found: dict[tuple[str, str], set[str]] = defaultdict(set)
        for scope, listing in client.aggregated_list(request={"project": self.project}):
            zone = scope.rsplit("/", 1)[-1]
            region = zone.rsplit("-", 1)[0]
            if query.regions and region not in query.regions:
                continue
            for acc in listing.accelerator_types:
                gpu = self.resolve_gpu(acc.name)
                if gpu is not None and gpu.id in ATTACHABLE:
                    found[(region, gpu.id)].add(zone)
        return found

    def _sku_prices(self) -> dict[tuple[str, str, str], float]:
        """{(ondemand|spot, region, component)}: component is a canonical GPU id or
        '<family>:core' / '<family>:ram'."""
        from google.cloud import billing_v1

        client = billing_v1.CloudCatalogClient(**self._options())
        prices: dict[tuple[str, str, str], float] = {}
        for sku in client.list_skus(parent=COMPUTE_ENGINE_SERVICE):
            desc = sku.description
            low = desc.lower()
            if any(s in low for s in SKIP_SKU) or not sku.pricing_info:
                continue
            # Spot SKUs say so in the description even where usageType is wrong (SkyPilot note).
            kind = (
                "spot"
                if low.startswith("spot preemptible")
                else ("ondemand" if sku.category.usage_type == "OnDemand" else None)
            )
            if kind is None:
                continue
            gpu_match, vm_match = GPU_SKU.match(desc), VM_SKU.match(desc)
            if gpu_match:
                gpu = self.resolve_gpu(gpu_match.group(1))
                if gpu is None:
                    continue
                component = gpu.id
            elif vm_match:
                component = f"{vm_match.group(1).lower()}:{vm_match.group(2).lower()}"
            else:
                continue
            for region in sku.service_regions:
                prices[(kind, region, component)] = sku_price(sku)
        return prices

    @staticmethod
    def _price(
        prices: dict[tuple[str, str, str], float],
        kind: str,
        region: str,
        family: str,
        m: dict[str, Any],
    ) -> float | None:
        core = prices.get((kind, region, f"{family}:core"))
        ram = prices.get((kind, region, f"{family}:ram"))
        gpu = prices.get((kind, region, m["gpu"].id))
        if core is None or ram is None or gpu is None:
            return None
        return round(m["vcpus"] * core + m["ram_gib"] * ram + m["count"] * gpu, 5)
