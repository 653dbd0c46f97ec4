"""RunPod pods over RunPod's REST API (a dynamic provider rendered into the project)."""

from __future__ import annotations

from typing import Any

from infra import versions
from infra.options import ProjectOptions
from infra.targets import Capabilities, Target, is_amd
from planner.decide.plan import Plan


def facts(plan: Plan, opts: ProjectOptions) -> dict[str, Any]:
    o = plan.offer
    community = (o.tier or "").lower() == "community"
    return {
        "gpu_type_id": o.provider_data.get("gpu_type_id") or versions.RUNPOD_GPU_TYPES.get(o.gpu),
        "gpu_count": o.gpu_count,
        "cloud_type": "COMMUNITY" if community else "SECURE",
        # Hosts whose driver runs the image's CUDA (PodFindAndDeployOnDemandInput
        # allowedCudaVersions; unset means any host, including drivers too old for CUDA 13).
        # AMD pods run the ROCm image: no CUDA filter.
        "allowed_cuda_versions": []
        if is_amd(o.gpu)
        else list(versions.RUNPOD_ALLOWED_CUDA_VERSIONS),
    }


def refuse(plan: Plan) -> str | None:
    o = plan.offer
    if o.gpu not in versions.RUNPOD_GPU_TYPES and not o.provider_data.get("gpu_type_id"):
        return f"no RunPod GPU type id known for {plan.offer.gpu}"
    return None


TARGET = Target(
    name="runpod",
    title="RunPod",
    capabilities=Capabilities(
        multi_node=False,
        replicas=True,
        balancer=False,
        amd=True,
        spot=False,
        tls=True,
        tls_termination=False,
        tls_acme=False,
        firewall=False,
    ),
    facts=facts,
    ssh_key_unused="the project opens no SSH access to the container",
    refuse=refuse,
    no_tls_reason=(
        "RunPod serves HTTPS at its own proxy address (https://POD_ID-8000.proxy.runpod.net), "
        "not at your domain, and its proxy cannot answer Let's Encrypt for it"
    ),
    setup_lines=("export RUNPOD_API_KEY=...",),
    helper="gpuplan_runpod.py",
    protects=(
        "HTTPS through RunPod's proxy",
        "every path but /health behind the API key (authenticating proxy in the pod)",
    ),
    exposes=(
        "no firewall: --allow-cidr is not enforced, anyone can reach the endpoint",
        "RunPod (and the host, on the community cloud) sees the HF token and the API key",
    ),
)
