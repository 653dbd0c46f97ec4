"""Cache files in each format the reader accepts, and a way to spoil one offer in either."""

from __future__ import annotations

from typing import Any

from planner.offers.cache import _OFFER_COLUMNS, CACHE_SCHEMA, CACHE_SCHEMA_V2, offer_to_dict
from planner.offers.offer import Offer


def v2_doc(provider: str, offers: list[Offer], source: str = "test") -> dict[str, Any]:
    """A cache as gpuplan wrote it before v3: one row per offer under a column header."""
    rows = [[offer_to_dict(o)[c] for c in _OFFER_COLUMNS] for o in offers]
    return {"schema": CACHE_SCHEMA_V2, "provider": provider, "fetched_at": "2026-11-29",
            "source": source, "columns": list(_OFFER_COLUMNS), "rows": rows}  # fmt: skip


def set_offer_value(doc: dict[str, Any], index: int, column: str, value: Any) -> None:
    """Put ``value`` in ``column`` of offer ``index`` of a v2 or v3 document."""
    if doc["schema"] == CACHE_SCHEMA_V2:
        doc["rows"][index][doc["columns"].index(column)] = value
        return
    assert doc["schema"] == CACHE_SCHEMA
    if column in doc["constant"]:  # stored once: spell it out for every offer
        doc["columns"][column] = [doc["constant"].pop(column)] * doc["count"]
    doc["columns"][column][index] = value
