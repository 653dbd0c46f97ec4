"""Prices without credentials: dstack's gpuhunt (https://github.com/dstackai/gpuhunt).

gpuhunt publishes one catalog per cloud (AWS, GCP, Azure, OCI, Lambda, Nebius, RunPod, Verda,
CloudRift), collected by its CI and public on S3: ``{GPUHUNT_CATALOG_URL}/{cloud}/version``
names the latest build (``YYYYMMDD-<run>``) and ``{url}/{cloud}/{version}/catalog.zip`` holds
``{cloud}.csv``. It also queries marketplaces live (Vast.ai's public offer search). Every region,
on-demand and spot. ``GPUHUNT_CATALOG_URL`` (read by gpuhunt itself) points it at a mirror.

gpuhunt is imported only here and only inside functions: ``recommend`` on the embedded catalog
never imports it. Prices are dated by the catalog's build date, never by when gpuplan read it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from planner.errors import ProviderError, UsageError, redact
from planner.offers.gpus import canonical_gpu
from planner.offers.offer import Offer
from planner.offers.providers._clouds import CATALOG_CLOUDS, CatalogCloud
from planner.offers.providers._http import ATTEMPTS, RETRY_STATUSES, backoff_pause

GPU_VENDORS = ("nvidia", "amd")
DEFAULT_CATALOG_URL = "https://dstack-gpu-pricing.s3.eu-west-1.amazonaws.com/v3"
VAST_BUNDLES_URL = "https://console.vast.ai/api/v0/bundles/"
VAST_LIMIT = 3000  # offers per live query, as gpuhunt itself asks when it cannot filter by GPU
# gpuhunt's downloads (urllib) have no timeout of their own; a hung mirror must not hang refresh.
DOWNLOAD_TIMEOUT_S = 60.0
_VERSION_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})\b")
# gpuhunt tries each download and the live query once; they are tried again as the direct
# providers' calls are (_http: ATTEMPTS, backoff_pause).


def catalog_base_url() -> str:
    return os.environ.get("GPUHUNT_CATALOG_URL", DEFAULT_CATALOG_URL).rstrip("/")


def version_date(version: str) -> str | None:
    """'20261130-1234' -> '2026-11-30' (gpuhunt's CI names each build by its UTC date)."""
    m = _VERSION_DATE.match(version.strip())
    if not m:
        return None
    try:
        return datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC).date().isoformat()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CatalogAnswer:
    """One cloud's offers from gpuhunt, with where and when they were priced."""

    offers: list[Offer]
    source: str
    fetched_at: str
    warnings: list[str]


