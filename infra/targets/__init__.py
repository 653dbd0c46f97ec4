"""One module per cloud that gpuplan writes projects for: its declared capabilities, the
reasons it refuses a plan, and the facts its templates need.

A target module defines ``TARGET`` (a Target). Targets are discovered from this package, so
adding a cloud is one provider module, one target module and one template folder
(tests/test_targets.py checks that the three sets agree). ``refusal(plan)`` answers "can gpuplan
write a project for this plan?" without raising, so the CLI can pick the best plan it can write
by asking instead of catching errors.
"""

from __future__ import annotations

import importlib
import ipaddress
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from infra.options import ProjectOptions
from planner.decide.plan import Plan
from planner.errors import UsageError
from planner.model.values import HF_ID


@dataclass(frozen=True, slots=True)
class Capabilities:
    multi_node: bool  # one model over several machines (private network between them)
    replicas: bool  # several identical copies
    balancer: bool  # a managed load balancer in front of the replicas
    amd: bool  # AMD GPUs (vLLM's ROCm image)
    spot: bool  # interruptible machines
    tls: bool  # the endpoint is HTTPS without anything from the user
    tls_termination: bool  # HTTPS with the user's certificate (ProjectOptions.tls_certificate)
    # HTTPS for a domain the user points at the machine (ProjectOptions.tls_domain alone): the
    # machine obtains a Let's Encrypt certificate (HTTP-01 on port 80) and serves 443.
    tls_acme: bool
    firewall: bool  # the serving port is closed to networks outside --allow-cidr


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # = provider name = template folder
    title: str
    capabilities: Capabilities
    facts: Callable[[Plan, ProjectOptions], dict[str, Any]]  # provider part of PLAN
    refuse: Callable[[Plan], str | None] = lambda plan: None  # target-specific refusals
    warn: Callable[[Plan], list[str]] = lambda plan: []  # target-specific warnings
    require: Callable[[ProjectOptions], None] = lambda opts: None  # raises UsageError
    # Provider settings for Pulumi.yaml's project-level config (defaults for every stack; the
    # user's stack file overrides them).
    project_config: Callable[[dict[str, Any]], dict[str, Any]] = lambda data: {}
    setup_lines: tuple[str, ...] = ()
    helper: str | None = None  # dynamic provider module copied into the project
    # vLLM runs behind gpuplan_proxy.py (every path but /health needs the key): on machines
    # gpuplan sets up, and in the container where the platform lets gpuplan pick its command.
    auth_proxy: bool = True
    # Machines gpuplan boots itself that can use gpuplan_boot_extras.py (HTTPS with Caddy, the
    # Hugging Face cache on instance store): the module is copied into their projects only.
    boot_extras: bool = False
    # Why --tls-domain alone gives no HTTPS here (targets without tls_acme): said when refused.
    no_tls_reason: str = ""
    # GB of the root disk the boot image takes before anything is downloaded (sizing.disk_gb)
    boot_image_gb: int = 30
    # Why the project does not install --ssh-key here (None: it does), said when one is given
    ssh_key_unused: str | None = None
    protects: tuple[str, ...] = field(default=())  # README: what the deployment protects
    exposes: tuple[str, ...] = field(default=())  # README: what it does not


@cache
def targets() -> dict[str, Target]:
    """Every target, by name, discovered from this package's modules."""
    found: dict[str, Target] = {}
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        target = importlib.import_module(f"{__name__}.{module.name}").TARGET
        if target.name != module.name:
            raise RuntimeError(f"target module {module.name} declares {target.name}")
        found[target.name] = target
    return dict(sorted(found.items()))


def _titles(names: list[str]) -> str:
    titles = [targets()[n].title for n in names]
    return " and ".join(titles) if len(titles) <= 2 else ", ".join(titles)


def is_amd(gpu: str) -> bool:
    """Whether the canonical GPU is an AMD card: the GPU table's vendor field, the one place
    that knows (a card missing from the table is not AMD as far as gpuplan can tell)."""
    from planner.offers.gpus import gpu_table

    spec = gpu_table().get(gpu)
    return spec is not None and spec.vendor == "amd"


