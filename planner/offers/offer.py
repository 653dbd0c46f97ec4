"""An offer: one rentable GPU configuration at one provider, priced at a date."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

HOURS_PER_MONTH = 730  # 8760 / 12: how monthly prices become hourly ones


ON_DEMAND_RULES = frozenset({"gcp"})  # the providers sold_on_demand has a rule for


def sold_on_demand(provider: str, instance_type: str) -> bool:
    """Whether the machine can be rented on demand at its listed price. GCP sells A4, A3 Ultra
    and A3 High with fewer than 8 GPUs through reservations, DWS flex-start or spot only;
    gpuhunt drops them from its on-demand catalog for this reason (GCPProvider.filter,
    github.com/dstackai/gpuhunt src/gpuhunt/providers/gcp.py), while GCP's price list and
    gpuplan's snapshot still list an on-demand price. Their spot price stays usable."""
    if provider not in ON_DEMAND_RULES:
        return True
    if instance_type.startswith(("a4-", "a4x-", "a3-ultragpu")):
        return False
    m = re.fullmatch(r"a3-highgpu-(\d+)g", instance_type)
    return not (m and int(m.group(1)) < 8)


@dataclass(frozen=True, slots=True)
class Offer:
    """One rentable configuration at one provider, as priced at ``fetched_at``.

    Hourly offers carry ``price_usd_per_hour``. Monthly rentals (Hetzner's GEX dedicated servers)
    carry ``monthly_price_usd`` and ``setup_fee_usd``; their ``price_usd_per_hour`` is the 24x7
    rate (monthly / 730 h) without the setup fee, and ``effective_usd_per_hour`` adds the fee
    spread over a stated horizon.

    Where the offer is: ``region`` is the short id the cloud uses for ordering ("us-east-1",
    "FSN1", "DE" for a marketplace country, "global" where the cloud prices all locations
    alike); ``zone`` a zone when the price is zone-specific; ``location`` a human place name.
    ``provider_data`` holds what infrastructure code needs to order exactly this offer (GCP
    zones, RunPod GPU type id, Hetzner product id and location, Vast search criteria): facts
    travel as fields, never inside display strings. ``source`` names where the price came from
    (a URL, an API, a catalog version) and ``fetched_at`` when it was read there.
    """

    provider: str
    instance_type: str
    region: str  # short and clean: no prose, no "|" lists
    gpu: str  # canonical id from planner.gpus
    gpu_count: int
    gpu_memory_gb: float  # per GPU, marketed decimal GB
    vcpus: int | None
    ram_gib: float | None
    disk_gb: float | None
    price_usd_per_hour: float
    spot_price_usd_per_hour: float | None
    billing: str  # "hourly" | "monthly"
    source: str
    fetched_at: str  # ISO 8601 date or UTC datetime
    monthly_price_usd: float | None = None
    setup_fee_usd: float | None = None
    availability: str | None = None
    tier: str | None = None  # RunPod secure / community
    notes: tuple[str, ...] = ()
    zone: str | None = None
    location: str | None = None
    # Plain JSON values only (it round-trips through the cache and plan files). Left out of the
    # hash so that an Offer stays hashable.
    provider_data: dict[str, Any] = field(default_factory=dict, hash=False)

    def effective_usd_per_hour(
        self, spot: bool = False, horizon_months: float = 1.0
    ) -> float | None:
        """$/h the user pays: spot if asked (None when the offer has none; on demand, None when
        the machine is not sold on demand); for monthly rentals the monthly price plus the setup
        fee spread over ``horizon_months`` of 24x7 use."""
        if spot:
            return self.spot_price_usd_per_hour
        if not sold_on_demand(self.provider, self.instance_type):
            return None
        if self.billing == "monthly" and self.monthly_price_usd is not None:
            return monthly_usd_per_hour(self.monthly_price_usd, self.setup_fee_usd, horizon_months)
        return self.price_usd_per_hour


def spot_zone_data(by_zone: dict[str, float]) -> dict[str, Any]:
    """An AWS offer's provider_data from its spot price by availability zone (AWS prices spot
    per zone): every zone's price, and the cheapest zone (ties to the first by name), whose
    price is the offer's and where the AWS target places a spot machine. Empty without zones."""
    if not by_zone:
        return {}
    zones = dict(sorted(by_zone.items()))
    return {"spot_zone": min(zones, key=zones.__getitem__), "spot_by_zone": zones}


def monthly_usd_per_hour(
    monthly_price_usd: float, setup_fee_usd: float | None, horizon_months: float
) -> float:
    """A monthly rental's $/h over ``horizon_months`` of 24x7 use: whole months billed (half a
    month pays for one, 1.5 for two) and the setup fee, over the hours used."""
    months = max(1, math.ceil(round(horizon_months, 6)))  # any horizon pays one month
    paid = months * monthly_price_usd + (setup_fee_usd or 0.0)
    return paid / (HOURS_PER_MONTH * horizon_months)
