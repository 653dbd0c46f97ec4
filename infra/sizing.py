"""Sizes derived from a plan: names, disks and waits. Allowances, not measurements: each says
what it assumes."""

from __future__ import annotations

import hashlib
import math
import re

from infra.options import ProjectOptions
from planner.decide.plan import Plan

GIB_TO_GB = 2**30 / 1e9


def slug(text: str, limit: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:limit].rstrip("-") or "model"


def resource_name(plan: Plan) -> str:
    return "gpuplan-" + slug(plan.base_model)


def short_id(plan: Plan, opts: ProjectOptions, limit: int) -> str:
    """A name that fits cloud limits (GCP service accounts: 6-30 chars) and differs between
    models and stacks: a readable head and a hash of (model, stack)."""
    digest = hashlib.sha256(f"{plan.base_model}\0{opts.stack}".encode()).hexdigest()[:6]
    head = slug("gp-" + plan.base_model, limit - 7)
    return f"{head}-{digest}"


def download_gb(plan: Plan) -> float:
    """GB the Hub download writes: the checkpoint as stored. Online quantization
    (`--quantization` on a full-precision checkpoint) downloads the BF16 checkpoint and
    quantizes while loading, so the download is the loaded size times 16/bits (BF16 assumed:
    an FP32 checkpoint would be twice that)."""
    loaded_gb = plan.estimate.replica_weights_gib(plan.layout) * GIB_TO_GB
    if "--quantization" in plan.vllm_args:
        from planner.model.quant import get_format

        bits = get_format(plan.quant_format).bits
        return loaded_gb * max(1.0, 16.0 / bits)
    return loaded_gb


IMAGE_AND_CACHES_GB = 30  # the ~20 GB vllm-openai image and torch.compile caches


def disk_gb(plan: Plan, opts: ProjectOptions) -> int:
    """Root disk: the download with 20% spare (Hub cache temporaries), plus the image and
    caches, plus the boot image (the target's boot_image_gb). gpuplan.toml can set it instead
    (ProjectOptions.disk_gb)."""
    from infra.targets import targets

    if opts.disk_gb is not None:
        return opts.disk_gb
    boot = targets()[plan.offer.provider].boot_image_gb
    return int(math.ceil((download_gb(plan) * 1.2 + IMAGE_AND_CACHES_GB + boot) / 10) * 10)


def ready_s(plan: Plan) -> int:
    """Seconds from a new machine's start until it serves: 15 minutes for boot and the image
    pull, plus the download at an assumed 100 MB/s (10 s per GB) and loading. An allowance,
    not a measurement."""
    return 900 + 10 * math.ceil(download_gb(plan))


# GCP caps auto-healing's initial delay at 3600 s ("must be between 0 and 3600 seconds": the
# compute API's InstanceGroupManagerAutoHealingPolicy.initial_delay_sec, cloud.google.com/
# python/docs/reference/compute/latest/google.cloud.compute_v1.types.
# InstanceGroupManagerAutoHealingPolicy, read 2026-12-02)
HEAL_MAX_DELAY_S = 3600


def heal_delay_s(plan: Plan) -> int | None:
    """Seconds a new replica gets before auto-healing may recreate it (ready_s), or None: no
    auto-healing, for a replica whose download and load outlast GCP's 3600 s cap. The health
    check runs during the delay too (its failures are only ignored: "During a VM's initial
    delay period, the MIG ignores unsuccessful health checks"), so a replica still loading
    when the delay ends is already unhealthy and would be recreated at once, in a loop at the
    price of every VM; a slower check does not help. systemd restarts vLLM itself either way."""
    ready = ready_s(plan)
    return ready if ready <= HEAL_MAX_DELAY_S else None