def refusal(plan: Plan) -> str | None:
    """Why gpuplan cannot write a project for ``plan``, or None when it can."""
    o = plan.offer
    target = targets().get(o.provider)
    if target is None:
        return f"no infrastructure target for {o.provider} yet"
    caps = target.capabilities
    if "discontinued" in o.notes:  # the catalog's note: the product can no longer be ordered
        return f"{o.provider} {o.instance_type} is discontinued and can no longer be ordered"
    if is_amd(o.gpu) and not caps.amd:
        return (
            f"AMD GPUs need vLLM's ROCm image, which gpuplan does not deploy on {target.title} yet"
        )
    if plan.layout.nodes > 1:
        if not caps.multi_node:
            able = [n for n, t in targets().items() if t.capabilities.multi_node]
            return (
                f"multi-node plans need private networking between machines, which gpuplan "
                f"provisions on {_titles(able)} only, not {target.title}"
            )
        if plan.estimate.replicas > 1:
            return "replicas of multi-node deployments are not generated"
    if plan.estimate.replicas > 1 and not caps.replicas:
        return f"replicas are not generated on {target.title}"
    if plan.need.spot and not caps.spot:
        return f"gpuplan does not rent interruptible (spot) machines on {target.title}"
    return target.refuse(plan)


def require(plan: Plan, opts: ProjectOptions) -> None:
    """Raise a UsageError when a project for this plan would not work with these options: a
    guessed model (vLLM would crash-loop on a repository that may not exist while the machine
    bills), or options the target needs (Hetzner installs over SSH: --ssh-cidr)."""
    target = targets().get(plan.offer.provider)
    if target is None:
        raise UsageError(f"no infrastructure template for provider '{plan.offer.provider}'")
    if plan.model_is_guess and not opts.allow_guessed_model:
        raise UsageError(
            f"'{plan.base_model}' was guessed from its name, not read from a config: the "
            "project would serve a repository that may not exist",
            "give an existing Hugging Face id (or a GGUF file), or insist with allow_guessed_model",
        )
    if plan.model_source in {"config", "gguf"} and not HF_ID.match(plan.model):
        # vLLM on the machine downloads the model from the Hub by this name: a local folder's
        # name is not a repository, and the folder is not on the machine
        raise UsageError(
            f"'{plan.model}' was read from a local file and is not a Hugging Face id: vLLM on "
            "the machine would look for that repository and fail to start",
            "name the model's Hub id with the file: `gpuplan generate ORG/NAME --config PATH`",
        )
    if plan.runs_remote_code and not opts.allow_remote_code:
        raise UsageError(
            f"'{plan.base_model}' starts only with vLLM's --trust-remote-code, which runs code "
            "from the model's repository on the server (with the API key and HF token in reach)",
            "read that repository's code, then insist with --allow-remote-code "
            "(allow_remote_code in gpuplan.toml)"
            + (
                ""
                if plan.revision
                else "; to run the commit you read, not the latest, plan its Hub id with "
                "--from-hub --revision COMMIT"
            ),
        )
    why = tls_refusal(plan, opts)
    if why:
        raise UsageError(why, tls_refusal_hint(plan, opts))
    target.require(opts)


def tls_refusal_hint(plan: Plan, opts: ProjectOptions) -> str:
    """What to do when tls_refusal stops this plan with these options."""
    target = targets()[plan.offer.provider]
    caps = target.capabilities
    if opts.tls_certificate and not caps.tls_termination:
        if caps.tls_acme and plan.estimate.replicas == 1:
            return f"drop --tls-certificate: on {target.title}, --tls-domain alone gives HTTPS"
        return "drop --tls-certificate: only a load balancer with your certificate uses it"
    if caps.tls_termination:  # a domain alone where the balancer needs the certificate
        return "add --tls-certificate (a certificate for the domain), or drop --tls-domain"
    if caps.tls_acme:  # one machine's certificate, several replicas
        return (
            "allow one machine (--max-replicas 1), or drop --tls-domain and put TLS in front "
            "of the load balancer yourself"
        )
    if caps.tls:
        return f"drop --tls-domain: {target.title} already serves HTTPS at its own address"
    able = _titles([n for n, t in targets().items() if t.capabilities.tls_acme])
    return (
        "drop the TLS options (the endpoint is then plain HTTP: put TLS in front yourself), "
        f"or choose a plan on {able}, where --tls-domain alone gives HTTPS"
    )


