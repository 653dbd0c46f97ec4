"""Generated Pulumi projects: run in-process under mocks (tests/pulumi_harness.py), checked for
resources, secrets, security defaults, determinism, injection safety and golden files."""

from __future__ import annotations

import ast
import base64
import gzip
import ipaddress
import json
import os
import random
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.emit import MARKER, ProjectOptions, render_project, write_project
from planner.decide.plan import Need, Plan, plan_to_json
from planner.decide.rank import candidates_for, recommend
from planner.model.sources import load_model_spec
from planner.offers.gpus import gpu_table
from planner.offers.offer import Offer

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).parent / "golden"
HARNESS = Path(__file__).parent / "pulumi_harness.py"
CIDR = "203.0.113.0/24"
SSH = "198.51.100.7/32"
HF = "hf_testtoken"  # the models tests plan (meta-llama/*) are gated: the program needs one
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpuplanTestKeyOnlyForTests0000000000000 test@example"

OFFERS = {
    "aws": dict(
        instance_type="g6e.xlarge",
        region="us-east-1",
        gpu="l40s",
        gpu_count=1,
        price=1.861,
        spot=0.9,
    ),
    "gcp": dict(
        instance_type="n1-standard-8+2xT4",
        region="us-central1",
        gpu="t4",
        gpu_count=2,
        price=0.73,
        availability="zones: us-central1-b, us-central1-a",
        provider_data={
            "machine_type": "n1-standard-8",
            "accelerator_count": 2,
            "zones": ["us-central1-b", "us-central1-a"],
        },
    ),
    "runpod": dict(
        instance_type="1x NVIDIA L40S",
        region="global",
        gpu="l40s",
        gpu_count=1,
        price=0.79,
        tier="community",
        provider_data={"gpu_type_id": "NVIDIA L40S", "cloud_type": "COMMUNITY"},
    ),
    "vast": dict(
        instance_type="1x RTX 4090 offer 2201",
        region="SE",
        location="Sweden, SE",
        gpu="rtx-4090",
        gpu_count=1,
        price=0.31,
        provider_data={"gpu_name": "RTX 4090", "num_gpus": 1, "offer_id": 2201},
    ),
    "hetzner": dict(
        instance_type="GEX130",
        region="NBG1",
        location="Nuremberg, DE",
        provider_data={"product_id": "GEX130", "location": "NBG1"},
        gpu="rtx-6000-ada",
        gpu_count=1,
        price=1.3359,
        monthly=975.18,
        setup=0.0,
    ),
}


def make_offer(provider: str) -> Offer:
    d = OFFERS[provider]
    return Offer(
        provider=provider,
        instance_type=d["instance_type"],
        region=d["region"],
        gpu=d["gpu"],
        gpu_count=d["gpu_count"],
        gpu_memory_gb=gpu_table()[d["gpu"]].memory_gb,
        vcpus=8,
        ram_gib=32.0,
        disk_gb=None,
        price_usd_per_hour=d["price"],
        spot_price_usd_per_hour=d.get("spot"),
        billing="monthly" if "monthly" in d else "hourly",
        source="test",
        fetched_at="2026-11-22",
        monthly_price_usd=d.get("monthly"),
        setup_fee_usd=d.get("setup"),
        availability=d.get("availability"),
        tier=d.get("tier"),
        location=d.get("location"),
        provider_data=d.get("provider_data", {}),
    )


def opts_for(provider: str) -> ProjectOptions:
    """The least options a project needs (Hetzner installs over SSH: it needs --ssh-cidr)."""
    return ProjectOptions(allowed_cidrs=(CIDR,), ssh_cidr=SSH if provider == "hetzner" else None)


def make_plan(provider: str, model: str = "llama-3.1-8b", spot: bool = False) -> Plan:
    need = Need(context=4096, spot=spot)
    return recommend(
        candidates_for(load_model_spec(model), None), [make_offer(provider)], need
    ).plans[0]


