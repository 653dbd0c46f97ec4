"""The clouds gpuhunt prices without credentials (a table only: `recommend` and the provider
list read it without importing the gpuhunt provider, planner/offers/providers/_gpuhunt.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CatalogCloud:
    """A cloud gpuhunt covers without credentials: its gpuhunt name and how it is read."""

    gpuhunt_name: str
    online: bool  # queried live (a marketplace) rather than read from a published catalog
    title: str


# gpuplan name -> how gpuhunt names it. gpuhunt's other online providers need an account's API
# key (Crusoe, DigitalOcean, Hot Aisle, JarvisLabs, Seeweb, ...) and are left out; a test checks
# this table against gpuhunt's own provider lists.
CATALOG_CLOUDS: dict[str, CatalogCloud] = {
    "aws": CatalogCloud("aws", False, "AWS"),
    "azure": CatalogCloud("azure", False, "Azure"),
    "cloudrift": CatalogCloud("cloudrift", False, "CloudRift"),
    "gcp": CatalogCloud("gcp", False, "Google Cloud"),
    "lambda": CatalogCloud("lambdalabs", False, "Lambda"),
    "nebius": CatalogCloud("nebius", False, "Nebius"),
    "oci": CatalogCloud("oci", False, "Oracle Cloud"),
    "runpod": CatalogCloud("runpod", False, "RunPod"),
    "vast": CatalogCloud("vastai", True, "Vast.ai"),
    "verda": CatalogCloud("verda", False, "Verda (DataCrunch)"),
}
