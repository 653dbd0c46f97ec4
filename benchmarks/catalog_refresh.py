"""Catalog refresh speed: all five providers against local fakes that add 200 ms to every
call, refreshed together, against the slowest provider refreshed alone.

AWS runs against a moto server (EC2) behind a latency proxy and a fake of the Price List API;
GCP, RunPod, Vast and Hetzner against fakes of their REST/GraphQL APIs (tests/fakes.py).
Run: python benchmarks/catalog_refresh.py     Target: total <= 1.5 x the slowest alone.
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


def main() -> None:
    from planner.offers.catalog import refresh
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