def run_program(project: Path, config: dict) -> dict:
    cfg = project / "harness-config.json"
    defaults = {"gcp:project": "gpuplan-test", "gpuplan:hfToken": {"value": HF, "secret": True}}
    cfg.write_text(json.dumps({k: v for k, v in {**defaults, **config}.items() if v is not None}))
    out = project / "harness-out.json"
    proc = subprocess.run(
        [sys.executable, str(HARNESS), str(project), str(out), str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
    )
    assert out.exists(), proc.stderr[-2000:]
    result = json.loads(out.read_text())
    cfg.unlink()
    out.unlink()
    return result


def generate(
    tmp_path: Path, provider: str, ssh: bool = False, spot: bool = False, **opts
) -> tuple[Path, Plan]:
    plan = make_plan(provider, spot=spot)
    options = ProjectOptions(
        allowed_cidrs=(CIDR,),
        ssh_cidr=SSH if ssh else None,
        ssh_public_key=KEY if ssh else None,
        **opts,
    )
    out = tmp_path / provider
    write_project(render_project(plan, options), out)
    return out, plan


def by_type(result: dict, typ: str) -> list[dict]:
    return [r for r in result["resources"] if r["type"] == typ]


def boot_files(script: str) -> dict[str, str]:
    """Decode the files a boot script writes (echo BASE64 | base64 -d > PATH)."""
    return {
        m.group(2): gzip.decompress(base64.b64decode(m.group(1))).decode()
        for m in re.finditer(r"^echo (\S+) \| base64 -d \| gunzip > (\S+)$", script, re.M)
    }


def serve_args(plan: Plan) -> list[str]:
    """The plan's arguments as the project passes them: the model positional and first, no
    --model and no Ray executor anywhere."""
    args = list(plan.vllm_args)
    assert args[0] == plan.model
    assert "--model" not in args and "--distributed-executor-backend" not in args
    return args


def expected_command(plan: Plan) -> list[str]:
    return [
        "docker", "run", "--rm", "--name", "vllm", "--network", "host",
        "--env-file", "/etc/gpuplan/vllm.env", "--gpus", "all", "--ipc=host", "--shm-size", "16g",
        "-v", "/opt/gpuplan/hf:/root/.cache/huggingface",
        "-v", "/opt/gpuplan/vllm:/root/.cache/vllm",
        "vllm/vllm-openai:v0.33.0", *serve_args(plan), "--host", "127.0.0.1", "--port", "8001",
    ]  # fmt: skip


def check_boot(script: str, plan: Plan, secret_kind: str) -> dict[str, str]:
    """A cloud boot script: vLLM on loopback behind the proxy, secrets fetched at each start
    from the secret store, and no secret in the script itself."""
    files = boot_files(script)
    run = files["/opt/gpuplan/run-vllm.sh"].split("\n", 2)[2]
    assert shlex.split(run) == ["exec", *expected_command(plan)]
    assert "/etc/gpuplan/vllm.env" not in files  # written at boot from the secret store
    fetch = files["/opt/gpuplan/fetch-secrets.sh"]
    assert ("aws ssm get-parameter" if secret_kind == "aws" else "gcloud secrets") in fetch
    unit = files["/etc/systemd/system/vllm.service"]
    assert "ExecStartPre=/opt/gpuplan/fetch-secrets.sh" in unit and "Restart=always" in unit
    # the proxy's copy of the key is taken after the fetch, at every start: a rotated key
    # reaches vLLM and the proxy together
    assert unit.index("fetch-secrets.sh") < unit.index(boot_module().KEY_PRE.strip())
    proxy = files["/opt/gpuplan/run-proxy.sh"]
    assert "/gpuplan_proxy.py 0.0.0.0 8000 8001" in proxy
    assert files["/opt/gpuplan/gpuplan_proxy.py"].startswith('"""Authenticating reverse proxy')
    assert "generated-api-key" not in script and "VLLM_API_KEY=" not in script
    assert script.index("nvidia-smi") < script.index("systemctl restart vllm.service")
    return files


def check_container_script(script: str, plan: Plan) -> None:
    """RunPod/Vast `bash -c` script: the authenticating proxy on the public port, then vLLM on
    loopback."""
    lines = script.splitlines()
    decode = shlex.split(lines[1])
    proxy = gzip.decompress(base64.b64decode(decode[3])).decode()
    assert proxy == (ROOT / "templates/_shared/gpuplan_proxy.py").read_text()
    # the proxy gets the API key only, not the HF token
    cap = boot_module().connection_limit(serve_args(plan))
    proxy = f"env -u HF_TOKEN python3 /tmp/gpuplan_proxy.py 0.0.0.0 8000 8001 {cap}"
    assert lines[2].startswith(f"while :; do rc=0; {proxy} || rc=$?; ")
    assert lines[2].endswith("; done &")
    assert shlex.split(lines[3]) == [
        "exec", "vllm", "serve", *serve_args(plan), "--host", "127.0.0.1", "--port", "8001",
    ]  # fmt: skip


def shared_module(name: str):
    """templates/_shared/<name>.py, a module generated projects copy verbatim, loaded by path."""
    import importlib.util

    shared = str(ROOT / "templates/_shared")
    spec = importlib.util.spec_from_file_location(name, f"{shared}/{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, shared)  # its siblings, as in a generated project (gpuplan_gzip)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(shared)
    return module


def proxy_module():
    """gpuplan_proxy.py: the authenticating proxy in front of vLLM."""
    return shared_module("gpuplan_proxy")


def boot_module():
    """gpuplan_boot.py: the boot and container scripts."""
    return shared_module("gpuplan_boot")


def extras_module():
    """gpuplan_boot_extras.py (HTTPS with Caddy, local NVMe cache)."""
    return shared_module("gpuplan_boot_extras")


def probes(cidr: str) -> tuple[list[str], list[str]]:
    """Addresses at both ends of ``cidr``, and addresses just outside it and far away."""
    net = ipaddress.ip_network(cidr, strict=False)
    far = "8.8.8.8" if net.version == 4 else "2001:4860:4860::8888"
    inside = [str(net.network_address), str(net.broadcast_address)]
    outside = [str(net.broadcast_address + 1), str(net.network_address - 1), far]
    return inside, outside


def within(src: str, cidrs: tuple[str, ...]) -> bool:
    return any(ipaddress.ip_address(src) in ipaddress.ip_network(c, strict=False) for c in cidrs)


def check_firewall(script: str, allowed: tuple[str, ...], ssh: str | None) -> None:
    """Run the firewall script on a model of iptables (tests/iptables.py), twice as the unit
    does on every restart, and send it packets: the serving port and SSH are accepted only
    from their networks and dropped from everywhere else, for IPv4 and IPv6, and every other
    port is closed but to loopback. The containers run with host networking (asserted where
    the boot script is checked), so the serving port is the host's and its packets go through
    INPUT."""
    from tests.iptables import Firewall

    ssh_nets = (ssh,) if ssh else ()
    sources = ["8.8.8.8", "2001:4860:4860::8888", "10.0.0.1", "fd00::1"]
    for cidr in (*allowed, *ssh_nets):
        inside, outside = probes(cidr)
        sources += inside + outside
    host = Firewall()
    tables = None
    for _ in range(2):
        host.run_script(script)
        for src in sources:
            serving = "ACCEPT" if within(src, allowed) else "DROP"
            assert host.verdict(src, 8000) == serving, ("serving port", src)
            login = "ACCEPT" if within(src, ssh_nets) else "DROP"
            assert host.verdict(src, 22) == login, ("ssh", src)
            # every other port (vLLM's and PyTorch's own listeners) is closed, to all
            for port in (8001, 29500, 5557):
                assert host.verdict(src, port) == "DROP", (port, src)
            # a session already open is not cut: the SSH install that applies the rules runs on
            assert host.verdict(src, 22, state="ESTABLISHED") == "ACCEPT", src
        for loopback in ("127.0.0.1", "::1"):  # the proxy reaches vLLM on 127.0.0.1:8001
            assert host.verdict(loopback, 8001) == "ACCEPT"
        assert any(within(s, allowed) for s in sources) and any(
            not within(s, allowed) for s in sources
        )
        # Re-applying the script leaves the same rules, not a second copy of each.
        assert tables is None or host.chains == tables
        tables = {v: {k: list(r) for k, r in c.items()} for v, c in host.chains.items()}


# ------------------------------------------------------------------ per provider, under mocks
def test_aws_program(tmp_path):
    project, plan = generate(tmp_path, "aws")
    result = run_program(project, {})
    assert result["error"] is None
    [inst] = by_type(result, "aws:ec2/instance:Instance")
    i = inst["inputs"]
    assert i["instanceType"] == "g6e.xlarge" and i["ami"] == "ami-0123456789abcdef0"
    # IMDSv2 and hop limit 1; the hop limit does not stop host-network containers, and the
    # README says so instead of claiming it protects the role's credentials
    assert i["metadataOptions"]["httpTokens"] == "required"
    assert i["metadataOptions"]["httpPutResponseHopLimit"] == 1
    readme = (project / "README.md").read_text().splitlines()
    program = (project / "__main__.py").read_text()
    assert "--network host" in program and "cannot fetch role tokens" not in program
    assert not any("hop limit" in line for line in readme if line.startswith("- Protected"))
    assert any(
        "can reach the instance metadata service" in line
        for line in readme
        if line.startswith("- **Not protected**")
    )
    assert i["rootBlockDevice"]["encrypted"] is True and i["rootBlockDevice"]["volumeType"] == "gp3"
    assert i["rootBlockDevice"]["volumeSize"] >= 60
    disk = i["rootBlockDevice"]
    assert disk["throughput"] > 125 and disk["iops"] >= 4 * disk["throughput"]
    assert "instanceMarketOptions" not in i
    # a new DLAMI release, or a zone AWS adds for the type later, replaces nothing
    assert inst["ignore_changes"] == ["ami", "subnetId"]
    # a subnet in an AZ that offers the type, chosen stably (sorted)
    assert i["subnetId"] == "subnet-a"
    check_boot(i["userData"], plan, "aws")
    assert len(i["userData"].encode()) < 16384  # EC2's user-data limit
    [sg] = by_type(result, "aws:ec2/securityGroup:SecurityGroup")
    assert sg["inputs"]["vpcId"] == "vpc-0123"
    [rule] = sg["inputs"]["ingress"]
    assert (rule["fromPort"], rule["toPort"], rule["cidrBlocks"]) == (8000, 8000, [CIDR])
    assert not by_type(result, "aws:ec2/keyPair:KeyPair")
    [call] = [c for c in result["calls"] if c["token"] == "aws:ssm/getParameter:getParameter"]
    assert "deeplearning" in call["args"]["name"] and "nvidia-driver" in call["args"]["name"]
    # the API key is an SSM SecureString the instance role alone may read
    params = by_type(result, "aws:ssm/parameter:Parameter")
    assert sorted(p["inputs"]["name"].rsplit("/", 1)[1] for p in params) == ["api-key", "hf-token"]
    fetch = boot_files(i["userData"])["/opt/gpuplan/fetch-secrets.sh"]
    for param in params:
        assert param["inputs"]["type"] == "SecureString" and "value" in param["secret"]
        assert param["inputs"]["name"] in fetch
    assert HF not in i["userData"]
    [policy] = by_type(result, "aws:iam/rolePolicy:RolePolicy")
    statement = json.loads(policy["inputs"]["policy"])["Statement"]
    arns = sorted(p["inputs"]["arn"] for p in params)
    assert statement == [{"Action": "ssm:GetParameter", "Effect": "Allow", "Resource": arns}]
    assert len(by_type(result, "aws:iam/instanceProfile:InstanceProfile")) == 1


def test_aws_program_with_ssh_spot_given_secrets_and_an_existing_vpc(tmp_path):
    project, _plan = generate(
        tmp_path, "aws", ssh=True, spot=True, network="vpc-0abc", subnets=("subnet-x",)
    )
    result = run_program(
        project,
        {
            "gpuplan:apiKey": {"value": "my-key", "secret": True},
            "gpuplan:hfToken": {"value": "hf_abc", "secret": True},
        },
    )
    assert result["error"] is None
    [inst] = by_type(result, "aws:ec2/instance:Instance")
    assert inst["inputs"]["instanceMarketOptions"]["marketType"] == "spot"
    user_data = inst["inputs"]["userData"]
    assert "my-key" not in user_data and "hf_abc" not in user_data
    params = {p["inputs"]["name"].rsplit("/", 1)[1]: p for p in by_type(
        result, "aws:ssm/parameter:Parameter")}  # fmt: skip
    assert params["api-key"]["inputs"]["value"] == "my-key"
    assert params["hf-token"]["inputs"]["value"] == "hf_abc"
    assert "/hf-token" in boot_files(user_data)["/opt/gpuplan/fetch-secrets.sh"]
    ingress = by_type(result, "aws:ec2/securityGroup:SecurityGroup")[0]["inputs"]["ingress"]
    assert {(r["fromPort"], tuple(r["cidrBlocks"])) for r in ingress} == {
        (8000, (CIDR,)),
        (22, (SSH,)),
    }
    [key] = by_type(result, "aws:ec2/keyPair:KeyPair")
    assert key["inputs"]["publicKey"] == KEY
    assert not by_type(result, "random:index/randomPassword:RandomPassword")
    # the given VPC and subnet, not the default ones
    vpc_calls = [c for c in result["calls"] if c["token"] == "aws:ec2/getVpc:getVpc"]
    assert vpc_calls[0]["args"] == {"id": "vpc-0abc"}
    [subnets] = [c for c in result["calls"] if c["token"] == "aws:ec2/getSubnets:getSubnets"]
    filters = {f["name"]: f["values"] for f in subnets["args"]["filters"]}
    assert filters["subnet-id"] == ["subnet-x"] and "default-for-az" not in filters
    assert filters["availability-zone"] == ["us-east-1a", "us-east-1b"]


@pytest.mark.parametrize(
    "zone, subnet",
    [
        ("use1-az2", "subnet-b"),
        ("us-east-1b", "subnet-b"),
        ("use1-az3", "subnet-a"),
        (None, "subnet-a"),
    ],
)
def test_aws_spot_goes_to_the_zone_whose_price_the_plan_has(tmp_path, zone, subnet):
    """A new-user sweep: a p4d spot plan at $2.47/h was one zone's price (use1-az1; the others
    $7.88-8.19/h) while the program placed the machine in the first zone offering the type.
    The machine goes to the plan's zone (named, or by zone ID) when the VPC has a subnet
    there (the fake VPC: subnet-a in use1-az1, subnet-b in use1-az2), else to the others; an
    offer that names no zone is said at generate."""
    from infra.targets import warnings

    plan = make_plan("aws", spot=True)
    data = {"spot_zone": zone, "spot_by_zone": {zone: 2.0}} if zone else {}
    plan = replace(plan, offer=replace(plan.offer, provider_data=data))
    options = opts_for("aws")
    write_project(render_project(plan, options), tmp_path / "aws")
    result = run_program(tmp_path / "aws", {})
    assert result["error"] is None
    [inst] = by_type(result, "aws:ec2/instance:Instance")
    assert inst["inputs"]["subnetId"] == subnet
    assert inst["inputs"]["instanceMarketOptions"]["marketType"] == "spot"
    said = [w for w in warnings(plan, options) if "spot price is the cheapest" in w]
    assert bool(said) == (zone is None)
    on_demand = replace(plan, need=replace(plan.need, spot=False))
    assert not [w for w in warnings(on_demand, options) if "spot price" in w]


def test_gcp_program(tmp_path):
    project, plan = generate(tmp_path, "gcp")
    result = run_program(project, {})
    assert result["error"] is None
    [inst] = by_type(result, "gcp:compute/instance:Instance")
    i = inst["inputs"]
    assert i["machineType"] == "n1-standard-8" and i["zone"] == "us-central1-a"
    assert i["guestAccelerators"] == [{"count": 2, "type": "nvidia-tesla-t4"}]
    assert i["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert i["scheduling"]["provisioningModel"] == "STANDARD"
    assert "nvidia-580" in i["bootDisk"]["initializeParams"]["image"]
    assert i["bootDisk"]["initializeParams"]["type"] == "pd-balanced"
    assert "nicType" not in i["networkInterfaces"][0]
    check_boot(i["metadataStartupScript"], plan, "gcp")
    assert "generated-api-key" not in json.dumps(i["metadata"])
    # a dedicated network: no default network, so none of its pre-made open rules
    [net] = by_type(result, "gcp:compute/network:Network")
    assert net["inputs"]["autoCreateSubnetworks"] is False
    assert i["networkInterfaces"][0]["network"] == "vllm_id"
    assert i["networkInterfaces"][0]["subnetwork"] == "vllm_id"
    [fw] = by_type(result, "gcp:compute/firewall:Firewall")
    assert fw["inputs"]["sourceRanges"] == [CIDR] and fw["inputs"]["network"] == "vllm_id"
    assert fw["inputs"]["allows"] == [{"ports": ["8000"], "protocol": "tcp"}]
    # the key is a Secret Manager secret that only the VM's service account may read
    versions = by_type(result, "gcp:secretmanager/secretVersion:SecretVersion")
    assert sorted(v["inputs"]["secretData"] for v in versions) == [
        "generated-api-key-0123456789",
        HF,
    ]
    assert all("secretData" in v["secret"] for v in versions)
    [account] = by_type(result, "gcp:serviceaccount/account:Account")
    members = by_type(result, "gcp:secretmanager/secretIamMember:SecretIamMember")
    assert len(members) == 2
    for member in members:
        assert member["inputs"]["member"] == "serviceAccount:" + account["inputs"]["email"]
        assert member["inputs"]["role"] == "roles/secretmanager.secretAccessor"
    assert HF not in i["metadataStartupScript"]
    assert i["serviceAccount"]["email"] == account["inputs"]["email"]
    assert i["metadata"]["enable-oslogin"] == "TRUE"


def test_a_gated_model_without_a_token_stops_pulumi_up(tmp_path):
    """meta-llama repositories are gated: without gpuplan:hfToken vLLM would restart in a loop
    on a 401 while `pulumi up` reports success."""
    project, _ = generate(tmp_path, "aws")
    result = run_program(project, {"gpuplan:hfToken": None})
    assert "gated" in (result["error"] or "") and "gpuplan:hfToken" in result["error"]
    assert not by_type(result, "aws:ec2/instance:Instance")
    from infra.emit import needs_hf_token

    qwen = make_plan("aws", model="qwen3-8b")
    assert not needs_hf_token(qwen) and needs_hf_token(make_plan("aws"))


def test_gcp_program_with_an_existing_network_and_ipv6(tmp_path):
    project, _ = generate(
        tmp_path, "gcp", ssh=True, network="shared-vpc", subnets=("projects/p/regions/r/x",)
    )
    opts_v6 = ProjectOptions(allowed_cidrs=(CIDR, "2001:db8::/48"))
    write_project(render_project(make_plan("gcp"), opts_v6), tmp_path / "v6")
    result = run_program(project, {})
    assert result["error"] is None
    assert not by_type(result, "gcp:compute/network:Network")
    [vm] = by_type(result, "gcp:compute/instance:Instance")
    nic = vm["inputs"]["networkInterfaces"][0]
    assert (nic["network"], nic["subnetwork"]) == ("shared-vpc", "projects/p/regions/r/x")
    assert vm["inputs"]["metadata"]["enable-oslogin"] == "FALSE"  # else ssh-keys is ignored
    # Another Pulumi project with the same stack name on the same shared network: its firewall
    # rules (here SSH and the serving port) must not target this project's VM.
    other = run_program(project, {"__project__": "other-llm"})
    theirs = {t for f in by_type(other, "gcp:compute/firewall:Firewall")
              for t in f["inputs"]["targetTags"]}  # fmt: skip
    assert theirs and not theirs & set(vm["inputs"]["tags"])
    aws_v6 = tmp_path / "aws-v6"
    write_project(render_project(make_plan("aws"), opts_v6), aws_v6)
    [sg] = by_type(run_program(aws_v6, {}), "aws:ec2/securityGroup:SecurityGroup")
    [rule] = sg["inputs"]["ingress"]  # IPv6 goes to ipv6_cidr_blocks, not cidr_blocks
    assert (rule["cidrBlocks"], rule["ipv6CidrBlocks"]) == ([CIDR], ["2001:db8::/48"])
    v6 = run_program(tmp_path / "v6", {})
    ranges = sorted(
        f["inputs"]["sourceRanges"] for f in by_type(v6, "gcp:compute/firewall:Firewall")
    )
    assert ranges == [["2001:db8::/48"], [CIDR]]  # one rule per IP version


def test_runpod_program(tmp_path):
    project, plan = generate(tmp_path, "runpod")
    result = run_program(project, {})
    assert result["error"] is None
    [pod] = by_type(result, "pulumi-python:dynamic:Resource")
    i = pod["inputs"]
    assert (i["gpu_type_id"], i["gpu_count"], i["cloud_type"]) == ("NVIDIA L40S", 1, "COMMUNITY")
    assert i["image"] == "vllm/vllm-openai:v0.33.0" and "env" in pod["secret"]
    assert i["entrypoint"] == ["bash"] and i["start_cmd"][0] == "-c"
    check_container_script(i["start_cmd"][1], plan)
    assert i["allowed_cuda_versions"][0] == "13.0"  # hosts whose driver runs the CUDA 13 image
    assert i["env"]["VLLM_API_KEY"] == "generated-api-key-0123456789"


def test_vast_program_pins_no_offer(tmp_path):
    project, plan = generate(tmp_path, "vast")
    result = run_program(project, {})
    assert result["error"] is None
    [inst] = by_type(result, "pulumi-python:dynamic:Resource")
    i = inst["inputs"]
    assert (i["gpu_name"], i["gpu_count"]) == ("RTX 4090", 1)
    assert i["max_price_usd_per_hour"] == pytest.approx(0.31 * 1.25)
    assert i["entrypoint"] == "bash" and i["args"][0] == "-c"
    check_container_script(i["args"][1], plan)
    assert i["min_cuda"] == 13.0
    text = "".join(p.read_text() for p in project.iterdir() if p.is_file())
    assert "2201" not in text.replace("offer 2201", "").replace('"offer_id": 2201', "")


HETZNER_CONFIG = {
    "gpuplan:robotKeyFingerprints": ["aa:bb:cc"],
    "gpuplan:sshPrivateKey": {"value": "PRIVATE", "secret": True},
}


def test_hetzner_test_mode_runs_no_remote_step(tmp_path):
    project, _plan = generate(tmp_path, "hetzner", ssh=True)
    missing = run_program(project, {})
    assert "robotKeyFingerprints" in (missing["error"] or "")
    result = run_program(project, HETZNER_CONFIG)
    assert result["error"] is None
    [order] = by_type(result, "pulumi-python:dynamic:Resource")
    assert order["inputs"]["product_id"] == "GEX130" and order["inputs"]["location"] == "NBG1"
    assert order["inputs"]["test"] is True  # Robot test mode by default
    # test mode orders nothing, so there is no host to SSH to, and no endpoint to poll
    assert not by_type(result, "command:remote:Command")
    assert result["exports"]["endpoint"] == "" and "robotTestMode" in result["exports"]["note"]
    real = run_program(project, {**HETZNER_CONFIG, "gpuplan:robotTestMode": "false"})
    assert real["exports"]["endpoint"] == "http://198.51.100.30:8000/v1"
    readme = (project / "README.md").read_text()
    assert "rented by the month" in readme and "setup fee" in readme and "delivery" in readme


def test_hetzner_real_mode_installs_idempotently_and_survives_the_reboot(tmp_path):
    project, _plan = generate(tmp_path, "hetzner", ssh=True)
    result = run_program(project, {**HETZNER_CONFIG, "gpuplan:robotTestMode": "false"})
    assert result["error"] is None
    [cmd] = by_type(result, "command:remote:Command")
    assert "stdin" in cmd["secret"] and "connection" in cmd["secret"]
    script = cmd["inputs"]["create"]
    # The secrets go on standard input, never in the command text (pulumi-command has printed
    # it in plain text: pulumi/pulumi-command#401), and are read before anything else runs.
    assert cmd["inputs"]["stdin"] == f"VLLM_API_KEY=generated-api-key-0123456789\nHF_TOKEN={HF}\n"
    assert "generated-api-key" not in script and HF not in script
    assert "(umask 077 && cat > /etc/gpuplan/vllm.env.tmp)" in script
    # The firewall is the first step, before the host setup and before the secrets arrive,
    # and its own early unit applies it at every boot, whether or not vLLM starts.
    steps = script.splitlines()
    first_fw = steps.index("/opt/gpuplan/firewall.sh")
    assert first_fw < steps.index("apt-get update") and first_fw < steps.index(
        "(umask 077 && cat > /etc/gpuplan/vllm.env.tmp)"
    )
    assert "systemctl enable gpuplan-firewall.service" in steps[first_fw : first_fw + 3]
    # ...so anything it installs must not read standard input, which still holds the secrets
    [fetch] = [s for s in steps[:first_fw] if "apt-get install" in s]
    assert fetch.count("</dev/null") == 2 and "DEBIAN_FRONTEND=noninteractive" in fetch
    # idempotent: a re-run overwrites the keyring instead of failing on a prompt
    assert "gpg --batch --yes --dearmor" in script
    # the open kernel modules: the only ones Blackwell (RTX PRO 6000 servers) runs with
    [driver] = re.findall(r"\bnvidia-driver-\S+", script)
    assert driver == "nvidia-driver-580-server-open"
    # and unattended upgrades leave it alone (its libraries must match the loaded module)
    assert 'Unattended-Upgrade::Package-Blacklist { "nvidia-"; "libnvidia-"; };' in script
    assert 'echo "$NO_UPGRADE" > /etc/apt/apt.conf.d/51gpuplan-nvidia-driver' in script
    # the reboot is scheduled after the script exits 0, so the SSH command succeeds, and
    # the units are enabled so vLLM starts after it
    last = script.strip().splitlines()[-1]
    assert last.startswith("if nvidia-smi") and "systemd-run --on-active=" in last
    assert "systemctl restart vllm.service gpuplan-proxy.service" in last
    assert "systemctl enable vllm.service gpuplan-proxy.service" in script
    assert "\nreboot" not in script
    files = boot_files(script)
    check_firewall(files["/opt/gpuplan/firewall.sh"], allowed=(CIDR,), ssh=SSH)
    unit = files["/etc/systemd/system/vllm.service"]
    assert "ExecStartPre=/opt/gpuplan/firewall.sh" in unit
    early = files["/etc/systemd/system/gpuplan-firewall.service"].splitlines()
    for line in (
        "DefaultDependencies=no",
        "Wants=network-pre.target",
        "Type=oneshot",
        "ExecStart=/opt/gpuplan/firewall.sh",
        "WantedBy=multi-user.target",
    ):
        assert line in early
    assert any(x.startswith("Before=") and "network-pre.target" in x for x in early)
    assert "/etc/gpuplan/vllm.env" not in files  # no secret written from the script text


def test_hetzner_project_needs_ssh_cidr():
    from planner.errors import UsageError

    with pytest.raises(UsageError, match="--ssh-cidr"):
        render_project(make_plan("hetzner"), ProjectOptions(allowed_cidrs=(CIDR,)))


# ------------------------------------------------------------------ rules
@pytest.mark.parametrize(
    ("allowed", "ssh"),
    [
        (("203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"), "2001:db8:1::/48"),
        (("203.0.113.9/24",), "198.51.100.7/32"),  # host bits set: the network is meant
        (("2001:db8::/32",), None),  # no SSH network: SSH closed to everyone
    ],
)
def test_firewall_opens_serving_port_and_ssh_only_to_their_networks(allowed, ssh):
    script = boot_module().firewall_script(8000, list(allowed), ssh)
    check_firewall(script, allowed=allowed, ssh=ssh)


# Renders every kind of project (each provider, replicas, multi-node, several CIDRs), and
# runs `gpuplan generate` end to end, into the folder given as argv[1].
RENDER_ALL = """
import sys
from pathlib import Path

from infra.emit import ProjectOptions, render_project, write_project
from planner.cli import main
from tests.test_generate import OFFERS, make_plan, opts_for
from tests.test_generate_scale import multi_node_plan, replica_plan

out = Path(sys.argv[1])
from dataclasses import replace
plans = {p: make_plan(p) for p in OFFERS}
plans.update({
    "aws-replicas": replica_plan("aws"),
    "gcp-replicas": replica_plan("gcp"),
    "aws-multi-node": multi_node_plan("aws", "p4de.24xlarge", "a100-80gb-sxm"),
    "gcp-multi-node": multi_node_plan("gcp", "a3-highgpu-8g", "h100-sxm"),
})
for name, plan in plans.items():
    opts = replace(opts_for(plan.offer.provider), allowed_cidrs=CIDRS)
    write_project(render_project(plan, opts), out / name)
args = ["generate", "llama-3.1-70b", "--quant", "auto", "--providers", "aws,gcp,runpod"]
for cidr in CIDRS:
    args += ["--allow-cidr", cidr]
try:
    main([*args, "--out", str(out / "cli")])
except SystemExit as exc:
    assert exc.code == 0, exc.code
"""
CIDRS = ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24", "2001:db8::/32")


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_generation_is_byte_identical_across_processes(tmp_path):
    """Determinism that one process cannot show: set and hash order change with
    PYTHONHASHSEED, so the same projects are generated in processes with different seeds
    (and in this one) and compared byte for byte."""
    code = f"CIDRS = {CIDRS!r}\n" + RENDER_ALL
    procs = {
        seed: subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / f"seed{seed}")],
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in ("0", "1", "2")
    }
    for seed, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, (seed, err[-2000:])
    trees = {seed: tree(tmp_path / f"seed{seed}") for seed in procs}
    first = trees["0"]
    assert {name.split("/")[0] for name in first} == {*OFFERS, "cli"} | {
        "aws-replicas", "gcp-replicas", "aws-multi-node", "gcp-multi-node"
    }  # fmt: skip
    for seed, files in trees.items():
        assert files.keys() == first.keys(), seed
        changed = [name for name in first if files[name] != first[name]]
        assert not changed, f"PYTHONHASHSEED={seed} changed {changed}"
    # and this process (its own seed) renders the same bytes, written as rendered
    for provider in OFFERS:
        opts = replace(opts_for(provider), allowed_cidrs=CIDRS)
        rendered = render_project(make_plan(provider), opts)
        written = {k.split("/", 1)[1]: v for k, v in first.items() if k.startswith(provider + "/")}
        assert written == {k: v.encode() for k, v in rendered.items()}


STATIC = {
    "gpuplan_boot.py": "_shared",
    "gpuplan_gzip.py": "_shared",
    "gpuplan_proxy.py": "_shared",
    "gpuplan_boot_extras.py": "_shared",
    "gpuplan_runpod.py": "runpod",
    "gpuplan_vast.py": "vast",
    "gpuplan_hetzner.py": "hetzner",
}


@pytest.mark.parametrize("provider", list(OFFERS))
def test_generated_python_runs_on_the_oldest_python_the_pinned_pulumi_takes(provider, tmp_path):
    """The pinned Pulumi SDK and requests take Python 3.10 (their Requires-Python): every
    generated module parses as 3.10 and imports without 3.11's additions (datetime.UTC)."""
    out, _ = generate(tmp_path, provider, ssh=provider == "hetzner")
    modules = sorted(out.glob("*.py"))
    for path in modules:
        ast.parse(path.read_text(), str(path), feature_version=(3, 10))
    helpers = [p.stem for p in modules if p.stem != "__main__"]
    script = (
        "import datetime, sys; del datetime.UTC; sys.path.insert(0, sys.argv[1])\n"
        "for name in sys.argv[2:]: __import__(name)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out), *helpers], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-1500:]


@pytest.mark.parametrize("provider", list(OFFERS))
def test_golden_files(provider):
    """Rendered files against tests/golden/<provider>/; static modules are copied verbatim
    from templates/ (checked here rather than kept twice)."""
    files = render_project(make_plan(provider), opts_for(provider))
    for name, folder_name in STATIC.items():
        if name in files:
            assert files.pop(name) == (ROOT / "templates" / folder_name / name).read_text()
    folder = GOLDEN / provider
    if os.environ.get("UPDATE_GOLDEN") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for name, content in files.items():
            (folder / name).write_text(content)
    golden = {p.name: p.read_text() for p in folder.iterdir()}
    assert files == golden, "generated files changed; review, then UPDATE_GOLDEN=1 pytest"


SECRET_ENV = {
    "HF_TOKEN": "hf_SecretTokenValue0123456789abcdef",
    "RUNPOD_API_KEY": "rpa_SecretRunpodKey0123456789",
    "VAST_API_KEY": "vast-secret-key-0123456789abcdef",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY",
    "HETZNER_ROBOT_PASSWORD": "robot-secret-password-0123",
}
SECRET_PATTERNS = [
    r"hf_[A-Za-z0-9]{20,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY",
    r"AKIA[0-9A-Z]{16}",
    r"VLLM_API_KEY=[A-Za-z0-9]",
]


@pytest.mark.parametrize("provider", list(OFFERS))
def test_no_secrets_and_no_open_ssh_in_files(cli, tmp_path, monkeypatch, provider):
    """Generate with the user's secrets in the environment: none may reach a file."""
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan_to_json(make_plan(provider)))
    key_file = tmp_path / "id.pub"
    key_file.write_text(KEY)
    out = tmp_path / "out"
    r = cli(
        "generate",
        "--plan",
        str(plan_file),
        "--allow-cidr",
        CIDR,
        "--ssh-cidr",
        SSH,
        "--ssh-key",
        str(key_file),
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    text = "\n".join(p.read_text() for p in out.iterdir() if p.is_file())
    for value in SECRET_ENV.values():
        assert value not in text and value not in r.output
    for pattern in SECRET_PATTERNS:
        assert not re.search(pattern, text), pattern
    lines = text.splitlines()
    for n, line in enumerate(lines):
        if "0.0.0.0/0" in line:  # only AWS egress, and the program's own refusal of open SSH
            egress = 'cidr_blocks=["0.0.0.0/0"]' in line.replace("'", '"') or (
                'cidr_ipv4="0.0.0.0/0"' in line and "EgressRule(" in "".join(lines[n - 2 : n])
            )
            # and GCP's port 80 for Let's Encrypt, made only with --tls-domain (tests/test_tls.py)
            acme = "HTTP-01 validation" in "".join(
                lines[n - 3 : n]
            ) and "if tls_domain:" in "".join(lines[n - 10 : n])
            assert egress or acme or "ssh" in line.lower(), line
    if provider == "aws":
        assert SSH in (out / "__main__.py").read_text()
    r = cli(
        "generate",
        "--plan",
        str(plan_file),
        "--allow-cidr",
        CIDR,
        "--ssh-cidr",
        "0.0.0.0/0",
        "--out",
        str(tmp_path / "open"),
    )
    assert r.exit_code == 2 and "whole internet" in r.output


def test_ssh_from_everywhere_and_missing_cidrs_are_refused():
    from planner.errors import UsageError

    plan = make_plan("aws")
    with pytest.raises(UsageError, match="whole internet"):
        render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,), ssh_cidr="0.0.0.0/0"))
    with pytest.raises(UsageError, match="--allow-cidr"):
        render_project(plan, ProjectOptions())
    with pytest.raises(UsageError, match="not a CIDR"):
        render_project(plan, ProjectOptions(allowed_cidrs=("10.0.0.300/8",)))


