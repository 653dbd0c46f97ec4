"""AWS EC2: security groups, a network load balancer for replicas, cluster placement groups
for multi-node, spot, and an SSM parameter per secret read at boot by the instance role."""

from __future__ import annotations

from typing import Any

from infra import versions
from infra.options import ProjectOptions
from infra.targets import Capabilities, Target
from planner.decide.plan import Plan


def facts(plan: Plan, opts: ProjectOptions) -> dict[str, Any]:
    return {
        "instance_type": plan.offer.instance_type,
        "region": plan.offer.region,
        "ami_ssm_parameter": versions.AWS_DLAMI_SSM,
        # An existing VPC and subnets (organisations that deleted the default VPC), else the
        # default VPC.
        "vpc_id": opts.network,
        "subnet_ids": list(opts.subnets),
    }


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
        firewall=True,
    ),
    facts=facts,
    stack_config=lambda data: {"aws:region": data["region"]},
    protects=(
        "the serving port only from --allow-cidr (security group)",
        "every path but /health behind the API key (authenticating proxy)",
        "secrets in SSM Parameter Store (SecureString), read at boot by the instance role; "
        "IMDSv2 with hop limit 1",
        "encrypted root disk",
    ),
    exposes=(
        "the API key also sits in the Pulumi state (encrypted as a secret): guard the state "
        "backend and its passphrase",
    ),
)
