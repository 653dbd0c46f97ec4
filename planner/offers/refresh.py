"""Live refresh of the offer catalog into the user's cache, one cloud at a time, in parallel.

Each cloud is read from its direct provider when the user's credentials for it are set (account
prices and availability), else from gpuhunt's public catalogs (no credentials needed). Hetzner
has no public catalog and needs its Robot credentials. One cloud failing never sinks the
others; a failed or empty answer leaves that cloud's cache exactly as it was (age included); a
refresh limited to some regions replaces only those regions in the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from planner.errors import (
    LocalFileError,
    ProviderError,
    UsageError,
    local_file_error,
    redact,
    short,
)
from planner.offers.offer import Offer


@dataclass
class ProviderOutcome:
    """What refreshing one cloud did. ``via`` is "direct" (the cloud's own API with the user's
    credentials), "gpuhunt" (public catalog) or "" when nothing was read; ``source`` names the
    endpoint or catalog version and ``fetched_at`` the date the prices carry."""

    provider: str
    status: str  # "ok" | "skipped" | "failed"
    offers: int = 0
    seconds: float = 0.0
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    via: str = ""
    source: str = ""
    fetched_at: str | None = None
    local_fault: bool = False  # failed on this machine (the cache file), not at the provider


def merge_regions(
    cached: Sequence[Offer] | None, fresh: list[Offer], regions: tuple[str, ...] | None
) -> list[Offer]:
    """The cache after a refresh: everything fresh when all regions were asked for; otherwise
    the cached offers outside the refreshed regions (kept with their own dates) plus the fresh.

    The refreshed regions are those asked for and those the answer holds: a source may answer
    other names than the ones asked (RunPod's API prices every data center alike, as region
    "global"; Vast's search matches a region as a substring), and keeping the cached offers of
    a region the answer covers would list each of its offers twice, once at an old price."""
    if not regions or not cached:
        return list(fresh)
    replaced = {r.lower() for r in regions} | {o.region.lower() for o in fresh}
    return [o for o in cached if o.region.lower() not in replaced] + list(fresh)


def refresh(
    names: list[str],
    *,
    explicit: bool,
    regions: tuple[str, ...] | None = None,
    on_done: Callable[[ProviderOutcome], None] | None = None,
    on_start: Callable[[str], None] | None = None,
) -> list[ProviderOutcome]:
    """Fetch live offers for each cloud in parallel and cache each complete answer.

    Missing credentials switch a cloud to gpuhunt's public catalog when one covers it; a cloud
    no public catalog covers (Hetzner) is skipped with a warning unless the user named it
    (``explicit``), which makes it a failure. Outcomes come back in the order of ``names``.
    """
    from planner.offers.catalog import (
        READ_ERRORS,
        cache_locked,
        offer_problem,
        read_cache,
        write_cache,
    )
    from planner.offers.providers import MissingCredentials, OfferQuery, provider_classes
    from planner.offers.providers._gpuhunt import CATALOG_CLOUDS, GpuhuntSource
    from planner.offers.providers._http import ENV_NUMBERS, env_number
    from planner.offers.providers.base import env_url

    names = list(dict.fromkeys(names))  # two threads on one cache file would race
    if not names:
        raise UsageError("no provider to refresh")
    # a bad variable is the user's: said once, before any cloud is asked, not once per cloud
    for variable in ENV_NUMBERS:
        env_number(variable)
    for name in names:  # GPUPLAN_<CLOUD>_URL
        env_url(name)
    _check_cache_writable()
    classes = provider_classes()
    # Set on Ctrl-C: a call already in flight finishes in its thread, but nothing is written
    # after it (the cache stays as it was before the refresh).
    cancelled = threading.Event()
    query = OfferQuery(regions=regions)
    public = GpuhuntSource()  # shared: the published catalogs download once per refresh

    def fetch(name: str, outcome: ProviderOutcome) -> list[Offer]:
        cls = classes.get(name)
        no_credentials = ""
        if cls is not None:
            try:
                provider = cls.from_env()
            except MissingCredentials as exc:
                if name not in CATALOG_CLOUDS:
                    raise
                no_credentials = exc.message
            else:
                offers = provider.list_offers(query)
                outcome.warnings = list(provider.warnings)
                outcome.via, outcome.source = "direct", f"{name} {cls.api_label}"
                return offers
        try:
            answer = public.offers(name, regions)
        except ProviderError as exc:
            if no_credentials:  # say both: the direct API had no credentials, and why
                raise ProviderError(f"{exc.message} ({no_credentials})", exc.hint) from None
            raise
        outcome.via, outcome.source = "gpuhunt", answer.source
        outcome.warnings = list(answer.warnings)
        if no_credentials:
            outcome.warnings.insert(0, f"{no_credentials}; used the public catalog instead")
        return answer.offers

    def run(name: str) -> ProviderOutcome:
        if on_start:
            on_start(name)
        start = time.perf_counter()
        outcome = ProviderOutcome(name, "failed")
        try:
            offers = fetch(name, outcome)
            if not offers:
                where = f" in {', '.join(regions)}" if regions else ""
                raise ProviderError(f"{name}: the source had no offers{where}; cache kept")
            good = [o for o in offers if offer_problem(o) is None]
            if len(good) < len(offers):
                bad = next(p for o in offers if (p := offer_problem(o)))
                outcome.warnings.append(
                    f"dropped {len(offers) - len(good)} invalid offer(s): {bad}"
                )
                offers = good
            if not offers:
                raise ProviderError(f"{name}: the source had no valid offers; cache kept")
            if cancelled.is_set():
                raise ProviderError(f"{name}: interrupted; cache kept")
            replaced = ""
            with cache_locked(name):  # another gpuplan may be merging into this cache now
                try:
                    previous = read_cache(name)
                except OSError as exc:  # permission denied: this machine's, not a damaged file
                    error = local_file_error(exc, "read the offer cache")
                    raise LocalFileError(error.message, "make it readable (chmod u+rw)") from None
                except READ_ERRORS as exc:
                    # unreadable (corrupt, or a newer gpuplan's): the other regions' offers
                    # in it cannot be kept, so only a refresh of every region replaces it
                    if regions:
                        raise ProviderError(
                            f"{name}: the cache cannot be read ({short(exc, 80)}); cache kept",
                            "refresh every region (no --region) to rewrite it",
                        ) from None
                    replaced = f"replaced an unreadable cache ({short(exc, 80)})"
                    previous = None
                merged = merge_regions(previous[0] if previous else None, offers, regions)
                write_cache(name, merged, max(o.fetched_at for o in offers), outcome.source)
            if replaced:  # said once it is true: a write that failed replaced nothing
                outcome.warnings.append(replaced)
            outcome.status, outcome.offers = "ok", len(offers)
            outcome.fetched_at = min(o.fetched_at for o in offers)
        except MissingCredentials as exc:
            outcome.status = "failed" if explicit else "skipped"
            outcome.message = exc.message
        except ProviderError as exc:
            outcome.message = exc.message + (f" ({exc.hint})" if exc.hint else "")
        except LocalFileError as exc:  # the cache file: read-only, a full disk (written whole
            # or not at all, so the old one stays)
            outcome.local_fault = True
            hint = f" ({exc.hint})" if exc.hint else ""
            outcome.message = f"{name}: {exc.message}; cache kept{hint}"
        except OSError as exc:  # the lock file beside the cache (a network error is a
            # ProviderError by then; requests' own errors are OSErrors without a file name)
            outcome.local_fault = exc.filename is not None
            outcome.message = f"{name}: {local_file_error(exc, 'write the offer cache').message}"
        except Exception as exc:
            outcome.message = f"{name}: unexpected {type(exc).__name__}: {str(exc)[:200]}"
        # a URL with credentials in it (a mirror's, an endpoint's) is never shown or logged
        outcome.message = redact(outcome.message)
        outcome.warnings = [redact(w) for w in outcome.warnings]
        outcome.seconds = time.perf_counter() - start
        if on_done:
            on_done(outcome)
        return outcome

    # Daemon threads, at most 8 at a time: on Ctrl-C the command exits at once instead of
    # waiting (at interpreter exit, as a ThreadPoolExecutor's threads make it) for calls in
    # flight to time out and retry. A call still in flight writes nothing once cancelled; one
    # already writing ends with a rename, or is stopped before it (leaving at most a stray
    # temp file), so every cache file stays whole.
    outcomes: list[ProviderOutcome | None] = [None] * len(names)
    raised: list[BaseException] = []  # what run() let through, raised again in this thread
    slots = threading.BoundedSemaphore(8)

    def work(i: int, name: str) -> None:
        with slots:
            if cancelled.is_set():
                return
            try:
                outcomes[i] = run(name)
            except BaseException as exc:
                cancelled.set()
                raised.append(exc)

    threads = [
        threading.Thread(target=work, args=(i, n), name=f"refresh-{n}", daemon=True)
        for i, n in enumerate(names)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive() and not raised:
                t.join(0.05)
    except KeyboardInterrupt:
        cancelled.set()
        raise
    if raised:
        raise raised[0]
    return [o or ProviderOutcome(n, "failed") for o, n in zip(outcomes, names, strict=True)]


def _check_cache_writable() -> None:
    """One clear error before any download when the cache folder cannot be written (an
    unwritable HOME, a read-only file system), instead of one failure per cloud."""
    import os
    import tempfile

    from planner.offers.catalog import cache_dir

    folder = cache_dir() / "offers"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise local_file_error(exc, "write the offer cache in") from None
