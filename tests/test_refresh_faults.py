"""Refresh faults an SRE meets: a region-limited refresh whose source answers other region
names, two refreshes sharing one cache folder, credentials in a mirror URL, a public source
that rate-limits, and a cache this version cannot read."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from planner.offers.catalog import cache_dir, load_catalog
from planner.offers.refresh import refresh
from tests.fakes import provider_env


def cache_file(name: str) -> Path:
    return cache_dir() / "offers" / f"{name}.json"


def listing(name: str) -> Counter:
    return Counter((o.instance_type, o.region, o.tier) for o in load_catalog([name]).offers)


def test_a_region_limited_refresh_never_lists_an_offer_twice(monkeypatch):
    """RunPod's API prices every data center alike (region "global") and ignores --region:
    the answer replaces the cached offers of the regions it holds, not only those asked."""
    with provider_env("runpod", monkeypatch):
        refresh(["runpod"], explicit=True)
        before = listing("runpod")
        [outcome] = refresh(["runpod"], explicit=True, regions=("EU-RO-1",))
    assert outcome.status == "ok"
    after = listing("runpod")
    assert after == before and set(after.values()) == {1}


def test_two_refreshes_sharing_a_cache_folder_keep_each_others_regions(monkeypatch):
    """CI matrix jobs refreshing a region each into one cache folder: each merges into what the
    other wrote, never into what both read before either wrote."""
    import planner.offers.catalog as catalog
    from tests.fakegpuhunt import FakeCatalog

    real_read = catalog.read_cache
    inside, both_inside = [0], threading.Event()
    lock = threading.Lock()

    def read_slowly(name):  # the first reader waits for the second to read too (it cannot,
        with lock:  # if the cache is locked), then both write what they read
            inside[0] += 1
            if inside[0] == 2:
                both_inside.set()
        both_inside.wait(timeout=3)
        return real_read(name)

    monkeypatch.setattr(catalog, "read_cache", read_slowly)
    with FakeCatalog() as mirror:
        monkeypatch.setenv("GPUHUNT_CATALOG_URL", mirror.base)
        outcomes = []

        def job(region: str) -> None:
            outcomes.extend(refresh(["aws"], explicit=False, regions=(region,)))

        jobs = [threading.Thread(target=job, args=(r,)) for r in ("us-east-1", "eu-west-1")]
        for job in jobs:
            job.start()
        for job in jobs:
            job.join(timeout=30)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert {region for _, region, _ in listing("aws")} == {"us-east-1", "eu-west-1"}


def test_credentials_in_a_mirror_url_never_reach_the_cache_or_a_message(monkeypatch):
    """GPUPLAN_VAST_URL and GPUHUNT_CATALOG_URL may carry a mirror's user and token: neither is
    written into the cache (its source, each offer's source) nor shown in a refresh line."""
    from tests.fakegpuhunt import FakeCatalog, vast_public_route
    from tests.fakes import FakeApi

    with FakeCatalog() as mirror, FakeApi(vast_public_route) as vast:
        monkeypatch.setenv("GPUHUNT_CATALOG_URL", mirror.base.replace("//", "//alice:S3CRET@"))
        monkeypatch.setenv("GPUPLAN_VAST_URL", vast.url.replace("//", "//bob:T0KEN@"))
        ok = {o.provider: o for o in refresh(["aws", "vast"], explicit=False)}
        vast.fail_first = 99  # and when the live query fails
        [failed] = refresh(["vast"], explicit=False)
    assert ok["vast"].status == "ok" and vast.requests  # the credentials were used...
    assert ok["aws"].status == failed.status == "failed"
    shown = [o.message for o in (*ok.values(), failed)] + [ok["vast"].source]
    shown += [w for o in ok.values() for w in o.warnings]
    shown += [o.source for o in load_catalog(["vast"]).offers]
    assert "***@" in ok["vast"].source and "***@" in failed.message
    leaked = [s for s in shown if "S3CRET" in s or "T0KEN" in s]
    assert not leaked and b"T0KEN" not in cache_file("vast").read_bytes()


def test_the_public_sources_are_retried_when_they_rate_limit_or_fail(monkeypatch):
    """Without credentials (gpuhunt's catalogs and its live Vast query) a 429 or 5xx is tried
    again with backoff, as the direct providers' calls are; a source that keeps failing is
    one line saying so, after a bounded number of attempts."""
    from tests.fakegpuhunt import FakeCatalog, vast_public_route
    from tests.fakes import FakeApi

    public = ["aws", "azure", "cloudrift", "gcp", "lambda", "nebius", "oci", "runpod", "verda"]
    with FakeCatalog() as mirror, FakeApi(vast_public_route) as vast:
        monkeypatch.setenv("GPUHUNT_CATALOG_URL", mirror.base)
        monkeypatch.setenv("GPUPLAN_VAST_URL", vast.url)
        mirror.fail_first, mirror.fail_status = len(public), 503  # every cloud's first call
        vast.fail_first, vast.fail_status = 2, 429
        outcomes = {o.provider: o for o in refresh([*public, "vast"], explicit=False)}
        assert {o.status for o in outcomes.values()} == {"ok"}, outcomes
        assert len(vast.requests) == 3
        vast.fail_first = 99
        [failed] = refresh(["vast"], explicit=False)
    assert len(vast.requests) == 6  # three more attempts, then it gave up
    assert failed.status == "failed" and "429" in failed.message
    assert "after 3 attempts" in failed.message and "rate-limiting" in failed.message


def test_a_cache_this_version_cannot_read_is_never_cut_to_a_few_regions(monkeypatch):
    """A newer gpuplan's (or a corrupt) cache holds every region: a refresh of one region
    cannot merge into it, so it leaves it as it was and says why; a full refresh replaces it
    and says so."""
    from tests.fakegpuhunt import FakeCatalog

    with FakeCatalog() as mirror:
        monkeypatch.setenv("GPUHUNT_CATALOG_URL", mirror.base)
        refresh(["aws"], explicit=False)
        path = cache_file("aws")
        newer = path.read_text().replace("gpuplan.offers-cache/3", "gpuplan.offers-cache/4")
        path.write_text(newer)
        [partial] = refresh(["aws"], explicit=False, regions=("eu-west-1",))
        assert partial.status == "failed" and "cannot be read" in partial.message
        assert "no --region" in partial.message and path.read_text() == newer
        [full] = refresh(["aws"], explicit=False)
    assert full.status == "ok" and any("unreadable" in w for w in full.warnings)
    assert {region for _, region, _ in listing("aws")} == {
        "us-east-1",
        "eu-west-1",
        "ap-northeast-1",
    }


def test_a_read_only_cache_is_a_local_file_fault_and_replaces_nothing(cli, monkeypatch):
    """A refresh that fetched fine but cannot write the cache file (chmod 444; the atomic
    writer refuses a file without write bits, even for root) says so in one line, exit 2 as
    every local file fault, and never claims to have replaced the file."""
    from tests.fakegpuhunt import vast_public_route
    from tests.fakes import FakeApi

    with FakeApi(vast_public_route) as vast:
        monkeypatch.setenv("GPUPLAN_VAST_URL", vast.url)
        assert cli("catalog", "refresh", "--provider", "vast").exit_code == 0
        path = cache_file("vast")
        path.write_text('{"damaged": ')  # unreadable, and read-only
        path.chmod(0o444)
        before = path.read_bytes()
        [outcome] = refresh(["vast"], explicit=True)
        r = cli("catalog", "refresh", "--provider", "vast")
    assert outcome.status == "failed" and outcome.local_fault, outcome
    assert "the file is read-only; cache kept" in outcome.message, outcome.message
    assert "unexpected" not in outcome.message
    assert not any("replaced" in w for w in outcome.warnings), outcome.warnings
    assert r.exit_code == 2, r.output
    assert "unexpected" not in r.output and "replaced" not in r.output, r.output
    assert path.read_bytes() == before


def test_a_cache_this_user_cannot_read_is_not_replaced_as_damaged(cli, monkeypatch):
    """Permission denied on reading the cache (chmod 000 as another user) is this machine's
    fault: said as such, the file left alone, exit 2; not "replaced an unreadable cache"."""
    import errno

    import planner.offers.catalog as catalog
    from tests.fakegpuhunt import vast_public_route
    from tests.fakes import FakeApi

    def denied(name):
        raise PermissionError(errno.EACCES, "Permission denied", str(cache_file(name)))

    with FakeApi(vast_public_route) as vast:
        monkeypatch.setenv("GPUPLAN_VAST_URL", vast.url)
        assert cli("catalog", "refresh", "--provider", "vast").exit_code == 0
        before = cache_file("vast").read_bytes()
        monkeypatch.setattr(catalog, "read_cache", denied)  # root reads any file: as nobody
        [outcome] = refresh(["vast"], explicit=True)
        r = cli("catalog", "refresh", "--provider", "vast")
    assert outcome.status == "failed" and outcome.local_fault, outcome
    assert "cannot read the offer cache" in outcome.message and "permission denied" in (
        outcome.message
    ), outcome.message
    assert not any("replaced" in w for w in outcome.warnings), outcome.warnings
    assert r.exit_code == 2 and "unexpected" not in r.output, r.output
    assert cache_file("vast").read_bytes() == before