WEIRD = st.lists(
    st.sampled_from(
        [
            *list("ab/-_.'\"\\$()`;|&\n\t {}#!*%~<>"),
            "$(rm -rf /)",
            "'; echo pwned; '",
            "GPUPLAN_EOF",
            "\r\n",
            "${HOME}",
        ]
    ),
    min_size=1,
    max_size=12,
).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model=WEIRD, extra=WEIRD)
@example(model='"""', extra="a")  # once closed the program's docstring
@example(model='x\\"""\n', extra='"')
def test_injection_safe(model, extra):
    """Hostile model ids and arguments stay values: every program parses and carries them."""
    from dataclasses import replace

    base = make_plan("aws")
    args = (*tuple(a.replace(base.model, model) for a in base.vllm_args), "--chat-template", extra)
    plan = replace(base, model=model, base_model=model, vllm_args=args)
    for provider in ("aws", "gcp", "runpod", "vast", "hetzner"):
        p = replace(plan, offer=make_offer(provider))
        files = render_project(p, opts_for(provider))
        tree = ast.parse(files["__main__.py"])
        [assign] = [
            n
            for n in tree.body
            if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "PLAN"
        ]
        literal = ast.literal_eval(assign.value)
        expected = serve_args(plan)
        assert literal["vllm_args"] == expected and literal["served_model_name"] == model
        assert yaml.safe_load(files["Pulumi.yaml"])["description"].startswith("vLLM serving ")
        json.loads(files["gpuplan.plan.json"])
    boot = shared_module("gpuplan_boot")  # with its sibling gpuplan_gzip importable
    container = boot.container_script(list(args), 8000, b"# proxy")
    exec_line = container[container.index("exec vllm serve ") :]
    assert shlex.split(exec_line)[3 : 3 + len(args)] == list(args)
    script = boot.boot_script("img:1", list(args), 8000, "k", proxy_py="# proxy")
    run = boot_files(script)["/opt/gpuplan/run-vllm.sh"].split("\n", 2)[2]
    assert shlex.split(run)[-len(args) - 4 : -4] == list(args)
    assert all(
        line.startswith(
            (
                "echo ",
                "chmod ",
                "#!",
                "set ",
                "exec ",
                "for ",
                "nvidia",
                "systemctl",
                "install ",
                "umask",
            )
        )
        for line in script.splitlines()
    )


