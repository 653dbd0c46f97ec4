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
from planner.offers.offer import HOURS_PER_MONTH, Offer
from planner.offers.providers.base import (
    MissingCredentials,
    OfferQuery,
    Provider,
    register,
    same_machine,
    utc_now_iso,
)

COMPUTE_ENGINE_SERVICE = "services/6F81-5844-456A"
# GPU SKUs are priced per GCE accelerator type, not per card: "Nvidia H100 80GB GPU" (a3-highgpu)
# and "Nvidia H100 80GB Mega GPU" (a3-megagpu) are the same card at different prices, so a
# price is keyed by the accelerator type the machine type names (guestAcceleratorType), never
# by the canonical GPU. Description -> accelerator type as gpuhunt maps it (dstackai/gpuhunt
# src/gpuhunt/providers/gcp.py, Prices.add_compute_sku, read in gpuhunt 0.1.34), with H200's
# SKU, which has no "Nvidia" prefix ("H200 141GB GPU", Cyclenerd google-cloud-pricing-cost-
# calculator build/mapping.csv as quoted by CloudPilot AI's instanceprice gpuSKUPrefixes).
GPU_SKU = re.compile(r"^(?:spot preemptible )?(.+?) gpu running in ", re.I)
SKU_ACCELERATORS = {
    "nvidia-tesla-a100-80gb": "nvidia-a100-80gb",
    "nvidia-h100-80gb-mega": "nvidia-h100-mega-80gb",
    "nvidia-h100-80gb-plus": "nvidia-h100-mega-80gb",
    "h200-141gb": "nvidia-h200-141gb",
}
RTX_PRO_6000_SKU = "rtx 6000 96gb"  # G4's GPU SKU says neither "Nvidia" nor "GPU" (gpuhunt)
VM_SKU = re.compile(
    r"^(?:spot preemptible )?(\w+) (?:predefined )?instance (core|ram) running in ", re.I
)
# Machine series whose core/RAM SKUs are not named after the series prefix: A3 Mega is billed as
# "A3Plus Instance Core/Ram" (gpuhunt: "A3Plus Instance" -> a3-megagpu), A3 Ultra as "A3Ultra
# Instance Core/Ram" (CloudPilot AI instanceprice machineNameFamilyPrefixOverrides).
SKU_FAMILIES = {"a3-megagpu": "a3plus", "a3-ultragpu": "a3ultra"}
# Machine types that come with local SSDs (A2 Ultra, A3 High and Mega: MachineType
# bundledLocalSsds.partitionCount) bill them beside cores, RAM and GPUs, 375 GiB a partition
# (cloud.google.com/compute/docs/disks/local-ssd, "fixed number of Local SSD disks"), at the
# "SSD backed Local Storage" SKU per GiB and month of 730 hours, as gpuhunt prices them
# (providers/gcp.py, Prices.add_storage_sku and local_ssd_sizes_gib).
LOCAL_SSD_GIB = 375
LOCAL_SSD_SKU = "ssd backed local storage"
SKIP_SKU = ("sole tenancy", "reserved", "premium", "custom", "commitment", "dws")
ATTACHABLE = {"t4": (1, 2, 4), "v100-sxm2-16gb": (1, 2, 4, 8)}


def sku_kind(low: str, usage_type: str) -> str | None:
    """ "spot", "ondemand" or None (neither: skipped) for a SKU's lower-cased description and
    usageType. Spot SKUs say so in the description even where usageType is wrong (SkyPilot
    note); a local SSD's "... attached to Spot Preemptible VMs" is Spot's, and the legacy
    "... attached to Preemptible VMs" neither (it would overwrite Spot's)."""
    if low.startswith(LOCAL_SSD_SKU):
        if "spot preemptible" in low:
            return "spot"
        if "preemptible" in low:
            return None
    elif low.startswith("spot preemptible"):
        return "spot"
    return "ondemand" if usage_type == "OnDemand" else None


def sku_accelerator(description: str) -> str | None:
    """The GCE accelerator type a GPU SKU prices ("Nvidia Tesla T4 GPU running in Americas" ->
    "nvidia-tesla-t4"), or None for a SKU that is not a GPU's."""
    if RTX_PRO_6000_SKU in description.lower():
        return "nvidia-rtx-pro-6000"
    match = GPU_SKU.match(description)
    if not match:
        return None
    name = match.group(1).replace(" ", "-").lower()
    return SKU_ACCELERATORS.get(name, name)


