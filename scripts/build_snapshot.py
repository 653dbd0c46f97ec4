"""Build planner/offers/data/offers_snapshot.json from shared/reference/prices.json.

Run from the project root: python scripts/build_snapshot.py [path/to/prices.json]
Rows whose GPU is not in the GPU table, and rows the reference flags as suspect, are left out
and listed in the snapshot's "excluded" section with the reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.model.values import HOURS_PER_MONTH  # noqa: E402
from planner.offers.gpus import gpu_table  # noqa: E402

# Undated SkyPilot-catalog rows: prices.md dates the content "2026, <= 2026-10"; the RunPod rows
# match the pricing page quoted on 2026-10-08, so that is the latest date the rows can claim.
UNDATED_AS_OF = "2026-10-08"
EUR_USD = 1.1637  # ECB reference rate 2026-05-27, as in prices.json's derived fields


def convert(row: dict) -> tuple[dict | None, str | None]:
    if row.get("gpu_spec_id") not in gpu_table():
        return None, f"GPU '{row['gpu_name']}' is not in the GPU table"
    if "suspect_gpu_row" in (row.get("flags") or []):
        return None, "the reference flags the GPU price row as suspect (prices.md caveats)"
    gpu = gpu_table()[row["gpu_spec_id"]]
    notes = []
    if row.get("source_date") is None:
        notes.append(f"undated catalog row; content corroborated to {UNDATED_AS_OF} at the latest")
    if row.get("confidence") and row["confidence"] != "high":
        notes.append(f"confidence {row['confidence']}")
    notes += [
        f
        for f in (row.get("flags") or [])
        if f in {"marketplace_median", "discontinued", "secondary_source"}
    ]
    offer = {
        "provider": row["provider"], "instance_type": row["instance_type"],
        "region": row["region"], "gpu": gpu.id, "gpu_count": row["gpu_count"],
        "gpu_memory_gb": gpu.memory_gb, "vcpus": row.get("vcpus"),
        "ram_gib": row.get("memory_gib"), "disk_gb": None,
        "price_usd_per_hour": row["price_usd_per_hour"],
        "spot_price_usd_per_hour": row.get("spot_price_usd_per_hour"),
        "billing": row["billing"], "source": row["source"],
        "fetched_at": row.get("source_date") or UNDATED_AS_OF, "tier": row.get("tier"),
        "monthly_price_usd": None, "setup_fee_usd": None, "availability": None,
    }  # fmt: skip
    if row["billing"] == "monthly":
        m = row["monthly"]
        monthly = m.get("price_usd_per_month") or round(
            m["price_eur_per_month_excl_vat"] * EUR_USD, 2
        )
        setup = m.get("setup_fee_usd")
        if setup is None and m.get("setup_fee_eur") is not None:
            setup = round(m["setup_fee_eur"] * EUR_USD, 2)
        if setup is None:
            notes.append("setup fee not found in any source; counted as 0")
        offer.update(
            monthly_price_usd=monthly,
            setup_fee_usd=setup or 0.0,
            price_usd_per_hour=round(monthly / HOURS_PER_MONTH, 4),
        )
        notes.append(
            "dedicated server: monthly rental, one-off setup fee, EUR prices excl. VAT "
            f"converted at {EUR_USD} where no USD list price was stated"
        )
    offer["notes"] = notes
    return offer, None


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/reference/prices.json"
    rows = json.loads(src.read_text())
    offers, excluded = [], []
    for row in rows:
        offer, reason = convert(row)
        if offer:
            offers.append(offer)
        else:
            excluded.append(
                {
                    "provider": row["provider"],
                    "instance_type": row["instance_type"],
                    "region": row["region"],
                    "reason": reason,
                }
            )
    doc = {
        "schema": "gpuplan.offers/1",
        "about": "Embedded offer snapshot, built by scripts/build_snapshot.py from "
        "shared/reference/prices.json (assembled 2026-11-22 from public sources: "
        "SkyPilot catalogs, RunPod/Vast pricing quoted 2026-10-08, Hetzner notes; see "
        "its prices.md). Each offer keeps its source and date.",
        "offers": offers,
        "excluded": excluded,
    }
    out = ROOT / "planner/offers/data/offers_snapshot.json"
    out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"{len(offers)} offers written, {len(excluded)} excluded -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