# ------------------------------------------------------------------ command line
def test_generate_cli_from_model_and_from_plan(cli, tmp_path):
    out = tmp_path / "p1"
    r = cli(
        "generate", "llama-3.1-8b", "--providers", "aws", "--allow-cidr", CIDR, "--out", str(out)
    )
    assert r.exit_code == 0, r.output
    assert {
        "Pulumi.yaml",
        "__main__.py",
        "requirements.txt",
        "README.md",
        ".gitignore",
        MARKER,
    } <= {p.name for p in out.iterdir()}
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert all("==" in line for line in reqs)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text((out / "gpuplan.plan.json").read_text())
    r = cli(
        "generate",
        "--plan",
        str(plan_file),
        "--allow-cidr",
        CIDR,
        "--out",
        str(tmp_path / "p2"),
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "p2" / "__main__.py").read_text() == (out / "__main__.py").read_text()
    r = cli(
        "generate",
        "--plan",
        str(plan_file),
        "--allow-cidr",
        CIDR,
        "--stack",
        "prod",
        "--out",
        str(tmp_path / "p3"),
    )
    assert (
        r.exit_code == 0 and "pulumi stack select prod" in (tmp_path / "p3/README.md").read_text()
    )
    assert "'stack_tag': 'prod'" in (tmp_path / "p3" / "__main__.py").read_text()