def sku_family(machine_type: str) -> str:
    """The core/RAM SKU family of a machine type: "g2-standard-4" -> "g2",
    "a3-megagpu-8g" -> "a3plus"."""
    for prefix, family in SKU_FAMILIES.items():
        if machine_type.startswith(prefix):
            return family
    return machine_type.split("-")[0].lower()


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
    @classmethod
    def sells_again(cls, saved: Offer, listed: Iterable[Offer]) -> bool:
        """The same machine in the same region under the other name it goes by (N1 hosts)."""
        return any(
            same_machine(saved, c)
            and c.region == saved.region
            and cls.listing_name(c.instance_type) == cls.listing_name(saved.instance_type)
            for c in listed
        )

    @staticmethod
    def listing_name(instance_type: str) -> str:
        """An N1 machine with attached GPUs without its host size, which the names differ in:
        n1-standard-8+2xt4 here, n1-standard-4+2xT4 in gpuhunt's catalog -> n1+2xt4."""
        return re.sub(r"^n1-standard-\d+\+", "n1+", instance_type).lower()

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
            family = sku_family(name)
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
                if mt.deprecated.state:  # DEPRECATED, OBSOLETE or DELETED in this zone: not
                    continue  # offered (gpuhunt skips DEPRECATED; the others cannot be created)
                base = {
                    "vcpus": mt.guest_cpus,
                    "ram_gib": round(mt.memory_mb / 1024, 2),
                    "local_ssd_gib": LOCAL_SSD_GIB * mt.bundled_local_ssds.partition_count,
                }
                if mt.accelerators:
                    acc = mt.accelerators[0]
                    gpu = self.resolve_gpu(acc.guest_accelerator_type)
                    if gpu is None:
                        continue
                    entry = machines.setdefault(
                        (region, mt.name),
                        {**base, "gpu": gpu, "accelerator": acc.guest_accelerator_type,
                         "count": acc.guest_accelerator_count, "zones": set()},
                    )  # fmt: skip
                    entry["zones"].add(zone)
                elif mt.name.startswith("n1-standard-"):
                    n1.setdefault((region, mt.name), {**base, "zones": set()})["zones"].add(zone)
        accelerators = self._attachable(query)
        for (region, gpu_id, accelerator), zones in accelerators.items():
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
                    "accelerator": accelerator,
                    "count": count,
                    "zones": zones & host["zones"],
                }
        return machines

    def _attachable(self, query: OfferQuery) -> dict[tuple[str, str, str], set[str]]:
        """{(region, canonical GPU, accelerator type): zones} of the GPUs N1 hosts attach."""
        from google.cloud import compute_v1

        client = compute_v1.AcceleratorTypesClient(**self._options())
        found: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        for scope, listing in client.aggregated_list(request={"project": self.project}):
            zone = scope.rsplit("/", 1)[-1]
            region = zone.rsplit("-", 1)[0]
            if query.regions and region not in query.regions:
                continue
            for acc in listing.accelerator_types:
                gpu = self.resolve_gpu(acc.name)
                if gpu is not None and gpu.id in ATTACHABLE:
                    found[(region, gpu.id, acc.name)].add(zone)
        return found

    def _sku_prices(self) -> dict[tuple[str, str, str], float]:
        """{(ondemand|spot, region, component)}: component is a GCE accelerator type
        ("nvidia-l4") or '<family>:core' / '<family>:ram'."""
        from google.cloud import billing_v1

        client = billing_v1.CloudCatalogClient(**self._options())
        prices: dict[tuple[str, str, str], float] = {}
        for sku in client.list_skus(parent=COMPUTE_ENGINE_SERVICE):
            desc = sku.description
            low = desc.lower()
            if any(s in low for s in SKIP_SKU) or not sku.pricing_info:
                continue
            kind = sku_kind(low, sku.category.usage_type)
            if kind is None:
                continue
            accelerator, vm_match = sku_accelerator(desc), VM_SKU.match(desc)
            if low.startswith(LOCAL_SSD_SKU):
                component = "local-ssd"  # per GiB and month
            elif accelerator:
                component = accelerator
            elif vm_match:
                component = f"{vm_match.group(1).lower()}:{vm_match.group(2).lower()}"
            else:
                continue
            price = sku_price(sku) / HOURS_PER_MONTH if component == "local-ssd" else sku_price(sku)
            for region in sku.service_regions:
                prices[(kind, region, component)] = price
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
        gpu = prices.get((kind, region, m["accelerator"]))
        ssd = prices.get((kind, region, "local-ssd")) if m["local_ssd_gib"] else 0.0
        if core is None or ram is None or gpu is None or ssd is None:
            return None
        vm = m["vcpus"] * core + m["ram_gib"] * ram + m["count"] * gpu
        return round(vm + m["local_ssd_gib"] * ssd, 5)
