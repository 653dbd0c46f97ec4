"""Catalog refresh speed, and recommend on a large refreshed cache.

1. Direct providers (credentials set): all five against local fakes that add 200 ms to every
   call, refreshed together, against the slowest provider refreshed alone. AWS runs against a
   moto server (EC2) behind a latency proxy and a fake of the Price List API; GCP, RunPod, Vast
   and Hetzner against fakes of their REST/GraphQL APIs (tests/fakes.py).
   Target: total <= 1.5 x the slowest alone.
2. No credentials: `catalog refresh` of the nine public-catalog clouds from a loopback mirror of
   gpuhunt's catalogs (tests/fakegpuhunt.py) holding ~50,000 synthetic GPU offers, then the wall
   time of `gpuplan recommend llama-3.1-8b --format json` (fresh processes, median of 9) on that
   cache (also with --concurrency 300, which looks for an FP8 and a --spread suggestion; and
   on the same offers in the pre-v3 cache format) and on the embedded catalog.
   Target: under 0.5 s median with 50,000 offers.

Run: python benchmarks/catalog_refresh.py [direct|gpuhunt]   (default: both)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LATENCY_S = 0.2


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's server in its own process, so its CPU time does not share our GIL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto server did not start")


def synthetic_catalogs(offers_per_cloud: int) -> dict[str, list[dict[str, str]]]:
    """Rows in gpuhunt's format: on-demand rows for every (machine, region) plus a spot row for
    every other one, spread over real GPU names and regions of each cloud's shape."""
    import random

    from planner.offers.providers._gpuhunt import CATALOG_CLOUDS
    from tests.fakegpuhunt import row

    gpus = [("A10G", 24), ("L4", 24), ("A100", 80), ("H100", 80), ("L40S", 48), ("T4", 16)]
    rng = random.Random(7)
    catalogs: dict[str, list[dict[str, str]]] = {}
    for cloud in CATALOG_CLOUDS.values():
        if cloud.online:
            continue
        rows = []
        for i in range(offers_per_cloud):
            gpu, mem = gpus[i % len(gpus)]
            count = (1, 2, 4, 8)[i % 4]
            region = f"region-{i % 40}" if cloud.gpuhunt_name != "gcp" else f"us-west{i % 9}-a"
            price = round(count * rng.uniform(0.3, 4.0), 4)
            rows.append(row(f"m{i // 40}-{gpu}x{count}", region, price, gpu, count, mem))
            if i % 2:
                rows.append(row(f"m{i // 40}-{gpu}x{count}", region, price / 3, gpu, count, mem,
                                spot=True))  # fmt: skip
        catalogs[cloud.gpuhunt_name] = rows
    return catalogs


