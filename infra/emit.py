"""Plan -> the files of a Pulumi (Python) project, deterministically, and their safe write.

Same plan and options, byte-identical files: no timestamps, sorted keys, pinned versions.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import versions
from infra.render import render, static_file
from planner.decide.plan import Plan
from planner.errors import DeployError, UsageError

PROVIDERS = ("aws", "gcp", "runpod", "vast", "hetzner")
MARKER = ".gpuplan"
PORT = 8000
GIB_TO_GB = 2**30 / 1e9


@dataclass(frozen=True, slots=True)
class ProjectOptions:
    stack: str = "dev"
    allowed_cidrs: tuple[str, ...] = ()
    ssh_cidr: str | None = None
    ssh_public_key: str | None = None


def _cidr(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise UsageError(f"{what} '{value}' is not a CIDR", "e.g. 203.0.113.7/32") from None


def validate_options(opts: ProjectOptions) -> ProjectOptions:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,60}", opts.stack):
        raise UsageError(
            f"stack name '{opts.stack}' is not valid", "letters, digits, '-', '_' and '.' only"
        )
    if not opts.allowed_cidrs:
        raise UsageError(
            "no --allow-cidr given: the serving port opens only to listed networks",
            "e.g. --allow-cidr 203.0.113.7/32 (your office or VPN)",
        )
    allowed = tuple(_cidr(c, "--allow-cidr") for c in opts.allowed_cidrs)
    ssh = _cidr(opts.ssh_cidr, "--ssh-cidr") if opts.ssh_cidr else None
    if ssh and ipaddress.ip_network(ssh).prefixlen == 0:
        raise UsageError(
            "refusing SSH from the whole internet (--ssh-cidr /0)",
            "give your own address, e.g. 203.0.113.7/32",
        )
    key = opts.ssh_public_key.strip() if opts.ssh_public_key else None
    if key and not re.fullmatch(
        r"(ssh-(ed25519|rsa)|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+( \S+)?", key
    ):
        raise UsageError("--ssh-key is not an OpenSSH public key line")
    return ProjectOptions(opts.stack, allowed, ssh, key)


def _slug(text: str, limit: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:limit].rstrip("-") or "model"


def _disk_gb(plan: Plan) -> int:
    """Root disk: the weights with 20% spare for the Hub download cache, plus 60 GB for the OS,
    the ~20 GB vllm-openai image and torch.compile caches. An allowance, not a measurement."""
    weights_gb = plan.estimate.weights_gib_per_gpu * plan.layout.tp * plan.layout.pp * GIB_TO_GB
    return int(math.ceil((weights_gb * 1.2 + 60) / 10) * 10)


def refusal(plan: Plan) -> tuple[str, str | None] | None:
    """Why gpuplan cannot write a project for ``plan`` (message, hint), or None when it can.

    generate asks this to pick the best plan it can write, instead of catching errors."""
    o = plan.offer
    if o.provider not in PROVIDERS:
        return f"no infrastructure target for {o.provider} yet", "pin --providers " + ",".join(
            PROVIDERS
        )
    if o.gpu.startswith("mi"):
        return (
            "AMD GPUs need vLLM's ROCm image; gpuplan generates CUDA projects only",
            "plan with --gpu set to an NVIDIA card",
        )
    multi = plan.layout.nodes > 1
    if multi and o.provider not in ("aws", "gcp"):
        return (
            f"multi-node plans need private networking between machines, which "
            f"gpuplan provisions on AWS and GCP only, not {o.provider}",
            "plan with --providers aws,gcp or --max-nodes 1",
        )
    if multi and plan.estimate.replicas > 1:
        return (
            "replicas of multi-node deployments are not generated",
            "drop the throughput target, or plan a model that fits one machine",
        )
    return None


def plan_data(plan: Plan, opts: ProjectOptions) -> dict[str, Any]:
    """The literal PLAN dict of the generated program (only plain values)."""
    why = refusal(plan)
    if why is not None:
        raise DeployError(*why)
    o = plan.offer
    data: dict[str, Any] = {
        "provider": o.provider, "name": "gpuplan-" + _slug(plan.base_model),
        "stack_tag": _slug(opts.stack, 30), "image": versions.VLLM_IMAGE,
        "vllm_args": list(plan.vllm_args), "port": PORT,
        "served_model_name": plan.base_model, "usd_per_hour": plan.estimate.usd_per_hour,
        "allowed_cidrs": list(opts.allowed_cidrs), "ssh_cidr": opts.ssh_cidr,
        "ssh_public_key": opts.ssh_public_key, "spot": plan.need.spot,
        "disk_gb": _disk_gb(plan),
        "replicas": plan.estimate.replicas,
        "nodes": plan.layout.nodes,
        "gpus_total": plan.offer.gpu_count * plan.layout.nodes,
    }  # fmt: skip
    builder = {"aws": _aws, "gcp": _gcp, "runpod": _runpod, "vast": _vast, "hetzner": _hetzner}
    data.update(builder[o.provider](plan))
    return data


def _aws(plan: Plan) -> dict[str, Any]:
    return {
        "instance_type": plan.offer.instance_type,
        "region": plan.offer.region,
        "ami_ssm_parameter": versions.AWS_DLAMI_SSM,
    }


def _gcp(plan: Plan) -> dict[str, Any]:
    o = plan.offer
    data = o.provider_data
    machine = data.get("machine_type") or o.instance_type
    count = int(data.get("accelerator_count") or 0)
    accel = None
    if count:  # an N1 host with attached GPUs (a2/a3/g2 bundle theirs)
        accel = versions.GCP_ATTACHED_ACCELERATORS.get(o.gpu)
        if accel is None:
            raise DeployError(f"no GCP accelerator type known for {o.gpu} on N1")
    zones = sorted(data.get("zones") or ())
    zone = o.zone or (zones[0] if zones else f"{o.region}-a")
    return {
        "machine_type": machine,
        "accelerator_type": accel,
        "accelerator_count": count,
        "region": o.region,
        "zone": zone,
        "image_family": versions.GCP_IMAGE_FAMILY,
    }


def _runpod(plan: Plan) -> dict[str, Any]:
    o = plan.offer
    gpu_type = o.provider_data.get("gpu_type_id") or versions.RUNPOD_GPU_TYPES.get(o.gpu)
    if gpu_type is None:
        raise DeployError(f"no RunPod GPU type id known for {o.gpu}")
    community = (o.tier or "").lower() == "community"
    return {
        "gpu_type_id": gpu_type,
        "gpu_count": o.gpu_count,
        "cloud_type": "COMMUNITY" if community else "SECURE",
    }


def _vast(plan: Plan) -> dict[str, Any]:
    o = plan.offer
    name = o.provider_data.get("gpu_name") or versions.VAST_GPU_NAMES.get(o.gpu)
    if name is None:
        raise DeployError(f"no Vast.ai gpu_name known for {o.gpu}")
    return {
        "vast_gpu_name": name,
        "gpu_count": o.gpu_count,
        "min_gpu_ram_mb": int(o.gpu_memory_gb * 1000 * 0.9),
        "max_price_usd_per_hour": round(plan.estimate.usd_per_hour * 1.25, 4),
        "min_reliability": 0.95,
    }


def _hetzner(plan: Plan) -> dict[str, Any]:
    o = plan.offer
    location = str(o.provider_data.get("location") or o.region).upper()
    return {
        "product_id": o.provider_data.get("product_id") or o.instance_type,
        "location": location,
        "dist": "Ubuntu 24.04 LTS base",
        "monthly_price_usd": plan.estimate.monthly_commitment_usd,
        "setup_fee_usd": plan.estimate.setup_fee_usd,
    }


def render_project(plan: Plan, opts: ProjectOptions) -> dict[str, str]:
    """{relative path: content} of the generated project."""
    opts = validate_options(opts)
    data = plan_data(plan, opts)
    provider = data["provider"]
    ctx = {"data": data, "provider": provider, "model": plan.model, "base_model": plan.base_model}
    stack_config: dict[str, Any] = {"gpuplan:allowedCidrs": list(opts.allowed_cidrs)}
    if opts.ssh_cidr:
        stack_config["gpuplan:sshCidr"] = opts.ssh_cidr
    setup = []
    if provider == "aws":
        stack_config["aws:region"] = data["region"]
    elif provider == "gcp":
        stack_config.update({"gcp:region": data["region"], "gcp:zone": data["zone"]})
        setup.append("pulumi config set gcp:project YOUR_PROJECT")
    elif provider == "vast":
        stack_config["gpuplan:maxPriceUsdPerHour"] = data["max_price_usd_per_hour"]
        setup.append("export VAST_API_KEY=...")
    elif provider == "runpod":
        setup.append("export RUNPOD_API_KEY=...")
    elif provider == "hetzner":
        stack_config["gpuplan:robotTestMode"] = True
        setup += [
            "export HETZNER_ROBOT_USER=... HETZNER_ROBOT_PASSWORD=...",
            "pulumi config set --path 'gpuplan:robotKeyFingerprints[0]' aa:bb:...",
            "pulumi config set --secret gpuplan:sshPrivateKey < ~/.ssh/id_ed25519",
        ]
    requirements = {**versions.BASE_REQUIREMENTS, **versions.PROVIDER_REQUIREMENTS[provider]}
    est, o = plan.estimate, plan.offer
    monthly = (
        f" (a monthly rental: ${est.monthly_commitment_usd:,.0f}/month + "
        f"${est.setup_fee_usd:,.0f} setup)"
        if est.monthly_commitment_usd
        else ""
    )
    readme_ctx = {
        **ctx, "provider_title": {"aws": "AWS", "gcp": "Google Cloud", "runpod": "RunPod",
                                  "vast": "Vast.ai", "hetzner": "Hetzner"}[provider],
        "image": data["image"], "usd_per_hour": est.usd_per_hour, "monthly_line": monthly,
        "offer_line": f"{o.provider} {o.instance_type} ({o.gpu_count}x {o.gpu}, {o.region})",
        "layout": plan.layout.label, "tokens_per_s": est.aggregate_output_tokens_per_s,
        "stream_tokens_per_s": est.single_stream_tokens_per_s,
        "replicas": est.replicas, "stack": opts.stack,
        "setup_lines": setup, "gated_hint": True,
        "monthly_price_usd": est.monthly_commitment_usd or 0.0,
        "setup_fee_usd": est.setup_fee_usd or 0.0,
    }  # fmt: skip
    files = {
        "Pulumi.yaml": render("_shared/Pulumi.yaml.j2", project=data["name"], **ctx),
        f"Pulumi.{opts.stack}.yaml": render(
            "_shared/Pulumi.stack.yaml.j2", stack_config=stack_config
        ),
        "__main__.py": render(f"{provider}/__main__.py.j2", **ctx),
        "gpuplan_boot.py": static_file("_shared/gpuplan_boot.py"),
        "requirements.txt": render("_shared/requirements.txt.j2", requirements=requirements),
        "README.md": render(f"{provider}/README.md.j2", **readme_ctx),
        ".gitignore": render("_shared/gitignore.j2"),
    }
    helper = {
        "runpod": "gpuplan_runpod.py",
        "vast": "gpuplan_vast.py",
        "hetzner": "gpuplan_hetzner.py",
    }.get(provider)
    if helper:
        files[helper] = static_file(f"{provider}/{helper}")
    files["gpuplan.plan.json"] = _plan_json(plan)
    files[MARKER] = (
        json.dumps(
            {"generated_by": "gpuplan", "files": sorted([*files, MARKER])}, indent=1, sort_keys=True
        )
        + "\n"
    )
    return dict(sorted(files.items()))


def _plan_json(plan: Plan) -> str:
    from planner.decide.plan import plan_to_json

    return plan_to_json(plan)


def write_project(files: dict[str, str], out: Path) -> list[str]:
    """Write the files into ``out``: each atomically. A folder holding files gpuplan did not
    generate is refused; files an earlier generation wrote but this one does not are removed."""
    from planner.fsutil import atomic_write_text

    previous: list[str] = []
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {out} is a file, not a folder")
        marker = out / MARKER
        present = sorted(
            p.name
            for p in out.iterdir()
            if p.name not in {"venv", "__pycache__"} and not p.name.startswith(".pulumi")
        )
        if marker.exists():
            try:
                previous = json.loads(marker.read_text())["files"]
            except (ValueError, KeyError, TypeError):
                raise UsageError(
                    f"{marker} is damaged", "remove it, or use an empty --out"
                ) from None
        foreign = [p for p in present if p not in previous and p not in files]
        if foreign:
            raise UsageError(
                f"--out {out} holds files gpuplan did not generate: {', '.join(foreign[:5])}",
                "use an empty or new folder, or the folder of an earlier `gpuplan generate`",
            )
    out.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if name != MARKER:
            atomic_write_text(out / name, content)
    for stale in sorted(set(previous) - set(files)):
        (out / stale).unlink(missing_ok=True)
    atomic_write_text(out / MARKER, files[MARKER])  # last: it vouches for the rest
    return sorted(files)
