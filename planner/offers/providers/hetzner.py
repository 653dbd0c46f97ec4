"""Hetzner: GEX dedicated GPU servers from the Robot webservice's product list.

These are monthly rentals with a one-off setup fee (billed hourly up to the monthly cap; no
minimum term), priced in EUR. USD figures use GPUPLAN_EUR_USD, default 1.1637 (the ECB
reference rate of 2026-05-27, https://www.ecb.europa.eu/stats/policy_and_exchange_rates/
euro_reference_exchange_rates/html/eurofxref-graph-usd.en.html)."""

from __future__ import annotations

import os
import re
from typing import Any

from planner.errors import ProviderError
from planner.offers.offer import HOURS_PER_MONTH, Offer
from planner.offers.providers._http import JsonHttp, env_number
from planner.offers.providers.base import (
    MissingCredentials,
    OfferQuery,
    Provider,
    register,
    utc_now_iso,
)

MONTHLY_NOTE = "dedicated server: monthly rental, one-off setup fee, delivery not instant"
# Location ids -> the place: fsn1 Falkenstein, nbg1 Nuremberg, hel1 Helsinki (Hetzner's
# location list as documented at https://metacpan.org/pod/WWW::Hetzner::Cloud::API::Locations ,
# read 2026-11-30; Falkenstein and Nuremberg are in Germany, Helsinki in Finland).
LOCATIONS = {"FSN1": "Falkenstein, DE", "NBG1": "Nuremberg, DE", "HEL1": "Helsinki, FI"}
# Product id -> GPU where the description does not name a known card.
GEX_GPUS = {
    "GEX44": "rtx-4000-sff-ada",
    "GEX130": "rtx-6000-ada",
    "GEX131": "rtx-pro-6000-blackwell",
}


@register
class HetznerProvider(Provider):
    name = "hetzner"
    api_label = "Robot API (/order/server/product)"
    credentials_hint = "HETZNER_ROBOT_USER and HETZNER_ROBOT_PASSWORD (a Robot webservice user)"
    default_base_url = "https://robot-ws.your-server.de"

    def __init__(self, user: str, password: str, base_url: str, eur_usd: float) -> None:
        super().__init__()
        self.http = JsonHttp("hetzner", base_url, auth=(user, password))
        self.eur_usd = eur_usd

    @classmethod
    def from_env(cls, base_url: str | None = None) -> HetznerProvider:
        user, password = (
            os.environ.get("HETZNER_ROBOT_USER"),
            os.environ.get("HETZNER_ROBOT_PASSWORD"),
        )
        if not user or not password:
            raise MissingCredentials(f"hetzner: no Robot credentials; set {cls.credentials_hint}")
        rate = env_number("GPUPLAN_EUR_USD")
        return cls(user, password, cls.base_url(base_url) or "", rate)

    def list_offers(self, query: OfferQuery) -> list[Offer]:
        answer = self.http.request("GET", "/order/server/product")
        if not isinstance(answer, list):
            raise ProviderError("hetzner: /order/server/product did not return a list")
        fetched = utc_now_iso()
        offers = []
        for item in answer:
            product = item.get("product") if isinstance(item, dict) else None
            if not isinstance(product, dict) or not str(product.get("id", "")).upper().startswith(
                "GEX"
            ):
                continue
            offers += self._offers_for(product, query, fetched)
        return offers

    def _gpu(self, product: dict[str, Any]) -> str | None:
        """The GPU a GEX product carries: from its description line ("GPU - Nvidia RTX 4000 SFF
        Ada Generation"), else from the known product ids."""
        from planner.errors import UsageError
        from planner.offers.gpus import canonical_gpu

        for line in product.get("description") or []:
            match = re.match(r"\s*GPU\s*[-:]?\s*(.+)$", str(line), re.I)
            if match:
                try:
                    return canonical_gpu(match.group(1)).id
                except UsageError:
                    break
        gpu_id = GEX_GPUS.get(str(product["id"]).upper())
        if gpu_id is None:
            self.warnings.append(f"skipped {product['id']}: its GPU is not in the GPU table")
        return gpu_id

    def _offers_for(self, product: dict[str, Any], query: OfferQuery, fetched: str) -> list[Offer]:
        from planner.offers.gpus import gpu_table

        gpu_id = self._gpu(product)
        if gpu_id is None:
            return []
        gpu = gpu_table()[gpu_id]
        out = []
        for p in product.get("prices") or []:
            location = str(p.get("location", ""))
            if query.regions and location not in query.regions:
                continue
            try:
                monthly = float(p["price"]["net"]) * self.eur_usd
                setup = float((p.get("price_setup") or {}).get("net") or 0) * self.eur_usd
            except (KeyError, TypeError, ValueError):
                self.warnings.append(f"skipped {product['id']} in {location}: malformed price")
                continue
            out.append(Offer(
                provider="hetzner", instance_type=str(product["id"]), region=location,
                location=LOCATIONS.get(location.upper()),
                provider_data={"product_id": str(product["id"]), "location": location},
                gpu=gpu.id, gpu_count=1, gpu_memory_gb=gpu.memory_gb, vcpus=None, ram_gib=None,
                disk_gb=None, price_usd_per_hour=round(monthly / HOURS_PER_MONTH, 4),
                spot_price_usd_per_hour=None, billing="monthly",
                monthly_price_usd=round(monthly, 2), setup_fee_usd=round(setup, 2),
                source=f"hetzner: Robot /order/server/product (EUR net x {self.eur_usd})",
                fetched_at=fetched,
                notes=(MONTHLY_NOTE,),
            ))  # fmt: skip
        return out