def recommend_wall_times(
    env: dict[str, str], runs: int = 9, extra: tuple[str, ...] = ()
) -> list[float]:
    """Wall times of fresh `gpuplan recommend` processes, and the median of their CPU time
    (user + system), which other jobs on a shared machine disturb less than the wall time."""
    import resource
    import statistics

    # This interpreter's gpuplan (the worktree's), not whichever one PATH finds first.
    exe = str(Path(sys.executable).parent / "gpuplan")
    times, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(
            [exe, "recommend", "llama-3.1-8b", "--format", "json", *extra],
            check=True, stdout=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    runs_text = ", ".join(f"{t:.2f}" for t in times)
    print(
        f"  runs: {runs_text}; median {statistics.median(times):.2f} s "
        f"(CPU median {statistics.median(cpu):.2f} s; load {os.getloadavg()[0]:.1f})"
    )
    return times


def gpuhunt_part() -> None:
    from planner.offers.catalog import load_catalog
    from planner.offers.providers._gpuhunt import CATALOG_CLOUDS
    from planner.offers.refresh import refresh
    from tests.fakegpuhunt import FakeCatalog

    cache = tempfile.mkdtemp(prefix="gpuplan-bench-gpuhunt-")
    os.environ["GPUPLAN_CACHE_DIR"] = cache
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "RUNPOD_API_KEY", "VAST_API_KEY"):
        os.environ.pop(k, None)
    names = sorted(n for n, c in CATALOG_CLOUDS.items() if not c.online)
    with FakeCatalog(synthetic_catalogs(50_000 // len(names) + 1)) as mirror:
        os.environ["GPUHUNT_CATALOG_URL"] = mirror.base
        start = time.perf_counter()
        outcomes = refresh(names, explicit=False)
        seconds = time.perf_counter() - start
    total = sum(o.offers for o in outcomes)
    ok = sum(o.status == "ok" for o in outcomes)
    print(f"gpuhunt refresh, no credentials: {ok}/{len(names)} clouds ok, {total} offers, "
          f"{seconds:.2f} s")  # fmt: skip
    cat = load_catalog()
    print(f"catalog now holds {len(cat.offers)} offers")
    env = {**os.environ, "GPUPLAN_CACHE_DIR": cache}
    print(f"recommend llama-3.1-8b on the refreshed cache ({len(cat.offers)} offers):")
    recommend_wall_times(env)
    print("the same with --concurrency 300 (an FP8 and a --spread suggestion are looked for):")
    recommend_wall_times(env, extra=("--concurrency", "300"))
    print("the same offers in the cache format of gpuplan before v3 (until the next refresh):")
    recommend_wall_times({**os.environ, "GPUPLAN_CACHE_DIR": v2_copy(cache)})
    print("recommend llama-3.1-8b on the embedded catalog:")
    recommend_wall_times({**os.environ, "GPUPLAN_CACHE_DIR": tempfile.mkdtemp()})
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # Then every run compiles gpuplan's modules from source (about 0.1 s here); an
        # installed gpuplan has its bytecode compiled (pip does it on install).
        print("PYTHONDONTWRITEBYTECODE is set: the runs above compile gpuplan from source.")
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="gpuplan-bench-pyc-")
        exe = str(Path(sys.executable).parent / "gpuplan")
        subprocess.run([exe, "models"], check=True, stdout=subprocess.DEVNULL, env=cached)
        print("recommend on the refreshed cache, bytecode cached:")
        recommend_wall_times({**cached, "GPUPLAN_CACHE_DIR": cache})
        print("recommend on the embedded catalog, bytecode cached:")
        recommend_wall_times({**cached, "GPUPLAN_CACHE_DIR": tempfile.mkdtemp()})


def v2_copy(cache: str) -> str:
    """The cache rewritten in the v2 format (one row per offer) that users may still have."""
    import json

    from planner.offers.cache import read_cache
    from tests.cachedocs import v2_doc

    copy = Path(tempfile.mkdtemp(prefix="gpuplan-bench-v2-"))
    (copy / "offers").mkdir()
    for path in sorted(Path(cache, "offers").glob("*.json")):
        doc = json.loads(path.read_text())
        cached = read_cache(path.stem)
        assert cached is not None
        v2 = {**v2_doc(path.stem, list(cached[0]), doc["source"]), "fetched_at": doc["fetched_at"]}
        (copy / "offers" / path.name).write_text(json.dumps(v2, separators=(",", ":")))
    return str(copy)


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else "both"
    if part in ("direct", "both"):
        direct_part()
    if part in ("gpuhunt", "both"):
        gpuhunt_part()


def direct_part() -> None:
    from planner.offers.refresh import refresh
    from tests.fakes import ENV, ROUTES, FakeApi, aws_pricing_route, proxy_route

    os.environ["GPUPLAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="gpuplan-bench-")
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    moto, moto_url = start_moto()
    with ExitStack() as stack:
        for name, route in ROUTES.items():
            api = stack.enter_context(FakeApi(route, latency_s=LATENCY_S))
            os.environ[f"GPUPLAN_{name.upper()}_URL"] = api.url
            os.environ.update(ENV.get(name, {}))
        ec2 = stack.enter_context(FakeApi(proxy_route(moto_url), latency_s=LATENCY_S))
        pricing = stack.enter_context(FakeApi(aws_pricing_route, latency_s=LATENCY_S))
        # botocore's standard per-service endpoint variables
        os.environ["AWS_ENDPOINT_URL_EC2"] = ec2.url
        os.environ["AWS_ENDPOINT_URL_PRICING"] = pricing.url
        names = ["aws", "gcp", "runpod", "vast", "hetzner"]
        # Warm-up (imports, moto's lazily loaded per-region data), not measured.
        refresh(names, explicit=True)
        alone = {}
        for name in names:
            start = time.perf_counter()
            [outcome] = refresh([name], explicit=True)
            alone[name] = time.perf_counter() - start
            print(
                f"{name:8} alone: {alone[name]:6.2f} s  {outcome.status:6} "
                f"{outcome.offers:4d} offers"
                + (f"  ({outcome.message})" if outcome.message else "")
            )
        start = time.perf_counter()
        outcomes = refresh(names, explicit=True)
        total = time.perf_counter() - start
    moto.terminate()
    moto.wait(timeout=10)
    slowest = max(alone, key=lambda n: alone[n])
    ok = sum(o.status == "ok" for o in outcomes)
    print(
        f"all five together: {total:.2f} s ({ok}/5 ok); slowest alone: {slowest} "
        f"{alone[slowest]:.2f} s; ratio {total / alone[slowest]:.2f} (target <= 1.5)"
    )


if __name__ == "__main__":
    main()