def test_generate_refuses_foreign_folder_and_bad_plans(cli, tmp_path):
    foreign = tmp_path / "repo"
    foreign.mkdir()
    (foreign / "main.tf").write_text("keep me")
    r = cli(
        "generate",
        "llama-3.1-8b",
        "--providers",
        "aws",
        "--allow-cidr",
        CIDR,
        "--out",
        str(foreign),
    )
    assert r.exit_code == 2 and "did not generate" in r.output
    assert [p.name for p in foreign.iterdir()] == ["main.tf"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "gpuplan.plan/0"}))
    r = cli("generate", "--plan", str(bad), "--allow-cidr", CIDR, "--out", str(tmp_path / "x"))
    assert r.exit_code == 2 and "schema" in r.output and not (tmp_path / "x").exists()
    r = cli("generate", "llama-3.1-8b", "--out", str(tmp_path / "y"))
    assert r.exit_code == 2 and "--allow-cidr" in r.output


def test_regenerating_for_another_provider_keeps_what_the_old_state_needs(tmp_path):
    from planner.errors import UsageError

    out = tmp_path / "proj"
    write_project(render_project(make_plan("vast"), ProjectOptions(allowed_cidrs=(CIDR,))), out)
    assert (out / "gpuplan_vast.py").exists()
    aws = render_project(make_plan("aws"), ProjectOptions(allowed_cidrs=(CIDR,)))
    with pytest.raises(UsageError, match=r"gpuplan_vast\.py"):
        write_project(aws, out)
    assert (out / "gpuplan_vast.py").exists()  # the old machine can still be destroyed
    write_project(aws, out, old_stack_destroyed=True)
    assert not (out / "gpuplan_vast.py").exists()
    assert json.loads((out / MARKER).read_text())["files"] == sorted(p.name for p in out.iterdir())


