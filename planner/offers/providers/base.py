"""The provider contract: what one cloud's live price source must do.

A *direct provider* is one module in this package (``aws.py``, ``gcp.py``, ...) defining a
``Provider`` subclass decorated with ``@register``. ``planner.offers.providers`` discovers the
modules, so adding a cloud is one module (plus its infrastructure target, template folder and
tests) and no list elsewhere. Modules whose name starts with an underscore are helpers.

The contract:

- ``name``: the module name, which is also the template folder and the ``Offer.provider``.
- ``credentials_hint``: what the user must set, shown when credentials are missing.
- ``from_env(base_url=None)``: build the provider from environment credentials; raise
  ``MissingCredentials`` (a ProviderError) when they are absent. ``base_url`` (or
  ``GPUPLAN_<NAME>_URL``) points it at another endpoint: tests use loopback fakes.
- ``list_offers(query)``: every GPU offer the provider sells now, with prices and the
  structured facts of ``Offer`` (region, zone, tier, location, ``provider_data`` with what
  infrastructure code needs to order it). Raise ``ProviderError`` on failure; never print;
  leave non-fatal oddities (skipped offers) in ``self.warnings``.

The catalog (``planner.offers.refresh``) calls providers in parallel: one provider failing never
sinks the others, a failed or empty answer never replaces cached data, and cache writes are
atomic. Clouds without a direct provider (or without credentials for it) are refreshed from
gpuhunt's public catalogs instead (``planner.offers.providers._gpuhunt``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from planner.errors import ProviderError, UsageError, redact, short
from planner.offers.gpus import GpuSpec, canonical_gpu
from planner.offers.offer import Offer


class MissingCredentials(ProviderError):
    """The provider's credentials are not set; the message names what to set."""


@dataclass(frozen=True, slots=True)
class OfferQuery:
    """What a refresh asks a provider for. ``regions`` None means the provider's defaults."""

    regions: tuple[str, ...] | None = None


class Provider(ABC):
    """One cloud. Subclasses set ``name`` (= module name = template folder) and
    ``credentials_hint`` (what the user must set), and implement the two methods below."""

    name: ClassVar[str]
    credentials_hint: ClassVar[str]
    default_base_url: ClassVar[str | None] = None
    # Shown as the source of a refresh; subclasses name their API.
    api_label: ClassVar[str] = "provider API"

    @staticmethod
    def sells_again(saved: Offer, listed: Iterable[Offer]) -> bool:
        """Whether the catalog still sells the offer a saved plan names when that very listing
        (instance type in region) is not in it. Not by default: elsewhere the instance type and
        region are what the project rents, so they must be listed as they are. Marketplaces
        and clouds whose listings are named otherwise say how they find it again."""
        return False

    def __init__(self) -> None:
        self.warnings: list[str] = []

    @classmethod
    @abstractmethod
    def from_env(cls, base_url: str | None = None) -> Provider:
        """Build the provider from environment credentials; raise MissingCredentials if absent.

        ``base_url`` (or ``GPUPLAN_<NAME>_URL``) points the provider at another endpoint, which is
        how tests reach local fake servers."""

    @abstractmethod
    def list_offers(self, query: OfferQuery) -> list[Offer]:
        """Every GPU offer the provider sells now, with prices; raise ProviderError on failure."""

    def resolve_gpu(self, name: str, memory_mib: float | None = None) -> GpuSpec | None:
        """The canonical GPU, or None (with a warning) when the name is not in the GPU table."""
        try:
            return canonical_gpu(name, memory_mib)
        except UsageError:
            note = f"skipped offers with an unknown GPU '{name}'"
            if note not in self.warnings:
                self.warnings.append(note)
            return None

    @classmethod
    def base_url(cls, given: str | None) -> str | None:
        return given or env_url(cls.name) or cls.default_base_url


def env_url(provider: str) -> str | None:
    """GPUPLAN_<PROVIDER>_URL (a mirror or a test server), checked: a mistyped one is the
    user's, not "the provider may be down" after three attempts."""
    variable = f"GPUPLAN_{provider.upper()}_URL"
    value = os.environ.get(variable)
    if not value:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise UsageError(
            f"{variable}={short(redact(value), 60)} is not an http(s) URL",
            "e.g. https://api.example.com (a mirror or a test server), or unset it",
        )
    return value


P = TypeVar("P", bound=type[Provider])
_REGISTRY: dict[str, type[Provider]] = {}


def register(cls: P) -> P:
    """Class decorator: make a Provider subclass discoverable under its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


def utc_now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def same_machine(a: Offer, b: Offer) -> bool:
    """The same GPUs: model, count and memory."""
    return (a.gpu, a.gpu_count, a.gpu_memory_gb) == (b.gpu, b.gpu_count, b.gpu_memory_gb)


def sold_anywhere(saved: Offer, listed: Iterable[Offer]) -> bool:
    """A marketplace's Provider.sells_again: listings and stock come and go between refreshes,
    so the saved offer is found again by the same machine sold anywhere."""
    return any(same_machine(saved, c) for c in listed)
