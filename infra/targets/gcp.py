"""Google Compute Engine: a dedicated VPC network with explicit firewall rules, managed
instance groups behind a passthrough load balancer for replicas, compact placement for
multi-node, spot (a single spot VM in a managed instance group of one, which replaces it after a
preemption), and Secret Manager secrets read at boot by a narrow service account."""

from __future__ import annotations

from typing import Any

from infra import versions
from infra.options import ProjectOptions
from infra.sizing import heal_delay_s, ready_s, resource_name, short_id, slug
from infra.targets import Capabilities, Target
from planner.decide.plan import Plan
from planner.offers.offer import sold_on_demand

# Machine series that take Hyperdisk only: A3 Ultra (a3-ultragpu), A3 Mega (a3-megagpu), A4
# (a4-highgpu), A4X (a4x-highgpu) - pd-balanced is refused there (cloud.google.com/compute/docs/
# accelerator-optimized-machines, "Supported disk types"; Vertex AI's DiskSpec documents
# hyperdisk-balanced as the A3U boot disk default).
HYPERDISK_ONLY = ("a3-ultragpu", "a3-megagpu", "a4-highgpu", "a4x-highgpu")
# A3 and A4 machines want the gVNIC network interface (cloud.google.com/compute/docs/
# networking/using-gvnic: "required" for A3; the first NIC of A3 Ultra/A4 is gVNIC).
GVNIC = ("a3-", "a4-", "a4x-")


def dws_only(machine: str) -> bool:
    """Machines that are not sold on demand: reservations, DWS flex-start or spot only. The
    planner prices them on demand at None (planner.offers.offer.sold_on_demand); a plan file
    written before that is refused here."""
    return not sold_on_demand("gcp", machine)


def facts(plan: Plan, opts: ProjectOptions) -> dict[str, Any]:
    o = plan.offer
    data = o.provider_data
    machine = str(data.get("machine_type") or o.instance_type)
    # N1 hosts attach their GPUs (a2/a3/g2 bundle theirs): the offer says how many.
    count = int(data.get("accelerator_count") or 0)
    accel = versions.GCP_ATTACHED_ACCELERATORS.get(o.gpu) if count else None
    zones = sorted(data.get("zones") or ())
    zone = o.zone or (zones[0] if zones else f"{o.region}-a")
    return {
        "machine_type": machine,
        "accelerator_type": accel,
        "accelerator_count": count,
        "region": o.region,
        "zone": zone,
        "image_family": versions.GCP_IMAGE_FAMILY,
        "disk_type": "hyperdisk-balanced" if machine.startswith(HYPERDISK_ONLY) else "pd-balanced",
        "nic_type": "GVNIC" if machine.startswith(GVNIC) else None,
        # An existing network/subnetwork, else a dedicated network made by the program.
        "network": opts.network,
        "subnetwork": opts.subnets[0] if opts.subnets else None,
        "service_account_id": short_id(plan, opts, 30),
        "secret_prefix": f"{resource_name(plan)}-{slug(opts.stack, 30)}",
        "heal_delay_s": heal_delay_s(plan),  # None: no auto-healing (sizing.heal_delay_s)
        # HTTPS for a domain the user points at the VM's static address (Caddy, Let's Encrypt).
        "tls_domain": opts.tls_domain,
        "tls_image": versions.CADDY_IMAGE,
    }


def refuse(plan: Plan) -> str | None:
    o = plan.offer
    attached = int(o.provider_data.get("accelerator_count") or 0)
    if attached and o.gpu not in versions.GCP_ATTACHED_ACCELERATORS:
        return f"no GCP accelerator type known for {o.gpu} on N1"
    machine = str(o.provider_data.get("machine_type") or o.instance_type)
    if dws_only(machine) and not plan.need.spot:
        return (
            f"{o.instance_type} is sold through reservations, DWS flex-start or spot only, "
            "not on demand"
        )
    return None


def warn(plan: Plan) -> list[str]:
    """Replicas that need longer than GCP's auto-healing delay allows get none (heal_delay_s)."""
    if plan.estimate.replicas > 1 and plan.layout.nodes == 1 and heal_delay_s(plan) is None:
        return [
            f"auto-healing is off: a new replica needs about {ready_s(plan) // 60} min to "
            "download and load the model (at an assumed 100 MB/s), longer than the hour GCP "
            "lets it start before its health checks count; a replica VM that fails is not "
            "replaced by itself (systemd restarts vLLM)"
        ]
    return []


TARGET = Target(
    name="gcp",
    title="Google Cloud",
    capabilities=Capabilities(
        multi_node=True,
        replicas=True,
        balancer=True,
        amd=False,
        spot=True,
        tls=False,
        tls_termination=False,
        tls_acme=True,
        firewall=True,
    ),
    facts=facts,
    boot_extras=True,
    refuse=refuse,
    warn=warn,
    project_config=lambda data: {"gcp:region": data["region"], "gcp:zone": data["zone"]},
    setup_lines=("pulumi config set gcp:project YOUR_PROJECT",),
    protects=(
        "the serving port only from --allow-cidr (firewall rule on a dedicated network)",
        "every path but /health behind the API key (authenticating proxy)",
        "secrets in Secret Manager, read at boot by a service account that may read only them",
    ),
    exposes=(
        "the containers use the host's network, so they can reach the metadata server and an "
        "access token of the VM's service account; with it a compromised container can read "
        "the API key and HF token secrets, which its environment holds anyway (the account "
        "may read only those)",
        "the API key also sits in the Pulumi state (encrypted as a secret): guard the state "
        "backend and its passphrase",
    ),
)