def test_regenerating_for_another_model_keeps_the_deployed_stack_reachable(tmp_path):
    """Review: the Pulumi project is named after the model, and Pulumi keys stacks by project:
    regenerated for another model, the folder's `pulumi up` (CI's too) made a new stack and a
    second machine, and the first one ran on out of reach of `gpuplan destroy`."""
    from planner.errors import UsageError

    out = tmp_path / "proj"
    opts = ProjectOptions(allowed_cidrs=(CIDR,))
    write_project(render_project(make_plan("aws"), opts), out)
    before = (out / "Pulumi.yaml").read_bytes()
    write_project(render_project(make_plan("aws"), opts), out)  # the same plan again: fine
    other = render_project(make_plan("aws", model="qwen3-8b"), opts)
    with pytest.raises(UsageError, match=r"Pulumi project .* would be left running") as refused:
        write_project(other, out)
    assert "--old-stack-destroyed" in (refused.value.hint or "")
    assert (out / "Pulumi.yaml").read_bytes() == before  # nothing written
    write_project(other, out, old_stack_destroyed=True)
    assert (out / "Pulumi.yaml").read_text() == other["Pulumi.yaml"]
    (out / "Pulumi.yaml").unlink()  # a folder whose Pulumi.yaml went missing regenerates
    write_project(other, out)
    assert (out / "Pulumi.yaml").read_text() == other["Pulumi.yaml"]


def test_regenerating_for_another_cloud_is_refused_until_the_old_stack_is_destroyed(cli, tmp_path):
    """Review: only a change away from a provider with a helper module was refused; aws -> gcp
    regenerated silently, and the next `pulumi up` (CI's, with GCP credentials only) would have
    had to delete the AWS machine it cannot reach, which keeps running."""
    out = tmp_path / "p"
    base = ("llama-3.1-8b", "--allow-cidr", CIDR, "--out", str(out))
    assert cli("generate", *base, "--providers", "aws").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    refused = cli("generate", *base, "--providers", "gcp")
    assert refused.exit_code == 2, refused.output
    said = " ".join(refused.stderr.split())
    assert "was generated for aws and the new plan is for gcp" in said, said
    assert "--old-stack-destroyed" in said and "unexpected" not in said
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
    moved = cli("generate", *base, "--providers", "gcp", "--old-stack-destroyed")
    assert moved.exit_code == 0, moved.output
    plan = json.loads((out / "gpuplan.plan.json").read_text())
    assert plan["offer"]["provider"] == "gcp"
    assert cli("generate", *base, "--providers", "gcp").exit_code == 0  # same cloud: fine


def test_the_stack_file_is_the_users(tmp_path):
    """gpuplan writes provider defaults into Pulumi.yaml and never writes, removes or checks
    Pulumi.<stack>.yaml, where `pulumi config set` keeps the user's values."""
    out = tmp_path / "proj"
    files = render_project(make_plan("gcp"), ProjectOptions(allowed_cidrs=(CIDR,)))
    assert not [name for name in files if name.startswith("Pulumi.") and name != "Pulumi.yaml"]
    project = yaml.safe_load(files["Pulumi.yaml"])
    assert project["config"] == {"gcp:region": "us-central1", "gcp:zone": "us-central1-a"}
    write_project(files, out)
    mine = "config:\n  gcp:project: my-project\n  gpuplan:hfToken:\n    secure: v1:abc\n"
    (out / "Pulumi.dev.yaml").write_text(mine)
    # an earlier gpuplan listed the stack file among its own: it must survive regeneration
    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(
        json.dumps({**marker, "files": [*marker["files"], "Pulumi.dev.yaml"]})
    )
    write_project(render_project(make_plan("gcp"), ProjectOptions(allowed_cidrs=(CIDR,))), out)
    assert (out / "Pulumi.dev.yaml").read_text() == mine


