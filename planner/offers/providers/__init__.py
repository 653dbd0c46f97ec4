"""The provider contract and the registry of providers.

A provider is one module in this package that defines a ``Provider`` subclass decorated with
``@register``; ``provider_classes()`` discovers the modules, so adding a cloud is one module
(plus its template folder and tests) and no list elsewhere. Modules whose name starts with an
underscore are helpers, not providers. Providers never print; they raise ProviderError (or
MissingCredentials) and may leave warnings (skipped offers) in ``self.warnings``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from planner.errors import ProviderError, UsageError, did_you_mean
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
        return given or os.environ.get(f"GPUPLAN_{cls.name.upper()}_URL") or cls.default_base_url


P = TypeVar("P", bound=type[Provider])
_REGISTRY: dict[str, type[Provider]] = {}


def register(cls: P) -> P:
    _REGISTRY[cls.name] = cls
    return cls


def provider_classes() -> dict[str, type[Provider]]:
    """All providers, discovered from this package's modules (imported lazily: provider modules
    import their SDKs only inside methods)."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    return dict(sorted(_REGISTRY.items()))


def provider_names() -> list[str]:
    return list(provider_classes())


def parse_provider_list(value: str | None) -> list[str]:
    """'aws,gcp' -> ['aws', 'gcp'], rejecting unknown names with a suggestion."""
    known = provider_names()
    if not value:
        return known
    names = [v.strip().lower() for v in value.split(",") if v.strip()]
    for n in names:
        if n not in known:
            raise UsageError(
                f"unknown provider '{n}'",
                (did_you_mean(n, known) or "") + f" known: {', '.join(known)}",
            )
    return names


def utc_now_iso() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")
