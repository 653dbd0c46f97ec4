"""Hetzner dedicated GPU servers (GEX line), ordered through the Robot webservice and set up
over SSH; iptables on the host is the firewall."""

from __future__ import annotations

from typing import Any

from infra import versions
from infra.options import ProjectOptions
from infra.targets import Capabilities, Target
from planner.decide.plan import Plan
from planner.errors import UsageError


def facts(plan: Plan, opts: ProjectOptions) -> dict[str, Any]:
    o = plan.offer
    location = str(o.provider_data.get("location") or o.location or o.region).upper()
    return {
        "product_id": o.provider_data.get("product_id") or o.instance_type,
        "location": location,
        # The OS wanted; the order uses the product's own image of that name (read from Robot
        # at order time by gpuplan_hetzner.choose_dist).
        "dist": "Ubuntu 24.04",
        "monthly_price_usd": plan.estimate.monthly_commitment_usd,
        "setup_fee_usd": plan.estimate.setup_fee_usd,
        # HTTPS for a domain the user points at the server (Caddy, Let's Encrypt).
        "tls_domain": opts.tls_domain,
        "tls_image": versions.CADDY_IMAGE,
    }


def require(opts: ProjectOptions) -> None:
    if not opts.ssh_cidr:
        raise UsageError(
            "a Hetzner project is installed over SSH and needs --ssh-cidr",
            "pass --ssh-cidr with the network you run `pulumi up` from, e.g. 203.0.113.7/32",
        )


TARGET = Target(
    name="hetzner",
    title="Hetzner",
    capabilities=Capabilities(
        multi_node=False,
        replicas=True,
        balancer=False,
        amd=False,
        spot=False,
        tls=False,
        tls_termination=False,
        tls_acme=True,
        firewall=True,
    ),
    facts=facts,
    boot_extras=True,
    require=require,
    ssh_key_unused="Robot installs the server with the keys named in gpuplan:robotKeyFingerprints "
    "(store your key in Robot and name it there)",
    setup_lines=(
        "export HETZNER_ROBOT_USER=... HETZNER_ROBOT_PASSWORD=...",
        "pulumi config set --path 'gpuplan:robotKeyFingerprints[0]' aa:bb:...",
        "pulumi config set --secret gpuplan:sshPrivateKey < ~/.ssh/id_ed25519",
    ),
    helper="gpuplan_hetzner.py",
    protects=(
        "the serving port only from --allow-cidr and SSH only from --ssh-cidr (iptables)",
        "every path but /health behind the API key (authenticating proxy)",
    ),
    exposes=(
        "the API key also sits in the Pulumi state (encrypted as a secret): guard the state "
        "backend and its passphrase",
        "the install connects over SSH without checking the server's host key (the program "
        "does not know it in advance), and sends the API key and HF token on that session: "
        "someone able to intercept that connection (on the path between the deploying machine "
        "and the new server) could read them",
    ),
)
