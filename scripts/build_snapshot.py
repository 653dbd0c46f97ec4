"""Build planner/offers/data/offers_snapshot.json from shared/reference/prices.json.

Run from the project root: python scripts/build_snapshot.py [path/to/prices.json]

Every offer gets short, clean structured fields (region, tier, location, provider_data) and a
source that is a followable public URL with the date it was read ("<url> read YYYY-MM-DD",
several joined by " ; "). Rows listing several locations become one offer per location. Rows
whose GPU is not in the GPU table, and rows the reference flags as suspect, are left out and
listed in the snapshot's "excluded" section with the reason.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.offers.gpus import gpu_table  # noqa: E402
from planner.offers.offer import HOURS_PER_MONTH, spot_zone_data  # noqa: E402
from planner.offers.providers.hetzner import LOCATIONS as HETZNER_LOCATIONS  # noqa: E402

# Undated SkyPilot-catalog rows: prices.md dates the content "2026, <= 2026-10"; the RunPod rows
# match the pricing page quoted on 2026-10-08, so that is the latest date the rows can claim.
UNDATED_AS_OF = "2026-10-08"
EUR_USD = 1.1637  # ECB reference rate 2026-05-27, as in prices.json's derived fields
SECOND_HAND = "price as quoted from this page by a third-party note; not read by gpuplan itself"
MEDIAN = "marketplace median over the listed hosts: a live offer may cost more or less"


# ------------------------------------------------------------------ sources
def _github_url(token: str) -> str:
    """'github:owner/repo/path@sha' -> the followable blob URL."""
    body, _, sha = token.removeprefix("github:").partition("@")
    owner, repo, path = body.split("/", 2)
    return f"https://github.com/{owner}/{repo}/blob/{sha}/{path}"


def clean_source(raw: str, read_on: str) -> str:
    """Every URL the reference cites for a row, each with the date it was read."""
    urls = []
    for token in re.findall(r"github:[\w.-]+/[\w.-]+/[^\s@]+@[0-9a-f]+|https?://[^\s,;()]+", raw):
        url = _github_url(token) if token.startswith("github:") else token.rstrip(".")
        if url not in urls:
            urls.append(url)
    if not urls:
        raise ValueError(f"no followable URL in source {raw!r}")
    return " ; ".join(f"{u} read {read_on}" for u in urls[:2])


def _primary(raw: str) -> str:
    """For second-hand rows: the page the note quotes (the last part names the primary page;
    corroborating repositories follow a ';')."""
    quoted = raw.split(" ; ")[0]
    return quoted[quoted.find("quoting") :] if "quoting" in quoted else quoted


# ------------------------------------------------------------------ places
def vast_places(cell: str) -> list[tuple[str, str]]:
    """'Germany, DE, EU | Washington, US, NA (note)' -> [('DE', 'Germany, DE'), ('US', ...)],
    one entry per country (a bucket's median is the same wherever its hosts are)."""
    out: dict[str, str] = {}
    for part in re.sub(r"\([^)]*\)", "", cell).split("|"):
        fields = [f.strip() for f in part.split(",")]
        if len(fields) < 2:
            continue
        place, country = fields[0], fields[1].upper()
        out.setdefault(country, f"{place}, {country}" if place else country)
    return list(out.items())


def hetzner_places(cell: str) -> list[str]:
    """'FSN1 / HEL1 / NBG1' or 'HEL1 (Helsinki)' -> ['FSN1', 'HEL1', 'NBG1']."""
    return re.findall(r"\b[A-Z]{3}\d\b", cell)


def places(row: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict of structured location fields per place the row stands for."""
    provider, cell = row["provider"], row["region"]
    if provider == "vast":
        if "marketplace" in cell:
            return [{"region": "global", "location": None}]
        return [{"region": code, "location": name} for code, name in vast_places(cell)]
    if provider == "hetzner":
        return [
            {"region": loc, "location": HETZNER_LOCATIONS.get(loc), "hetzner": loc}
            for loc in hetzner_places(cell)
        ]
    if provider == "runpod":
        # RunPod prices a GPU type alike in every data center of a tier.
        return [{"region": "global", "location": None}]
    return [{"region": cell, "location": None}]


def provider_data(row: dict[str, Any], where: dict[str, Any]) -> dict[str, Any]:
    """What infrastructure code needs to order the offer."""
    provider, itype = row["provider"], row["instance_type"]
    if provider == "gcp":
        attached = re.fullmatch(r"(n1-[a-z0-9-]+)\+(\d+)x.+", itype)
        if attached:
            return {"machine_type": attached[1], "accelerator_count": int(attached[2])}
        return {"machine_type": itype, "accelerator_count": 0}
    if provider == "runpod":
        return {"cloud_type": (row.get("tier") or "secure").upper()}
    if provider == "hetzner":
        return {"product_id": itype, "location": where["hetzner"]}
    if provider == "vast":
        data: dict[str, Any] = {"num_gpus": row["gpu_count"]}
        # Vast names the RTX PRO 6000's editions apart; the GPU table does not, and the Vast
        # target orders the Server Edition (infra/versions.py VAST_GPU_NAMES) unless the offer
        # names another: a Workstation row keeps the edition it was priced for.
        if row["gpu_spec_id"] == "rtx-pro-6000-blackwell" and "Workstation" in itype:
            data["gpu_name"] = "RTX PRO 6000 WS"
        if "marketplace_median" in (row.get("flags") or []):
            data["price_kind"] = "marketplace_median"
        return data
    if provider == "aws":  # spot prices by zone ID (use1-az1: the same in every account)
        return spot_zone_data(row.get("spot_by_az") or {})
    return {}


# ------------------------------------------------------------------ rows
def notes_for(row: dict[str, Any]) -> list[str]:
    notes = []
    flags = row.get("flags") or []
    if row.get("source_date") is None:
        notes.append(f"undated catalog row; content no later than {UNDATED_AS_OF}")
    if row.get("confidence") and row["confidence"] != "high":
        notes.append(f"confidence: {row['confidence']}")
    if "secondary_source" in flags:
        notes.append(SECOND_HAND)
    if "marketplace_median" in flags:
        stats = row.get("market_stats") or {}
        count = f" of {stats['offers']} offers" if stats.get("offers") else ""
        notes.append(MEDIAN.replace("median", f"median{count}", 1))
    if "discontinued" in flags:
        notes.append("discontinued: no longer orderable; last price found")
    return notes


def convert(row: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    if row.get("gpu_spec_id") not in gpu_table():
        return [], f"GPU '{row['gpu_name']}' is not in the GPU table"
    if "suspect_gpu_row" in (row.get("flags") or []):
        return [], "the reference flags the GPU price row as suspect (prices.md caveats)"
    gpu = gpu_table()[row["gpu_spec_id"]]
    read_on = row.get("source_date") or row.get("retrieved") or UNDATED_AS_OF
    raw = row["source"]
    second_hand = "secondary_source" in (row.get("flags") or [])
    source = clean_source(_primary(raw) if second_hand else raw, read_on)
    if row["provider"] == "hetzner":
        # A note citing ".../gex44/, /gex130/, /gex131/": name the row's own product page.
        own = f"dedicated-rootserver/{row['instance_type'].lower()}/"
        source = re.sub(r"dedicated-rootserver/gex\d+/", own, source)
    notes = notes_for(row)
    base: dict[str, Any] = {
        "provider": row["provider"],
        "instance_type": re.sub(r"\s*\([^)]*\)", "", row["instance_type"]).strip(),
        "gpu": gpu.id, "gpu_count": row["gpu_count"], "gpu_memory_gb": gpu.memory_gb,
        "vcpus": row.get("vcpus"), "ram_gib": row.get("memory_gib"), "disk_gb": None,
        "price_usd_per_hour": row["price_usd_per_hour"],
        "spot_price_usd_per_hour": row.get("spot_price_usd_per_hour"),
        "billing": row["billing"], "source": source,
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
        base.update(
            monthly_price_usd=monthly,
            setup_fee_usd=setup or 0.0,
            price_usd_per_hour=round(monthly / HOURS_PER_MONTH, 4),
        )
        notes.append(
            "dedicated server: monthly rental, one-off setup fee, EUR prices excl. VAT "
            f"converted at {EUR_USD} where no USD list price was stated"
        )
    offers = []
    for where in places(row):
        offer = {**base, "region": where["region"], "zone": None, "location": where["location"]}
        offer["provider_data"] = provider_data(row, where)
        offer["notes"] = notes
        offers.append(offer)
    if not offers:
        return [], f"no location could be read from {row['region']!r}"
    return offers, None


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/reference/prices.json"
    rows = json.loads(src.read_text())
    offers: list[dict[str, Any]] = []
    excluded = []
    for row in rows:
        converted, reason = convert(row)
        offers += converted
        if reason:
            excluded.append(
                {
                    "provider": row["provider"],
                    "instance_type": row["instance_type"],
                    "regions": [p["region"] for p in places(row)],
                    "reason": reason,
                }
            )
    keys = [(o["provider"], o["instance_type"], o["region"], o["tier"]) for o in offers]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise SystemExit(f"duplicate offers after cleaning: {sorted(duplicates)[:5]}")
    doc = {
        "schema": "gpuplan.offers/1",
        "about": "Embedded offer snapshot, built by scripts/build_snapshot.py from "
        "the project's price reference sheet (assembled 2026-11-22 from public sources, each "
        "offer naming its page and date: "
        "SkyPilot catalogs, RunPod/Vast pricing quoted 2026-10-08, Hetzner pages; see "
        "its prices.md). Each offer names its source URLs and the date each was read. "
        "`gpuplan catalog refresh` replaces it with current prices (no credentials needed).",
        "offers": offers,
        "excluded": excluded,
    }
    out = ROOT / "planner/offers/data/offers_snapshot.json"
    out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"{len(offers)} offers written, {len(excluded)} excluded -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