class _LogCapture(logging.Handler):
    """gpuhunt reports a provider's failed download through logging and carries on; this keeps
    the reason per provider so the summary can say why."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: dict[str, str] = {}
        self.transient = False  # a failure worth another attempt

    def emit(self, record: logging.LogRecord) -> None:
        if record.args and isinstance(record.args, tuple):
            exc = record.exc_info[1] if record.exc_info else None
            detail = f"{type(exc).__name__}: {exc}" if exc else record.getMessage()
            self.errors[str(record.args[0])] = detail[:200]
            self.transient = self.transient or _transient(exc)


def _transient(exc: BaseException | None) -> bool:
    """A timeout, a connection that failed or 429/5xx: worth another attempt (a 404 is not)."""
    import urllib.error

    import requests

    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in RETRY_STATUSES
    if isinstance(exc, requests.HTTPError):
        return exc.response is not None and exc.response.status_code in RETRY_STATUSES
    return isinstance(
        exc, urllib.error.URLError | requests.ConnectionError | requests.Timeout | TimeoutError
    )


def _quiet_gpuhunt() -> None:
    """gpuhunt logs skipped rows and offers as warnings; with no handler configured Python would
    print them to stderr. Nothing below the CLI prints: give its loggers a NullHandler."""
    log = logging.getLogger("gpuhunt")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())


class GpuhuntSource:
    """gpuhunt's published catalogs, downloaded once per refresh (thread-safe), and its live
    marketplace queries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._catalog: Any = None
        self._errors: dict[str, str] = {}
        self._load_error: str | None = None

    def _load(self) -> None:
        with self._lock:
            if self._catalog is not None or self._load_error is not None:
                return
            try:
                import gpuhunt
            except ImportError:
                self._load_error = "gpuhunt is not installed (pip install gpuhunt)"
                return
            _quiet_gpuhunt()
            catalog = gpuhunt.Catalog(balance_resources=False, auto_reload=False)
            log = logging.getLogger("gpuhunt._internal.catalog")
            propagate, log.propagate = log.propagate, False  # never print below the CLI
            previous_timeout = socket.getdefaulttimeout()
            if previous_timeout is None:
                socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
            try:
                # Loading again keeps what loaded and downloads what failed (gpuhunt's
                # Catalog.load keeps the catalogs it has, version by version).
                for attempt in range(ATTEMPTS):
                    if attempt:
                        backoff_pause(attempt)
                    capture = _LogCapture()
                    log.addHandler(capture)
                    try:
                        catalog.load()
                        self._load_error = None
                    except Exception as exc:
                        self._load_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                    finally:
                        log.removeHandler(capture)
                    if not capture.transient:
                        break
            finally:
                socket.setdefaulttimeout(previous_timeout)
                log.propagate = propagate
            self._catalog = catalog
            self._errors = capture.errors

    def offers(self, cloud: str, regions: tuple[str, ...] | None = None) -> CatalogAnswer:
        """The cloud's GPU offers; raise ProviderError when gpuhunt could not read them."""
        spec = CATALOG_CLOUDS.get(cloud)
        if spec is None:
            raise ProviderError(f"{cloud}: no public catalog covers it")
        if spec.online:
            return self._online(cloud, spec, regions)
        self._load()
        name = spec.gpuhunt_name
        loaded = self._catalog.catalog.get(name) if self._catalog is not None else None
        if loaded is None:
            why = self._errors.get(name) or self._load_error or "not in the catalog"
            raise ProviderError(
                redact(f"{cloud}: gpuhunt catalog {catalog_base_url()}/{name} failed: {why}"),
                "check the network or GPUHUNT_CATALOG_URL; the cached offers are unchanged",
            )
        warnings: list[str] = []
        fetched = version_date(loaded.version)
        if fetched is None:
            fetched = datetime.now(UTC).isoformat(timespec="seconds")
            warnings.append(f"catalog version {loaded.version!r} carries no date; dated now")
        # a mirror's credentials (https://user:token@mirror/v3) never reach the cache or a log
        source = redact(f"{catalog_base_url()}/{name}/{loaded.version}/catalog.zip (gpuhunt)")
        offers, notes = convert_items(cloud, loaded.items, source, fetched, regions)
        return CatalogAnswer(offers, source, fetched, warnings + notes)

    def _online(
        self, cloud: str, spec: CatalogCloud, regions: tuple[str, ...] | None
    ) -> CatalogAnswer:
        try:
            import gpuhunt
            from gpuhunt.providers import vastai
        except ImportError:
            raise ProviderError(
                f"{cloud}: gpuhunt is not installed", "pip install gpuhunt"
            ) from None
        _quiet_gpuhunt()
        # GPUPLAN_VAST_URL points the live query at another server, as for the direct provider.
        base = os.environ.get(f"GPUPLAN_{cloud.upper()}_URL")
        url = f"{base.rstrip('/')}/api/v0/bundles/" if base else VAST_BUNDLES_URL
        vastai.bundles_url = url

        class WholeMarket(vastai.VastAIProvider):
            """gpuhunt asks for Vast's default page of offers; gpuplan wants the market."""

            def make_filters(self, q: Any) -> dict[str, Any]:
                filters = super().make_filters(q)
                filters["limit"] = VAST_LIMIT
                return filters

        provider = WholeMarket(
            extra_filters={"verified": {"eq": True}, "reliability2": {"gte": 0.95}}
        )
        fetched = datetime.now(UTC).isoformat(timespec="seconds")
        items: list[Any] = []
        for attempt in range(ATTEMPTS):
            if attempt:
                backoff_pause(attempt)
            try:
                items = provider.get(gpuhunt.QueryFilter(min_gpu_count=1), balance_resources=False)
                break
            except Exception as exc:
                if _transient(exc) and attempt + 1 < ATTEMPTS:
                    continue
                tries = f" after {attempt + 1} attempts" if attempt else ""
                message = f"{cloud}: live query {url} failed{tries}: {type(exc).__name__}: {exc}"
                hint = "the source may be down or rate-limiting; try again later"
                raise ProviderError(redact(message)[:400], hint if tries else None) from None
        source = redact(f"{url} (live, via gpuhunt)")
        offers, notes = convert_items(cloud, items, source, fetched, regions)
        return CatalogAnswer(offers, source, fetched, notes)


# ------------------------------------------------------------------ conversion (pure)
def _where(cloud: str, location: str) -> tuple[str, str | None, str | None, str | None]:
    """(region, zone, tier, location) from a gpuhunt location, per cloud."""
    if cloud == "gcp" and re.fullmatch(r"[a-z]+-[a-z]+\d+-[a-z]", location):
        return location.rsplit("-", 1)[0], location, None, None
    if cloud == "runpod":
        # gpuhunt lists Secure Cloud offers by data center id ("EU-RO-1") and Community Cloud
        # offers by country code ("US") (gpuhunt/providers/runpod.py, _make_offers).
        if re.fullmatch(r"[A-Za-z]{2}", location):
            return location.upper(), None, "community", None
        return location, None, "secure", None
    if cloud == "vast":
        # gpuhunt writes "<country>-<city>" lower-cased ("de-hamburg") or a bare country.
        country, _, city = location.partition("-")
        return (country.upper() or "unknown"), None, None, (city or None)
    return location, None, None, None


