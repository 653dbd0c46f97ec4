"""The GPU table, offers, catalog status and refresh outcomes, for people and for programs."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Any

from planner.offers.catalog import Catalog
from planner.offers.gpus import GpuSpec
from planner.offers.offer import Offer
from planner.offers.refresh import ProviderOutcome

OFFER_CSV_COLUMNS = (
    "provider", "instance_type", "region", "gpu", "gpu_count", "gpu_memory_gb", "vcpus",
    "ram_gib", "price_usd_per_hour", "spot_price_usd_per_hour", "billing", "monthly_price_usd",
    "setup_fee_usd", "ranked_price_usd_per_hour", "fetched_at", "age_days", "source",
)  # fmt: skip


def age_label(fetched_at: str | None) -> str:
    """'3d', '5h', or '53d STALE' past the staleness limit."""
    from planner.offers.catalog import STALE_AFTER_DAYS, age_days

    age = age_days(fetched_at)
    if age is None:
        return "unknown"
    label = f"{age:.0f}d" if age >= 1 else f"{age * 24:.0f}h"
    return label + (" STALE" if age > STALE_AFTER_DAYS else "")


def gpus_to_list(gpus: list[GpuSpec]) -> list[dict[str, Any]]:
    return [asdict(g) for g in gpus]


def gpus_table(gpus: list[GpuSpec]) -> Any:
    from rich.table import Table

    table = Table(title=f"{len(gpus)} GPUs", title_justify="left")
    for col in ("id", "memory GB", "bandwidth GB/s", "BF16 TFLOPS", "FP8 TFLOPS", "CC", "aliases"):
        table.add_column(col)
    for g in gpus:
        table.add_row(
            g.id,
            f"{g.memory_gb:g}",
            f"{g.memory_bandwidth_gb_s:g}",
            f"{g.bf16_tflops_dense or '-'}",
            f"{g.fp8_tflops_dense or '-'}",
            f"{g.compute_capability or '-'}",
            ", ".join(g.aliases),
        )
    return table


def offer_records(rows: list[tuple[Offer, float]]) -> list[dict[str, Any]]:
    from planner.offers.catalog import age_days, offer_to_dict

    return [
        {
            **offer_to_dict(o),
            "ranked_price_usd_per_hour": round(p, 4),
            "age_days": round(age_days(o.fetched_at) or 0, 1),
        }
        for o, p in rows
    ]


def offers_to_dict(rows: list[tuple[Offer, float]], spot: bool, horizon: float) -> dict[str, Any]:
    return {
        "schema": "gpuplan.offers-list/1",
        "spot": spot,
        "horizon_months": horizon,
        "offers": offer_records(rows),
    }


def offers_csv(rows: list[tuple[Offer, float]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=OFFER_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(offer_records(rows))
    return buf.getvalue()


def offers_table(rows: list[tuple[Offer, float]], spot: bool) -> Any:
    from rich.table import Table

    from planner.offers.catalog import source_label

    kind = "spot" if spot else "on-demand"
    table = Table(title=f"{len(rows)} offers, {kind} $/h ascending", title_justify="left")
    right = {"GPUs", "GB/GPU", "$/h", "$/GPU·h"}
    for col in ("provider", "instance", "region", "GPUs", "GB/GPU", "$/h", "$/GPU·h", "billing",
                "source", "price age"):  # fmt: skip
        table.add_column(col, justify="right" if col in right else "left")
    for o, price in rows:
        billing = o.billing
        if o.billing == "monthly":
            billing = f"${o.monthly_price_usd:,.0f}/mo + ${o.setup_fee_usd or 0:,.0f} setup"
        table.add_row(
            o.provider,
            o.instance_type,
            o.region[:28],
            f"{o.gpu_count}x {o.gpu}",
            f"{o.gpu_memory_gb:g}",
            f"{price:.3f}",
            f"{price / o.gpu_count:.3f}",
            billing,
            source_label(o),
            age_label(o.fetched_at),
        )
    return table


def catalog_to_dict(cat: Catalog) -> dict[str, Any]:
    return {
        "schema": "gpuplan.catalog-status/1",
        "providers": [asdict(s) for s in cat.sources.values()],
    }


def catalog_table(cat: Catalog) -> Any:
    from rich.table import Table

    table = Table(title="Offer catalog", title_justify="left")
    for col in ("provider", "from", "fetched at", "age", "offers", "source"):
        table.add_column(col)
    for s in cat.sources.values():
        age = age_label(s.fetched_at) if s.fetched_at else "-"
        source = (s.source or "-")[:70]
        if s.origin == "none":
            source = "no offers yet: `gpuplan catalog refresh`"
        table.add_row(s.provider, s.origin, s.fetched_at or "-", age, str(s.offers), source)
    return table


def refresh_lines(outcomes: list[ProviderOutcome]) -> list[str]:
    lines = []
    for o in outcomes:
        via = f"via {o.via}" if o.via else ""
        age = f"prices of {o.fetched_at[:10]} ({age_label(o.fetched_at)})" if o.fetched_at else ""
        line = f"{o.provider:10} {o.status:8} {o.offers:6d} offers {o.seconds:6.1f}s {via:12}"
        parts = [p for p in (age, o.source, o.message) if p]
        lines.append((line + "  " + "; ".join(parts)).rstrip())
        lines += [f"{'':8} warning: {w}" for w in o.warnings]
    return lines
