"""What the user decides about a generated project besides the plan: stack, networks, SSH,
escape hatches (disk, image, extra vLLM flags), existing VPC/network. Validated once here."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from planner.errors import UsageError, short


@dataclass(frozen=True, slots=True)
class ProjectOptions:
    stack: str = "dev"
    allowed_cidrs: tuple[str, ...] = ()
    ssh_cidr: str | None = None
    ssh_public_key: str | None = None
    # Escape hatches that gpuplan.toml can carry, so that `check` still agrees (issue 12, #24).
    disk_gb: int | None = None  # root disk instead of the size computed from the download
    image: str | None = None  # vLLM image instead of versions.VLLM_IMAGE
    extra_vllm_args: tuple[str, ...] = ()  # appended to the plan's `vllm serve` arguments
    # An existing network instead of a dedicated one (issue 12, #6): AWS VPC id + subnet ids,
    # GCP network + subnetwork (names or self links).
    network: str | None = None
    subnets: tuple[str, ...] = ()
    # TLS: the endpoint's domain, https://<tls_domain>. On AWS with an ACM certificate ARN (an
    # NLB TLS listener on 443; point the domain at the balancer); on GCP and Hetzner alone (the
    # machine gets a Let's Encrypt certificate; point the domain at its address).
    tls_certificate: str | None = None
    tls_domain: str | None = None
    # Say yes to what gpuplan otherwise refuses: a serving port open to the whole internet, a
    # model known only by a guess from its name (the repository may not exist).
    allow_open_port: bool = False
    allow_guessed_model: bool = False
    # Let vLLM run code from the model's repository (--trust-remote-code): a model whose
    # tokenizer or model code ships only there (Kimi K2) does not start without it, and that
    # code then runs on the server with the API key and HF token in reach.
    allow_remote_code: bool = False


def _cidr(value: str, what: str) -> str:
    try:
        net = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise UsageError(f"{what} '{value}' is not a CIDR", "e.g. 203.0.113.7/32") from None
    if str(net) != value.strip() and "/" in value:
        # 203.0.113.7/24: one address or its whole network? Widening it silently could open
        # the port to 255 more hosts than meant.
        host = ipaddress.ip_interface(value.strip()).ip
        raise UsageError(
            f"{what} '{value}' has host bits set",
            f"give {host}/{host.max_prefixlen} for that address, or {net} for its network",
        )
    return str(net)


def _covers_everything(nets: list[str]) -> bool:
    """True when the networks together cover all IPv4 or all IPv6 addresses (0.0.0.0/0, or
    0.0.0.0/1 + 128.0.0.0/1, or ::/0 ...)."""
    for version, whole in ((4, "0.0.0.0/0"), (6, "::/0")):
        mine = [ipaddress.ip_network(n) for n in nets if ipaddress.ip_network(n).version == version]
        collapsed = list(ipaddress.collapse_addresses(mine))  # type: ignore[type-var]
        if collapsed == [ipaddress.ip_network(whole)]:
            return True
    return False


def check_stack(stack: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,60}", stack):
        raise UsageError(
            f"stack name '{short(stack, 70)}' is not valid",
            "1 to 60 letters, digits, '-', '_' and '.'",
        )
    return stack


def check_cidr(value: str) -> str:
    """One --allow-cidr value, normalised (a UsageError when it is not a CIDR)."""
    return _cidr(value, "--allow-cidr")


# vLLM flags that choose which commit of the repository is served (its weights, tokenizer and
# code): the plan's --revision says it, so gpuplan plans it rather than take it as an extra.
PLANNED_REVISION_FLAGS = ("--revision", "--code-revision", "--tokenizer-revision")
# vLLM flags whose value is a secret (the API server's --api-key, ModelConfig.hf_token): as an
# extra argument it would be written into the committed program and the machine's boot script.
# The project passes both from the stack's secrets instead (gpuplan:apiKey, gpuplan:hfToken).
SECRET_FLAGS = ("--api-key", "--hf-token")
# vLLM flags the plan sets (planner/decide/planbuild.py), with their short forms and the gpuplan
# setting that plans them. Appended after the plan's, an extra one wins (argparse keeps the last)
# and the plan's memory fit and speed no longer hold (--max-model-len=999999 on a TP1 plan).
_REPLICAS = "--concurrency, --target-rps or --deadline-hours (gpuplan sizes the replicas)"
_EXPERTS = (
    "nothing: gpuplan adds it where the plan's layout needs it (block-FP8 experts that do not "
    "split over its GPUs)"
)
PLANNED_FLAGS: dict[str, tuple[tuple[str, ...], str]] = {
    "--tensor-parallel-size": (("-tp",), "--tp N (tp in [constraints])"),
    "--pipeline-parallel-size": (("-pp",), "--max-nodes N (gpuplan plans the stages)"),
    "--data-parallel-size": (("-dp",), _REPLICAS),
    "--data-parallel-size-local": (("-dpl",), _REPLICAS),
    "--enable-expert-parallel": (("-ep",), _EXPERTS),
    "--no-enable-expert-parallel": ((), _EXPERTS),
    "--max-model-len": ((), "--context N (context in [workload])"),
    "--gpu-memory-utilization": ((), "--gpu-memory-utilization F"),
    "--max-num-seqs": ((), "--concurrency N, or a target or a job (gpuplan sizes the batch)"),
    "--quantization": (("-q",), "--quant FORMAT (quant in [model])"),
    "--dtype": ((), "--quant bf16 or fp16 (the dtype follows the format and the GPU)"),
    "--kv-cache-dtype": ((), "--kv-cache-dtype auto|fp8"),
    "--served-model-name": ((), "MODEL: the endpoint serves the model under its id"),
    "--model": ((), "MODEL"),
}
_SHORT_FLAGS = {short: flag for flag, (shorts, _) in PLANNED_FLAGS.items() for short in shorts}
_GUARDED = (*PLANNED_FLAGS, *SECRET_FLAGS, *PLANNED_REVISION_FLAGS)


def vllm_flag(arg: str) -> str | None:
    """The long flag ``arg`` sets as vLLM's parser reads it, or None for a value: ``--name`` or
    ``--name=value`` with underscores read as dashes before any ``.`` (FlexibleArgumentParser),
    and the planned flags' short forms (``-tp 2``, ``-tp=2``; ``-qfp8`` as argparse reads a
    one-letter option)."""
    if arg.startswith("--"):
        head, dot, rest = arg.split("=", 1)[0][2:].partition(".")
        flag = "--" + head.replace("_", "-") + dot + rest
        # argparse (allow_abbrev, which vLLM's parser keeps) takes a unique prefix for the
        # whole flag: a prefix of a flag gpuplan guards is read as that flag (two letters at
        # least: `--` alone ends argparse's options, and `--x` is ambiguous in vLLM's)
        if not dot and flag not in _GUARDED:
            return next((g for g in _GUARDED if g.startswith(flag) and len(flag) > 3), flag)
        return flag
    if arg.startswith("-") and len(arg) > 1:
        name = arg.split("=", 1)[0]
        if name in _SHORT_FLAGS:
            return _SHORT_FLAGS[name]
        if arg[:2] in _SHORT_FLAGS:  # -q with its value attached
            return _SHORT_FLAGS[arg[:2]]
    return None


def validate_options(opts: ProjectOptions) -> ProjectOptions:
    """The options, normalised; a UsageError names the first bad value."""
    check_stack(opts.stack)
    if not opts.allowed_cidrs:
        raise UsageError(
            "no --allow-cidr given: the serving port opens only to listed networks",
            "e.g. --allow-cidr 203.0.113.7/32 (your office or VPN), or allow_cidrs in "
            "[deploy] of gpuplan.toml, or GPUPLAN_ALLOW_CIDRS",
        )
    allowed = tuple(_cidr(c, "--allow-cidr") for c in opts.allowed_cidrs)
    if _covers_everything(list(allowed)) and not opts.allow_open_port:
        raise UsageError(
            "refusing to open the serving port to the whole internet (--allow-cidr covers "
            "every address)",
            "give your own networks, or insist with --allow-open-port (allow_open_port in "
            "[deploy]; the API key is then the only protection)",
        )
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
    if opts.disk_gb is not None and not 20 <= opts.disk_gb <= 65536:
        raise UsageError(f"disk size {opts.disk_gb} GB is out of range", "20 to 65536 GB")
    if opts.image is not None and not re.fullmatch(r"[a-z0-9][a-z0-9._/:@-]{0,254}", opts.image):
        raise UsageError(f"image '{opts.image}' is not a Docker image reference")
    if opts.tls_certificate and not opts.tls_domain:
        raise UsageError(
            "a TLS certificate needs the domain it covers", "add --tls-domain, e.g. llm.example.com"
        )
    if opts.tls_certificate and not re.fullmatch(
        r"arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+", opts.tls_certificate
    ):
        raise UsageError(f"'{opts.tls_certificate}' is not an ACM certificate ARN")
    if opts.tls_domain and not re.fullmatch(
        r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", opts.tls_domain
    ):
        raise UsageError(f"'{opts.tls_domain}' is not a domain name")
    if opts.subnets and not opts.network:
        raise UsageError("subnets given without the network (VPC) they belong to")
    for arg in opts.extra_vllm_args:
        flag, given = vllm_flag(arg), short(arg.split("=", 1)[0], 40)
        if flag in PLANNED_FLAGS:
            alias = "" if flag == given else f" (vLLM reads it as {flag})"
            raise UsageError(
                f"--extra-vllm-arg {given}{alias} would override the plan's own value, which "
                "its memory fit and speed depend on",
                f"set it through gpuplan instead: {PLANNED_FLAGS[flag][1]}",
            )
        if flag in SECRET_FLAGS:
            raise UsageError(
                f"--extra-vllm-arg {flag} would write a secret into the project's files and "
                "the machine's boot script",
                "the project sets both from the stack's secrets: pulumi config set --secret "
                "gpuplan:apiKey (or gpuplan:hfToken)",
            )
        if flag in PLANNED_REVISION_FLAGS:  # appended last, they would override the plan's
            raise UsageError(
                f"--extra-vllm-arg {given} would serve another revision than the one "
                "planned (and the project's README and `check` would not know)",
                "plan that revision instead: --revision REV (revision in [model])",
            )
    return replace(opts, allowed_cidrs=allowed, ssh_cidr=ssh, ssh_public_key=key)