def test_plan_json_in_project_round_trips(tmp_path):
    from planner.decide.plan import plan_from_json

    project, plan = generate(tmp_path, "gcp")
    assert plan_from_json((project / "gpuplan.plan.json").read_text()) == plan
    assert (project / "gpuplan.plan.json").read_text() == plan_to_json(plan)


def test_pinned_versions_are_the_tested_ones():
    """Generated projects pin what the test extra installs (pyproject.toml)."""
    from importlib.metadata import version

    from infra import versions

    pins = {**versions.BASE_REQUIREMENTS}
    for reqs in versions.PROVIDER_REQUIREMENTS.values():
        pins.update(reqs)
    for name, pinned in pins.items():
        assert version(name) == pinned, f"{name}: tested {version(name)}, generated pin {pinned}"


@pytest.mark.parametrize("provider", ["aws", "gcp"])
def test_cloud_wide_names_differ_between_pulumi_projects(tmp_path, provider):
    """SSM parameters, Secret Manager secrets and the service account are account- or
    project-wide names: two Pulumi projects serving the same model with the same stack name
    must not share them."""
    project, _plan = generate(tmp_path, provider)
    cfg = {"gcp:project": "p"} if provider == "gcp" else {}
    names = []
    # two projects with one stack name, and a second stack of one project's folder
    for pulumi_project, stack in (("team-a", "prod"), ("team-b", "prod"), ("team-a", "staging")):
        result = run_program(project, {**cfg, "__project__": pulumi_project, "__stack__": stack})
        assert result["error"] is None
        if provider == "aws":
            found = [p["inputs"]["name"] for p in by_type(result, "aws:ssm/parameter:Parameter")]
        else:
            found = [s["inputs"]["secretId"] for s in by_type(
                result, "gcp:secretmanager/secret:Secret")]  # fmt: skip
            [account] = by_type(result, "gcp:serviceaccount/account:Account")
            account_id = account["inputs"]["accountId"]
            assert re.fullmatch(r"[a-z][-a-z0-9]{4,28}[a-z0-9]", account_id)
            found.append(account_id)
        names.append(set(found))
    assert all(names) and not names[0] & names[1] and not names[0] & names[2]


def test_the_proxy_container_gets_the_api_key_and_not_the_hf_token(tmp_path):
    """Run what vLLM's unit runs before each start (KEY_PRE: the proxy's copy of the key from
    the env file), then the proxy unit's script with a stand-in `docker` that records its
    arguments and environment: the container gets, read-only, a folder holding the API key
    alone (not HF_TOKEN), and no secret is in any command line or in its environment. A folder,
    not the file: a key replaced later by `mv` reaches the running proxy (docker keeps a
    bind-mounted file's inode)."""
    boot = boot_module()
    env_file, key_dir = tmp_path / "vllm.env", tmp_path / "proxy"
    env_file.write_text("VLLM_API_KEY=k3y-value\nHF_TOKEN=hf_secret\n")
    pre = boot.KEY_PRE.removeprefix("ExecStartPre=").strip()
    pre = pre.replace(boot.ENV_FILE, str(env_file)).replace(boot.KEY_DIR, str(key_dir))
    for _ in range(2):  # at every start: the same file, mode 600 in a 700 folder
        subprocess.run(shlex.split(pre), check=True, timeout=30)
        assert (key_dir / "key").read_text().strip() == "k3y-value"
        assert sorted(os.listdir(key_dir)) == ["key"]
        assert (key_dir.stat().st_mode & 0o777, (key_dir / "key").stat().st_mode & 0o777) == (
            0o700, 0o600)  # fmt: skip
    script = boot.proxy_script("vllm/vllm-openai:v0.33.0", 8000)
    assert script.replace(boot.KEY_DIR, "") == script.replace(boot.KEY_DIR, "", 1)  # one mount
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "docker"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$OUT.args"\nenv > "$OUT.env"\n')
    fake.chmod(0o755)
    out = tmp_path / "run"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "OUT": str(out)}
    subprocess.run(["sh", "-c", script], env=env, check=True, timeout=30)
    args = (tmp_path / "run.args").read_text().splitlines()
    seen = dict(line.split("=", 1) for line in (tmp_path / "run.env").read_text().splitlines()
                if "=" in line)  # fmt: skip
    mounts = [args[i + 1] for i, a in enumerate(args) if a == "-v"]
    assert f"{boot.KEY_DIR}:{boot.KEY_MOUNT}:ro" in mounts
    assert not any(boot.ENV_FILE in m or m.startswith("/etc/gpuplan:") for m in mounts)
    envs = [args[i + 1] for i, a in enumerate(args) if a == "-e"]
    assert envs == [f"GPUPLAN_KEY_FILE={boot.KEY_MOUNT}/key"] and "--env-file" not in args
    assert "VLLM_API_KEY" not in seen and "HF_TOKEN" not in seen
    assert not any("k3y-value" in a or "hf_secret" in a for a in args)


def test_boot_extras_ship_only_where_the_boot_script_can_use_them():
    """gpuplan_boot_extras.py (HTTPS with Caddy, local NVMe cache) goes into the projects of
    machines gpuplan boots itself (AWS, Google Cloud, Hetzner), not RunPod's or Vast's, whose
    container script never loads it; the file list in .gpuplan says so too."""
    for provider in OFFERS:
        files = render_project(make_plan(provider), opts_for(provider))
        ships = provider in {"aws", "gcp", "hetzner"}
        assert ("gpuplan_boot_extras.py" in files) == ships, provider
        assert ("gpuplan_boot_extras.py" in json.loads(files[".gpuplan"])["files"]) == ships


def test_the_proxy_serves_twice_the_sequences_vllm_runs():
    """A fixed cap of 512 connections refused part of a load planned at 1,000 streams on one
    machine (DP8 x 256 sequences): the cap follows the vLLM arguments, on every platform."""
    boot = boot_module()
    args = ["--tensor-parallel-size", "1", "--data-parallel-size", "8", "--max-num-seqs", "256"]
    assert boot.connection_limit(args) == 4096
    assert boot.connection_limit(["--max-num-seqs", "30"]) == 512  # never under the default
    assert boot.connection_limit([]) == 512
    # read as vLLM reads its arguments: the last one wins (extra_vllm_args come last), either
    # spelling, the short -dp
    assert boot.connection_limit([*args, "--max-num-seqs=1024"]) == 16384
    assert boot.connection_limit(["-dp", "2", "--max-num-seqs", "512"]) == 2048
    assert boot.connection_limit(["--max-num-seqs", "lots"]) == 512  # vLLM refuses it anyway
    script = boot.boot_script("img:1", args, 8000, "k", proxy_py="# proxy")
    unit = boot_files(script)[boot.PROXY_SCRIPT]
    assert shlex.split(unit.strip().splitlines()[-1])[-1] == "4096"
    container = boot.container_script(args, 8000, b"# proxy")
    started = next(line for line in container.splitlines() if "gpuplan_proxy.py 0.0.0.0" in line)
    assert "gpuplan_proxy.py 0.0.0.0 8000 8001 4096 ||" in started
    assert boot.connection_limit(["--max_num_seqs=64", "--data_parallel_size", "16"]) == 2048
    proxy = proxy_module()
    assert boot.PROXY_MIN_CONNECTIONS == proxy.MAX_CONNECTIONS  # one default in two files