def _ram_gib(cloud: str, memory: Any) -> float | None:
    """A catalog item's RAM in GiB. gpuhunt's Vast search gives it in decimal GB (the offer's
    cpu_ram in MB / 1000), which the direct Vast provider turns into GiB: the same here, so an
    offer's RAM does not depend on whether a Vast key was set."""
    if not memory:
        return None
    return round(float(memory) * 1e9 / 2**30, 1) if cloud == "vast" else float(memory)


def convert_items(
    cloud: str,
    items: Iterable[Any],
    source: str,
    fetched_at: str,
    regions: tuple[str, ...] | None = None,
) -> tuple[list[Offer], list[str]]:
    """gpuhunt CatalogItems -> Offers: on-demand and spot rows of one machine joined into one
    offer, GCP zones of one region joined (``provider_data["zones"]``), GPUs canonicalised.
    Skips, and counts in the returned warnings: CPU-only rows, flagged rows (gpuhunt hides
    them from clients that do not ask), calendar-mode reservations, unknown GPUs, and spot-only
    machines (an Offer needs an on-demand price)."""
    wanted = {r.lower() for r in regions} if regions else None
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    unknown: set[str] = set()
    skipped = accelerators = 0
    for item in items:
        if not item.gpu_count or not item.gpu_name or item.flags:
            continue
        if (item.provider_data or {}).get("is_dws_calendar_mode"):
            continue
        vendor = str(getattr(item.gpu_vendor, "value", item.gpu_vendor) or "nvidia").lower()
        if vendor not in GPU_VENDORS:  # TPUs, Gaudi, Tenstorrent: gpuplan plans GPUs
            accelerators += 1
            continue
        region, zone, tier, place = _where(cloud, str(item.location))
        if wanted is not None and region.lower() not in wanted:
            continue
        try:
            mib = item.gpu_memory * 1024 if item.gpu_memory else None
            gpu = canonical_gpu(str(item.gpu_name), mib)
        except UsageError:
            unknown.add(str(item.gpu_name))
            continue
        key = (item.instance_name, region, tier, gpu.id, item.gpu_count)
        g = groups.setdefault(
            key,
            {"item": item, "gpu": gpu, "zones": set(), "tier": tier, "place": place,
             "on_demand": None, "spot": None},
        )  # fmt: skip
        if zone:
            g["zones"].add(zone)
        kind = "spot" if item.spot else "on_demand"
        price = float(item.price)
        if price > 0 and (g[kind] is None or price < g[kind]):
            g[kind] = price
    offers = []
    for (instance, region, tier, _gpu, count), g in groups.items():
        if g["on_demand"] is None:
            skipped += 1
            continue
        item, gpu = g["item"], g["gpu"]
        data: dict[str, Any] = {}
        if g["zones"]:
            data["zones"] = sorted(g["zones"])
        if cloud == "runpod":
            data["gpu_type_id"] = str(instance)
            if tier == "secure":
                data["data_center_id"] = region
            instance = f"{count}x {instance}"
        if cloud == "vast":
            data.update(offer_id=str(instance), num_gpus=count)
            instance = f"{count}x {gpu.id} offer {instance}"
        offers.append(Offer(
            provider=cloud, instance_type=str(instance), region=region, gpu=gpu.id,
            gpu_count=int(count), gpu_memory_gb=gpu.memory_gb, vcpus=int(item.cpu or 0) or None,
            ram_gib=_ram_gib(cloud, item.memory),
            disk_gb=float(item.disk_size) if item.disk_size else None,
            price_usd_per_hour=round(g["on_demand"], 5),
            spot_price_usd_per_hour=round(g["spot"], 5) if g["spot"] is not None else None,
            billing="hourly", source=source, fetched_at=fetched_at, tier=tier,
            zone=data["zones"][0] if len(g["zones"]) == 1 else None, location=g["place"],
            provider_data=data,
        ))  # fmt: skip
    if cloud == "vast":
        offers = _cheapest_per_place(offers)
    notes = []
    if unknown:
        notes.append(f"skipped offers with GPUs not in the GPU table: {', '.join(sorted(unknown))}")
    if skipped:
        notes.append(f"skipped {skipped} spot-only machine(s) with no on-demand price")
    if accelerators:
        notes.append(f"skipped {accelerators} offers of non-GPU accelerators (TPU, Gaudi, ...)")
    return offers, notes


def _cheapest_per_place(offers: list[Offer]) -> list[Offer]:
    """A marketplace lists thousands of ephemeral machines: keep the cheapest per GPU, count and
    country (its id is shown, never pinned)."""
    best: dict[tuple[str, int, str], Offer] = {}
    for o in offers:
        key = (o.gpu, o.gpu_count, o.region)
        if key not in best or o.price_usd_per_hour < best[key].price_usd_per_hour:
            best[key] = o
    return list(best.values())
