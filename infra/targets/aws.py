"""AWS EC2: security groups, a network load balancer for replicas, cluster placement groups
for multi-node, spot, and an SSM parameter per secret read at boot by the instance role."""

from __future__ import annotations

import math
from typing import Any

from infra import versions
from infra.options import ProjectOptions
from infra.sizing import download_gb
from infra.targets import Capabilities, Target
from planner.decide.plan import Plan


def gp3_throughput_mib_s(plan: Plan) -> int:
    """gp3 starts at 125 MiB/s, at which a 800 GB checkpoint takes ~1.8 h to write and read
    back on every restart; up to 1,000 MiB/s can be provisioned (with >= 4 IOPS per MiB/s:
    docs.aws.amazon.com/ebs/latest/userguide/general-purpose.html#gp3-ebs-volume-type). The
    extra throughput costs a few dollars a month, small beside a GPU's hour."""
    return 1000 if download_gb(plan) >= 100 else 250


def local_disk_min_gb(plan: Plan) -> int | None:
    """GB the Hub cache needs on an instance store disk (the download with 20% spare), or None
    when the offer says its instance store is smaller (or absent): then it is not tried. An
    unknown instance store (None) is looked for at boot."""
    need_gb = math.ceil(download_gb(plan) * 1.2)
    have_gb = plan.offer.disk_gb
    if have_gb is not None and have_gb < need_gb:
        return None
    return need_gb


def facts(plan: Plan, opts: ProjectOptions) -> dict[str, Any]:
    throughput = gp3_throughput_mib_s(plan)
    return {
        "disk_throughput_mib_s": throughput,
        "disk_iops": max(3000, 4 * throughput),
        "instance_type": plan.offer.instance_type,
        "region": plan.offer.region,
        "ami_ssm_parameter": versions.AWS_DLAMI_SSM,
        # An existing VPC and subnets (organisations that deleted the default VPC), else the
        # default VPC.
        "vpc_id": opts.network,
        "subnet_ids": list(opts.subnets),
        # The Hugging Face cache on local NVMe (instance store) when the type has one large
        # enough (checked at boot; offer.disk_gb is the instance store, when known).
        "local_disk_min_gb": local_disk_min_gb(plan),
        "tls_certificate_arn": opts.tls_certificate,
        "tls_domain": opts.tls_domain,
        # AWS prices spot per availability zone: the plan's spot price is this zone's (its
        # name, or its ID such as use1-az1 from a catalog), where the program places the machine
        "spot_zone": spot_zone(plan),
    }


def spot_zone(plan: Plan) -> str | None:
    """The zone a spot plan's machines go to: the one whose price the plan has, for one
    replica (its nodes share a placement group, so one zone anyway). Replicas behind a
    balancer stay spread over the zones, so that one zone running out of spot capacity takes
    only its share (warn says what they may cost)."""
    if not plan.need.spot or plan.estimate.replicas > 1:
        return None
    return plan.offer.provider_data.get("spot_zone")


def warn(plan: Plan) -> list[str]:
    """Where a spot plan's price may not be what the machines cost: replicas spread over the
    zones, or an offer that does not name its zone (a catalog without zones)."""
    if not plan.need.spot or spot_zone(plan):
        return []
    prices = plan.offer.provider_data.get("spot_by_zone") or {}
    if plan.estimate.replicas > 1 and prices:
        low, high = min(prices.values()), max(prices.values())
        return [
            f"the {plan.estimate.replicas} spot replicas spread over the availability zones "
            f"that offer {plan.offer.instance_type}, whose spot prices ran ${low:.2f}-"
            f"${high:.2f}/h when read; the plan counts the cheapest"
        ]
    return [
        "the spot price is the cheapest of the region's availability zones and the offer "
        "does not say which: the machine may land in a zone whose spot price is higher "
        "(`gpuplan catalog refresh --provider aws` with AWS credentials reads each zone's)"
    ]


TARGET = Target(
    name="aws",
    title="AWS",
    capabilities=Capabilities(
        multi_node=True,
        replicas=True,
        balancer=True,
        amd=False,
        spot=True,
        tls=False,
        tls_termination=True,
        tls_acme=False,
        firewall=True,
    ),
    facts=facts,
    warn=warn,
    boot_extras=True,
    no_tls_reason=(
        "on AWS gpuplan terminates TLS on a network load balancer with an ACM certificate: "
        "give --tls-certificate (an ACM certificate for the domain) with --tls-domain"
    ),
    project_config=lambda data: {"aws:region": data["region"]},
    # The Base DLAMI ships several CUDA toolkits: AWS recommends a 100 GB root volume for it
    # (aws/deep-learning-containers#2425: "Recommended storage size for Base DLAMI on EC2
    # console is 100 GB"), and a root volume smaller than the AMI's snapshot fails RunInstances
    # (InvalidBlockDeviceMapping).
    boot_image_gb=100,
    protects=(
        "the serving port only from --allow-cidr (security group)",
        "every path but /health behind the API key (authenticating proxy)",
        "secrets in SSM Parameter Store (SecureString), read at boot by the instance role, "
        "which may read those parameters and nothing else; IMDSv2 (session tokens)",
        "encrypted root disk",
    ),
    exposes=(
        "the containers use the host's network, so they can reach the instance metadata "
        "service and the instance role's credentials (IMDSv2's hop limit 1 stops only bridged "
        "containers); with them a compromised container can read the API key and HF token "
        "parameters, which its environment holds anyway",
        "the API key also sits in the Pulumi state (encrypted as a secret): guard the state "
        "backend and its passphrase",
    ),
)