def test_the_pod_restarts_its_proxy_when_it_exits(tmp_path):
    """On RunPod and Vast no init system watches the proxy: the container script's loop starts
    it again (a stand-in python3 that exits at once is started more than once, then the loop
    is stopped by `timeout`, so the test ends by itself)."""
    script = boot_module().container_script(["--max-num-seqs", "8"], 8000, b"# proxy")
    loop = next(line for line in script.splitlines() if line.startswith("while :; do "))
    loop = "set -eu\n" + loop  # as the container script runs it: a failing start must not end it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text('#!/bin/sh\necho start >> "$OUT"\nexit 3\n')
    (bin_dir / "python3").chmod(0o755)
    out = tmp_path / "starts"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "OUT": str(out)}
    run = subprocess.run(["timeout", "2.5", "bash", "-c", loop.removesuffix(" &")], env=env,
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert run.returncode == 124  # still looping when timeout stopped it
    assert out.read_text().count("start") >= 2
    assert "gpuplan: proxy exited (3); restarting" in run.stderr


def test_aws_parameter_names_of_the_stack_generate_named_are_those_it_always_had(tmp_path):
    """The SSM names follow the running stack (a second stack of the folder gets its own), and
    for the stack generate named they stay what they were: its slug, stack_tag (a stack named
    My_Stack kept /my-stack/, so an upgrade renames nothing and replaces no machine)."""
    project, _plan = generate(tmp_path, "aws", stack="My_Stack")
    literal = (project / "__main__.py").read_text()
    assert '"stack_tag": "my-stack"' in literal or "'stack_tag': 'my-stack'" in literal
    for stack, part in (("My_Stack", "my-stack"), ("prod", "prod")):
        result = run_program(project, {"__project__": "team", "__stack__": stack})
        assert result["error"] is None
        names = [p["inputs"]["name"] for p in by_type(result, "aws:ssm/parameter:Parameter")]
        assert names and all(n.startswith(f"/gpuplan/team/{part}/") for n in names), names


def test_regenerating_says_which_hand_edits_it_replaced(cli, tmp_path):
    """The marker records what each file held as written: an edit made since is named when
    regenerating replaces it; an unchanged folder, or one an older gpuplan wrote (no digests
    recorded: an older output cannot be told from an edit), gets no such warning."""
    import json

    out = tmp_path / "p"
    args = ("llama-3.1-8b", "--providers", "aws", "--allow-cidr", CIDR, "--out", str(out))
    assert cli("generate", *args).exit_code == 0
    again = cli("generate", *args)
    assert again.exit_code == 0 and "your edits" not in again.stderr
    for name in ("README.md", "__main__.py"):  # a CRLF checkout (git's autocrlf) is no edit
        path = out / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    crlf = cli("generate", *args)
    assert crlf.exit_code == 0 and "your edits" not in crlf.stderr, crlf.stderr
    (out / "README.md").write_text("# our notes\n")
    main = out / "__main__.py"
    main.write_text(main.read_text() + "# tuned by hand\n")
    edited = cli("generate", *args)
    assert edited.exit_code == 0, edited.output
    said = " ".join(edited.stderr.split())
    assert "warning: replaced your edits to README.md, __main__.py:" in said, said
    assert "# tuned by hand" not in main.read_text()
    # a file as an earlier gpuplan wrote it (its digest recorded) is not an edit
    import hashlib

    marker = json.loads((out / ".gpuplan").read_text())
    older = b"# README of an earlier gpuplan\n"
    (out / "README.md").write_bytes(older)
    marker["sha256"]["README.md"] = hashlib.sha256(older).hexdigest()
    (out / ".gpuplan").write_text(json.dumps(marker))
    upgraded = cli("generate", *args)
    assert upgraded.exit_code == 0 and "your edits" not in upgraded.stderr, upgraded.stderr
    marker = json.loads((out / ".gpuplan").read_text())
    del marker["sha256"]  # as gpuplan before this change wrote it
    (out / ".gpuplan").write_text(json.dumps(marker))
    (out / "README.md").write_text("# an older README\n")
    no_digests = cli("generate", *args)
    assert no_digests.exit_code == 0 and "your edits" not in no_digests.stderr
    # an edited file the new project does not have is removed: named too
    extras = out / "gpuplan_boot_extras.py"
    extras.write_text(extras.read_text() + "# ours\n")
    runpod = ("llama-3.1-8b", "--providers", "runpod", "--allow-cidr", CIDR, "--out", str(out))
    moved = cli("generate", *runpod, "--old-stack-destroyed")
    assert moved.exit_code == 0, moved.output
    assert "replaced your edits to gpuplan_boot_extras.py (removed):" in " ".join(
        moved.stderr.split()
    )
    assert not extras.exists()


def test_regenerating_says_when_the_machines_start_up_changes(cli, tmp_path):
    """A newer gpuplan's boot or proxy module changes the machines' start-up, which the clouds
    answer by replacing the machine: generate says so, and says nothing when it does not."""
    out = tmp_path / "p"
    args = ("llama-3.1-8b", "--providers", "aws", "--allow-cidr", CIDR, "--out", str(out))
    first = cli("generate", *args)
    assert first.exit_code == 0, first.output
    assert "start-up" not in first.stderr  # a new folder: nothing to replace
    again = cli("generate", *args)
    assert again.exit_code == 0 and "start-up" not in again.stderr  # unchanged
    (out / "gpuplan_proxy.py").write_text("# an older proxy\n")  # as an older version wrote it
    upgraded = cli("generate", *args)
    assert upgraded.exit_code == 0, upgraded.output
    said = " ".join(upgraded.stderr.split())
    assert "warning: gpuplan_proxy.py changed, and the machines' start-up is built from it" in said
    assert "`pulumi up` replaces the machines" in said
    assert (out / "gpuplan_proxy.py").read_text().startswith('"""Authenticating reverse proxy')
    (out / "gpuplan_boot.py").write_bytes(b"\xff\xfe not UTF-8")  # edited by hand, say
    edited = cli("generate", *args)
    assert edited.exit_code == 0, edited.output
    assert "gpuplan_boot.py changed" in " ".join(edited.stderr.split())


def test_boot_gzip_is_valid_and_names_no_platform():
    """gpuplan_gzip writes gzip that any gunzip reads back, with mtime 0 and OS 255 (unknown):
    zlib writes the platform there (3 Unix, 10 Windows, 19 macOS)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    gz = shared_module("gpuplan_gzip")
    rand = random.Random(0).randbytes
    samples = [b"", b"a", b"abc" * 2000, bytes(range(256)) * 300, proxy_module().__doc__.encode()]
    # repeats at the window's edge and beyond it (distance codes 26-29, the 32 KiB limit), and
    # inputs over 64 KiB
    samples += [r + r for r in (rand(32000), rand(32767), rand(32768), rand(40000))]
    samples += [rand(70000), b"x" * 100_000]
    for data in samples:
        packed = gz.gzip_bytes(data)
        assert gzip.decompress(packed) == data
        assert packed[4:8] == b"\0\0\0\0" and packed[9] == 255

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=4000) | st.text(alphabet="ab \n", max_size=6000).map(str.encode))
    def round_trips(data: bytes) -> None:
        assert gzip.decompress(gz.gzip_bytes(data)) == data

    round_trips()


def test_boot_scripts_do_not_depend_on_the_local_zlib(monkeypatch):
    """Review: the boot script is a replace-on-change input of every machine, and zlib's gzip
    differs by platform (header OS byte) and implementation (zlib-ng on Fedora 40+ and CPython's
    Windows builds): a `pulumi up` from a laptop after CI replaced an unchanged machine. The
    scripts come out the same when zlib compresses differently (or not at all)."""
    import zlib

    boot = boot_module()
    plan = {"vllm_args": ["m", "--port", "8001"], "port": 8000}
    before = boot.container_script(plan["vllm_args"], plan["port"])
    files_before = boot._write("/opt/x", "echo hello\n" * 50, "0755")

    def refused(*_a, **_k):
        raise AssertionError("zlib compression used")

    monkeypatch.setattr(zlib, "compress", refused)
    monkeypatch.setattr(zlib, "compressobj", refused)
    monkeypatch.setattr(gzip, "compress", refused)
    assert boot_module().container_script(plan["vllm_args"], plan["port"]) == before
    assert boot_module()._write("/opt/x", "echo hello\n" * 50, "0755") == files_before
