"""Price sources per cloud: direct providers (one module each, the contract in ``base.py``) and
the clouds that gpuhunt's public catalogs carry (``_gpuhunt.py``).

``provider_names()`` lists the direct providers (each has an infrastructure target);
``cloud_names()`` lists every cloud gpuplan can price, including those known only through the
public catalogs (Azure, OCI, Lambda, ...), which ``recommend`` ranks too.
"""

from __future__ import annotations

import importlib
import pkgutil

from planner.errors import UsageError, did_you_mean
from planner.offers.providers.base import (
    _REGISTRY,
    MissingCredentials,
    OfferQuery,
    Provider,
    register,
    utc_now_iso,
)

__all__ = [
    "MissingCredentials",
    "OfferQuery",
    "Provider",
    "cloud_names",
    "parse_provider_list",
    "provider_classes",
    "provider_names",
    "register",
    "utc_now_iso",
]


def provider_classes() -> dict[str, type[Provider]]:
    """All direct providers, discovered from this package's modules (imported lazily: provider
    modules import their SDKs only inside methods)."""
    for name in _provider_modules():
        importlib.import_module(f"{__name__}.{name}")
    return dict(sorted(_REGISTRY.items()))


def provider_names() -> list[str]:
    """The clouds with a direct provider module (and an infrastructure target): the modules'
    names, which the contract makes the providers' names, read without importing them (a
    ranking needs the names, not the providers)."""
    return sorted(_provider_modules())


def _provider_modules() -> list[str]:
    return [
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_") and m.name != "base"
    ]


def cloud_names() -> list[str]:
    """Every cloud gpuplan can price: direct providers plus the public catalogs' clouds."""
    from planner.offers.providers._clouds import CATALOG_CLOUDS

    return sorted(set(provider_names()) | set(CATALOG_CLOUDS))


def parse_provider_list(value: str | None) -> list[str]:
    """'aws,azure' -> ['aws', 'azure'] (default: every cloud), rejecting unknown names with a
    suggestion."""
    known = cloud_names()
    if not value:
        return known
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in known:
            raise UsageError(
                f"unknown provider '{n}'",
                " ".join(x for x in (did_you_mean(n, known), f"known: {', '.join(known)}") if x),
            )
    return list(dict.fromkeys(names))  # once each: a cloud named twice is refreshed once
