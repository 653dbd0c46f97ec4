"""A loopback mirror of gpuhunt's published catalogs, built here in gpuhunt's real format, and
a fake of the public Vast.ai offer search that gpuhunt queries live.

Layout (gpuhunt/_internal/catalog.py, Catalog._load_provider and _get_latest_version; published
by gpuhunt's .github/scripts/publish_catalog.sh): ``{base}/{provider}/version`` holds the latest
version ("YYYYMMDD-<run>"), ``{base}/{provider}/{version}/catalog.zip`` is a zip holding
``{provider}.csv`` with the v2 columns (gpuhunt/_internal/storage.py, CATALOG_V2_FIELDS; the
provider is the file name, prices are USD per hour, spot rows separate from on-demand rows).
The columns are written out here rather than taken from gpuhunt so that a change of gpuhunt's
format fails these tests instead of silently following it.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

from tests.fakes import FakeApi, fixture

VERSION = "20261129-4211"
VERSION_DATE = "2026-11-29"
COLUMNS = [
    "instance_name", "location", "price", "cpu", "memory", "gpu_count", "gpu_name",
    "gpu_memory", "spot", "disk_size", "gpu_vendor", "flags", "cpu_arch", "provider_data",
]  # fmt: skip


def row(
    instance: str, location: str, price: float, gpu: str, count: int, memory_gib: float, *,
    spot: bool = False, cpu: int = 8, ram: float = 64.0, flags: str = "",
    provider_data: dict[str, Any] | None = None, vendor: str = "nvidia",
) -> dict[str, str]:  # fmt: skip
    return {
        "instance_name": instance, "location": location, "price": str(price), "cpu": str(cpu),
        "memory": str(ram), "gpu_count": str(count), "gpu_name": gpu,
        "gpu_memory": str(memory_gib), "spot": str(spot), "disk_size": "",
        "gpu_vendor": vendor, "flags": flags, "cpu_arch": "x86",
        "provider_data": json.dumps(provider_data or {}),
    }  # fmt: skip


CALENDAR = {"is_dws_calendar_mode": True}  # a GCP calendar-mode reservation, not on demand

# Rows per gpuhunt provider name, shaped like the published catalogs (names as gpuhunt writes
# them: "A10G", "H100", "RTX4090"; GCP by zone; RunPod Secure by data center id, Community by
# country code; one flagged row and one CPU-only row that gpuplan must skip).
CATALOGS: dict[str, list[dict[str, str]]] = {
    "aws": [
        row("g5.xlarge", "us-east-1", 1.006, "A10G", 1, 24, cpu=4, ram=16),
        row("g5.xlarge", "us-east-1", 0.4032, "A10G", 1, 24, cpu=4, ram=16, spot=True),
        row("g5.xlarge", "eu-west-1", 1.123, "A10G", 1, 24, cpu=4, ram=16),
        row("g5.xlarge", "ap-northeast-1", 1.459, "A10G", 1, 24, cpu=4, ram=16),
        row("p5.48xlarge", "us-east-1", 55.04, "H100", 8, 80, cpu=192, ram=2048),
        row("m5.large", "us-east-1", 0.096, "", 0, 0, vendor=""),
    ],
    "gcp": [
        row("g2-standard-4", "us-central1-a", 0.70683, "L4", 1, 24, cpu=4, ram=16),
        row("g2-standard-4", "us-central1-b", 0.70683, "L4", 1, 24, cpu=4, ram=16),
        row("g2-standard-4", "us-central1-a", 0.28, "L4", 1, 24, cpu=4, ram=16, spot=True),
        row("g2-standard-4", "europe-west4-a", 0.77, "L4", 1, 24, cpu=4, ram=16),
        row("a3-highgpu-1g", "us-central1-a", 3.1, "H100", 1, 80, spot=True),  # spot only
        row("a3-highgpu-8g", "us-central1-a", 70.0, "H100", 8, 80, provider_data=CALENDAR),
        row("v5litepod-8", "us-west4-a", 9.6, "v5litepod", 8, 16, vendor="google"),  # a TPU
    ],
    "azure": [
        row("Standard_NC24ads_A100_v4", "eastus", 3.673, "A100", 1, 80, cpu=24, ram=220),
        row("Standard_NC24ads_A100_v4", "eastus", 1.47, "A100", 1, 80, spot=True),
        row("Standard_NC24ads_A100_v4", "westeurope", 4.04, "A100", 1, 80, cpu=24, ram=220),
        row("Standard_NV36ads_A10_v5", "southcentralus", 3.2, "A10", 1, 24),
    ],
    "runpod": [
        row("NVIDIA GeForce RTX 4090", "EU-RO-1", 0.69, "RTX4090", 1, 24),
        row("NVIDIA GeForce RTX 4090", "US", 0.34, "RTX4090", 1, 24),
        row("NVIDIA H100 80GB HBM3", "US-KS-2", 2.69, "H100", 1, 80),
        row("NVIDIA H100 80GB HBM3", "US-KS-2", 21.5, "H100", 8, 80, flags="runpod-cluster"),
    ],
    "lambdalabs": [
        row("gpu_1x_a100_sxm4", "us-east-1", 1.29, "A100", 1, 40, cpu=30, ram=200),
        row("gpu_8x_h100_sxm5", "us-west-1", 23.92, "H100", 8, 80, cpu=208, ram=1800),
    ],
    "oci": [
        row("VM.GPU.A10.1", "us-ashburn-1", 2.0, "A10", 1, 24, cpu=15, ram=240),
        row("BM.GPU.H100.8", "eu-frankfurt-1", 80.0, "H100", 8, 80, cpu=112, ram=2048),
        row("VM.GPU.A10.1", "eu-frankfurt-1", 2.0, "A10", 1, 24, spot=True),  # spot only
    ],
    "nebius": [row("gpu-h100-sxm 8gpu-128vcpu-1600gb", "eu-north1", 23.6, "H100", 8, 80)],
    "verda": [row("1H100.80S.30V", "FIN-01", 2.19, "H100", 1, 80)],
    "cloudrift": [row("rtx59-16c-nr-1", "us-east-nc-nr-1", 0.65, "RTX5090", 1, 32)],
}


def catalog_zip(provider: str, rows: list[dict[str, str]]) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{provider}.csv", text.getvalue())
    return buf.getvalue()


class FakeCatalog(FakeApi):
    """Serves ``/v3/{provider}/version`` and ``/v3/{provider}/{version}/catalog.zip``.
    ``broken`` names providers whose zip answers 500; ``version`` can be changed per test."""

    def __init__(self, catalogs: dict[str, list[dict[str, str]]] | None = None) -> None:
        self.catalogs = dict(CATALOGS if catalogs is None else catalogs)
        self.version = VERSION
        self.broken: set[str] = set()
        super().__init__(self._route)

    @property
    def base(self) -> str:
        return f"{self.url}/v3"

    def _route(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        parts = path.strip("/").split("/")
        if method != "GET" or len(parts) < 3 or parts[0] != "v3":
            return 404, b"not found", "text/plain"
        provider = parts[1]
        if provider not in self.catalogs:
            return 404, b"NoSuchKey", "application/xml"
        if parts[2:] == ["version"]:
            return 200, f"{self.version}\n".encode(), "text/plain"
        if parts[2:] == [self.version, "catalog.zip"]:
            if provider in self.broken:
                return 500, b"InternalError", "application/xml"
            return 200, catalog_zip(provider, self.catalogs[provider]), "application/zip"
        return 404, b"NoSuchKey", "application/xml"


def vast_public_route(method: str, path: str, body: bytes, headers: dict[str, str]):
    """Vast's public offer search as gpuhunt calls it: POST /api/v0/bundles/ with no key and
    per-field operator filters ({"num_gpus": {"gte": 1}, "rentable": {"eq": true}, ...})."""
    if method != "POST" or path.rstrip("/") != "/api/v0/bundles":
        return 404, {"error": "not found"}
    q = json.loads(body)
    vast_public_route.bodies.append(q)  # type: ignore[attr-defined]
    offers = []
    for o in fixture("vast", "bundles.json")["offers"]:
        o = {**o, "cpu_cores": o["cpu_cores_effective"] * 2, "verified": True}
        if o["rentable"] and o["reliability2"] >= q.get("reliability2", {}).get("gte", 0):
            offers.append(o)
    return 200, {"offers": offers}


vast_public_route.bodies = []  # type: ignore[attr-defined]