def tls_refusal(plan: Plan, opts: ProjectOptions) -> str | None:
    """Why the HTTPS these options ask for cannot be written for this plan, or None."""
    target = targets()[plan.offer.provider]
    caps = target.capabilities
    if opts.tls_certificate:
        if caps.tls_termination:
            return None
        able = [n for n, t in targets().items() if t.capabilities.tls_termination]
        return (
            f"gpuplan terminates TLS with a certificate on {_titles(able)} only, not {target.title}"
        )
    if not opts.tls_domain:
        return None
    if not caps.tls_acme:
        return target.no_tls_reason or f"gpuplan cannot serve HTTPS for a domain on {target.title}"
    if plan.estimate.replicas > 1:
        # One certificate on one machine: a domain resolves to one address, and Let's Encrypt's
        # HTTP-01 request could reach a replica that did not ask for it.
        return (
            f"with --tls-domain the machine itself gets the certificate, so it serves one "
            f"machine; this plan has {plan.estimate.replicas} replicas"
        )
    return None


def tls_hint(target: Target) -> str:
    """How to get HTTPS on this target, or why gpuplan cannot give it (plain-HTTP endpoints)."""
    caps = target.capabilities
    if caps.tls_acme:
        return "regenerate with --tls-domain for HTTPS with a Let's Encrypt certificate"
    if caps.tls_termination:
        return "regenerate with --tls-certificate and --tls-domain for a TLS listener"
    return target.no_tls_reason


def acme_domain(opts: ProjectOptions) -> str | None:
    """The domain the machine gets a Let's Encrypt certificate for (--tls-domain without a
    certificate of the user's own), or None."""
    return None if opts.tls_certificate else opts.tls_domain


def is_https(plan: Plan, opts: ProjectOptions) -> bool:
    """Whether the endpoint is HTTPS (options that tls_refusal accepts)."""
    caps = targets()[plan.offer.provider].capabilities
    return caps.tls or bool(opts.tls_certificate) or (bool(opts.tls_domain) and caps.tls_acme)


# Source addresses no request from the internet carries: RFC 1918, carrier-grade NAT (RFC
# 6598), loopback, link-local and IPv6 unique-local (RFC 4193). Python's is_private also counts
# the documentation ranges (203.0.113.0/24...), which examples use as public addresses.
_NOT_ROUTED = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
              "169.254.0.0/16", "fc00::/7", "fe80::/10", "::1/128")
)  # fmt: skip


def _never_on_the_internet(cidr: str) -> bool:
    net = ipaddress.ip_network(cidr, strict=False)
    return any(net.version == n.version and net.subnet_of(n) for n in _NOT_ROUTED)  # type: ignore[arg-type]


def warnings(plan: Plan, opts: ProjectOptions) -> list[str]:
    """What the user should read before deploying this project (the CLI prints them)."""
    target = targets()[plan.offer.provider]
    out = []
    if not target.capabilities.firewall:
        out.append(
            f"{target.title} has no firewall gpuplan can set: --allow-cidr is not enforced, "
            "the API key is the only protection"
        )
    if not target.auth_proxy:
        out.append(
            f"on {target.title} vLLM runs without gpuplan's authenticating proxy: its API key "
            "guards /v1 only, and /invocations, /tokenize and /metrics answer anyone "
            "(vllm-project/vllm#58144)"
        )
    if not is_https(plan, opts):
        out.append(
            f"the {target.title} endpoint is plain HTTP: put TLS in front ({tls_hint(target)})"
        )
    elif acme_domain(opts):
        out.append(
            f"HTTPS at {opts.tls_domain} starts once its DNS A record points at the `address` "
            "stack output (the machine then gets a Let's Encrypt certificate); port 80 is open "
            "to the internet for Let's Encrypt's validation"
        )
    if opts.allow_open_port:
        out.append("the serving port is open to the whole internet (allow_open_port)")
    elif (
        target.capabilities.firewall
        and opts.allowed_cidrs
        and all(map(_never_on_the_internet, opts.allowed_cidrs))
    ):
        out.append(
            f"--allow-cidr {', '.join(opts.allowed_cidrs)} holds private ranges only, but the "
            "endpoint is a public address: requests to it arrive from the clients' public (NAT) "
            "addresses, so no one reaches it over the internet (only clients inside its own "
            "network, at its private address); allow your network's public egress range instead"
        )
    out += target.warn(plan)
    if plan.model_is_guess:
        out.append(f"'{plan.base_model}' is a guess from its name; check the repository exists")
    if opts.ssh_public_key and target.ssh_key_unused:
        out.append(f"--ssh-key is not installed on {target.title}: {target.ssh_key_unused}")
    return out
