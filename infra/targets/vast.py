"""Vast.ai marketplace instances (a dynamic provider rendered into the project)."""

from __future__ import annotations

from typing import Any

from infra import versions
from infra.options import ProjectOptions
from infra.targets import Capabilities, Target
from planner.decide.plan import Plan


def facts(plan: Plan, opts: ProjectOptions) -> dict[str, Any]:
    o = plan.offer
    return {
        "vast_gpu_name": o.provider_data.get("gpu_name") or versions.VAST_GPU_NAMES.get(o.gpu),
        "gpu_count": o.gpu_count,
        "min_gpu_ram_mb": int(o.gpu_memory_gb * 1000 * 0.9),
        "max_price_usd_per_hour": round(plan.estimate.usd_per_hour * 1.25, 4),
        "min_reliability": 0.95,
        # The highest CUDA the host's driver runs must cover the image's (offer field
        # cuda_max_good, vast-cli api/query.py offers_fields).
        "min_cuda": versions.IMAGE_CUDA,
    }


def refuse(plan: Plan) -> str | None:
    o = plan.offer
    if o.gpu not in versions.VAST_GPU_NAMES and not o.provider_data.get("gpu_name"):
        return f"no Vast.ai gpu_name known for {plan.offer.gpu}"
    return None


TARGET = Target(
    name="vast",
    title="Vast.ai",
    capabilities=Capabilities(
        multi_node=False,
        replicas=True,
        balancer=False,
        amd=False,
        spot=False,
        tls=False,
        tls_termination=False,
        tls_acme=False,
        firewall=False,
    ),
    facts=facts,
    ssh_key_unused="the project opens no SSH access to the container",
    refuse=refuse,
    no_tls_reason=(
        "Vast.ai maps the container's ports to random public ports, so Let's Encrypt cannot "
        "reach the machine on port 80 to validate a domain: gpuplan cannot serve HTTPS there"
    ),
    setup_lines=("export VAST_API_KEY=...",),
    helper="gpuplan_vast.py",
    protects=("every path but /health behind the API key (authenticating proxy in the container)",),
    exposes=(
        "a random public port and no firewall: --allow-cidr is not enforced",
        "the host is a third party who can read the HF token and the API key: use a "
        "read-only, fine-grained HF token",
    ),
)
