"""Generated projects that scale out or harden: replicas behind balancers, one model over
several nodes with vLLM's native multi-node mode, A3/A4 machines, AMD, TLS (under mocks, as
tests/test_generate.py)."""

from __future__ import annotations

import json
import shlex

import pytest

from infra.emit import ProjectOptions, render_project, write_project
from planner.decide.plan import Need, Plan
from planner.decide.rank import candidates_for, recommend
from planner.model.sources import load_model_spec
from planner.offers.gpus import gpu_table
from planner.offers.offer import Offer
from tests.test_generate import (
    CIDR,
    HETZNER_CONFIG,
    SSH,
    boot_files,
    by_type,
    check_boot,
    make_offer,
    make_plan,
    run_program,
    serve_args,
)


def test_gcp_a3_ultra_takes_hyperdisk_and_gvnic_and_is_not_planned_on_demand(tmp_path):
    from dataclasses import replace

    from infra.targets import refusal

    plan = multi_node_plan("gcp", "a3-megagpu-8g", "h100-sxm")
    plan = replace(plan, layout=replace(plan.layout, nodes=1, pp=1))
    out = tmp_path / "a3"
    write_project(render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,))), out)
    result = run_program(out, {})
    assert result["error"] is None
    [vm] = by_type(result, "gcp:compute/instance:Instance")
    assert vm["inputs"]["bootDisk"]["initializeParams"]["type"] == "hyperdisk-balanced"
    assert vm["inputs"]["networkInterfaces"][0]["nicType"] == "GVNIC"
    ultra_data = {**plan.offer.provider_data, "machine_type": "a3-ultragpu-8g"}
    ultra = replace(
        plan, offer=replace(plan.offer, instance_type="a3-ultragpu-8g", provider_data=ultra_data)
    )
    assert "not on demand" in (refusal(ultra) or "")
    assert refusal(replace(ultra, need=replace(ultra.need, spot=True))) is None


def replica_plan(provider: str, replicas: int = 3) -> Plan:
    need = Need(context=4096, target_output_tokens_per_s=1.0)
    plan = recommend(
        candidates_for(load_model_spec("llama-3.1-8b"), None), [make_offer(provider)], need
    ).plans[0]
    from dataclasses import replace

    return replace(plan, estimate=replace(plan.estimate, replicas=replicas))


def test_aws_replicas_behind_a_network_load_balancer(tmp_path):
    out = tmp_path / "aws3"
    write_project(render_project(replica_plan("aws"), ProjectOptions(allowed_cidrs=(CIDR,))), out)
    result = run_program(out, {})
    assert result["error"] is None
    assert len(by_type(result, "aws:ec2/instance:Instance")) == 3
    [lb] = by_type(result, "aws:lb/loadBalancer:LoadBalancer")
    assert lb["inputs"]["loadBalancerType"] == "network" and lb["inputs"]["subnets"] == [
        "subnet-a",
        "subnet-b",
    ]
    insts = by_type(result, "aws:ec2/instance:Instance")
    assert all(i["inputs"]["associatePublicIpAddress"] is True for i in insts)
    # AWS offering the type in one more zone later changes the subnets chosen at run time:
    # neither the replicas nor the balancer are replaced for it on an unchanged `pulumi up`
    assert all(i["ignore_changes"] == ["ami", "subnetId"] for i in insts)
    assert lb["ignore_changes"] == ["subnets"]


def test_aws_spot_replicas_stay_spread_over_the_zones_and_generate_says_what_they_cost(tmp_path):
    """The final review: pinning spot to the cheapest zone put every replica, and the
    balancer, in one zone (one zone out of spot capacity took them all). Replicas stay spread;
    generate says the zones' price range; one replica still goes to its zone."""
    from dataclasses import replace

    from infra.targets import warnings

    plan = replica_plan("aws")
    plan = replace(
        plan,
        need=replace(plan.need, spot=True),
        offer=replace(plan.offer, spot_price_usd_per_hour=2.0, provider_data={
            "spot_zone": "use1-az2", "spot_by_zone": {"use1-az1": 7.5, "use1-az2": 2.0}}),
    )  # fmt: skip
    opts = ProjectOptions(allowed_cidrs=(CIDR,))
    write_project(render_project(plan, opts), tmp_path / "spot3")
    result = run_program(tmp_path / "spot3", {})
    assert result["error"] is None
    [lb] = by_type(result, "aws:lb/loadBalancer:LoadBalancer")
    assert lb["inputs"]["subnets"] == ["subnet-a", "subnet-b"]
    insts = by_type(result, "aws:ec2/instance:Instance")
    assert {i["inputs"]["subnetId"] for i in insts} == {"subnet-a", "subnet-b"}
    [said] = [w for w in warnings(plan, opts) if "spot replicas" in w]
    assert "$2.00-$7.50/h" in said and "the plan counts the cheapest" in said
    one = replace(plan, estimate=replace(plan.estimate, replicas=1))
    assert not [w for w in warnings(one, opts) if "spot" in w]
    write_project(render_project(one, opts), tmp_path / "spot1")
    result = run_program(tmp_path / "spot1", {})
    [inst] = by_type(result, "aws:ec2/instance:Instance")
    assert result["error"] is None and inst["inputs"]["subnetId"] == "subnet-b"  # use1-az2


def test_aws_balancer_takes_one_subnet_per_zone_of_the_given_subnets(tmp_path):
    """The user's subnets may hold several per zone; a load balancer takes one per zone (the
    first, sorted), and the replicas go only in those subnets."""
    out = tmp_path / "aws3"
    opts = ProjectOptions(
        allowed_cidrs=(CIDR,), network="vpc-0abc", subnets=("subnet-2b", "subnet-1a", "subnet-3a")
    )
    write_project(render_project(replica_plan("aws"), opts), out)
    result = run_program(out, {})
    assert result["error"] is None
    [lb] = by_type(result, "aws:lb/loadBalancer:LoadBalancer")
    assert lb["inputs"]["subnets"] == ["subnet-1a", "subnet-2b"]
    insts = by_type(result, "aws:ec2/instance:Instance")
    assert sorted(i["inputs"]["subnetId"] for i in insts) == ["subnet-1a", "subnet-1a", "subnet-2b"]
    [tg] = by_type(result, "aws:lb/targetGroup:TargetGroup")
    hc = tg["inputs"]["healthCheck"]
    assert (hc["protocol"], hc["path"], tg["inputs"]["port"]) == ("HTTP", "/health", 8000)
    assert len(by_type(result, "aws:lb/targetGroupAttachment:TargetGroupAttachment")) == 3
    [listener] = by_type(result, "aws:lb/listener:Listener")
    assert listener["inputs"]["port"] == 8000
    # clients reach the balancer's listener; the machines only the balancer (its traffic and
    # health checks), not clients directly nor the rest of the VPC
    assert aws_serving_rules(result) == {
        "vllm-balancer": [(8000, (CIDR,), ())],
        "vllm": [(8000, (), ("vllm-balancer_id",))],
    }
    assert lb["inputs"]["securityGroups"] == ["vllm-balancer_id"]
    assert "3 identical replicas" in (out / "README.md").read_text()


def aws_serving_rules(result: dict) -> dict[str, list[tuple]]:
    """Each serving security group's inbound rules: (port, CIDRs, source groups)."""
    return {
        sg["name"]: sorted(
            (r["fromPort"], tuple(r.get("cidrBlocks", ())), tuple(r.get("securityGroups", ())))
            for r in sg["inputs"]["ingress"]
        )
        for sg in by_type(result, "aws:ec2/securityGroup:SecurityGroup")
        if sg["name"] in {"vllm", "vllm-balancer"}
    }


def test_gcp_replicas_in_a_managed_group_behind_a_load_balancer(tmp_path):
    out = tmp_path / "gcp3"
    write_project(render_project(replica_plan("gcp"), ProjectOptions(allowed_cidrs=(CIDR,))), out)
    result = run_program(out, {})
    assert result["error"] is None
    assert not by_type(result, "gcp:compute/instance:Instance")
    [mig] = by_type(result, "gcp:compute/instanceGroupManager:InstanceGroupManager")
    assert mig["inputs"]["targetSize"] == 3
    [hc] = by_type(result, "gcp:compute/regionHealthCheck:RegionHealthCheck")
    assert hc["inputs"]["httpHealthCheck"] == {"port": 8000, "requestPath": "/health"}
    [tmpl] = by_type(result, "gcp:compute/instanceTemplate:InstanceTemplate")
    assert tmpl["inputs"]["scheduling"]["onHostMaintenance"] == "TERMINATE"
    check_boot(tmpl["inputs"]["metadataStartupScript"], replica_plan("gcp"), "gcp")
    # auto-healing waits for the download and load (not a fixed 1,800 s)
    from infra.sizing import heal_delay_s

    assert mig["inputs"]["autoHealingPolicies"]["initialDelaySec"] == heal_delay_s(
        replica_plan("gcp")
    )
    assert heal_delay_s(replica_plan("gcp")) != 1800
    assert by_type(result, "gcp:compute/regionBackendService:RegionBackendService")
    [rule] = by_type(result, "gcp:compute/forwardingRule:ForwardingRule")
    assert rule["inputs"]["ports"] == ["8000"]
    ranges = {
        tuple(f["inputs"]["sourceRanges"]) for f in by_type(result, "gcp:compute/firewall:Firewall")
    }
    assert (CIDR,) in ranges and any("35.191.0.0/16" in r for r in ranges)


@pytest.mark.parametrize(
    ("provider", "typ"),
    [("runpod", "pulumi-python:dynamic:Resource"), ("vast", "pulumi-python:dynamic:Resource")],
)
def test_replicas_without_a_managed_balancer(tmp_path, provider, typ):
    out = tmp_path / provider
    write_project(
        render_project(replica_plan(provider), ProjectOptions(allowed_cidrs=(CIDR,))), out
    )
    result = run_program(out, {})
    assert result["error"] is None
    assert sorted(r["name"] for r in by_type(result, typ)) == ["vllm-0", "vllm-1", "vllm-2"]
    assert "No load balancer is provisioned" in (out / "README.md").read_text()


def test_hetzner_replicas(tmp_path):
    out = tmp_path / "hz"
    write_project(
        render_project(
            replica_plan("hetzner", 2), ProjectOptions(allowed_cidrs=(CIDR,), ssh_cidr=SSH)
        ),
        out,
    )
    result = run_program(out, {**HETZNER_CONFIG, "gpuplan:robotTestMode": "false"})
    assert result["error"] is None
    assert sorted(r["name"] for r in by_type(result, "pulumi-python:dynamic:Resource")) == [
        "gex-0",
        "gex-1",
    ]
    assert sorted(r["name"] for r in by_type(result, "command:remote:Command")) == [
        "vllm-0",
        "vllm-1",
    ]


def multi_node_plan(provider: str, instance: str, gpu: str) -> Plan:
    o = Offer(
        provider=provider,
        instance_type=instance,
        region="us-east1" if provider == "gcp" else "us-east-1",
        gpu=gpu,
        gpu_count=8,
        gpu_memory_gb=gpu_table()[gpu].memory_gb,
        vcpus=96,
        ram_gib=1152.0,
        disk_gb=None,
        price_usd_per_hour=40.0,
        spot_price_usd_per_hour=None,
        billing="hourly",
        source="test",
        fetched_at="2026-11-22",
        availability="zones: us-east1-b" if provider == "gcp" else None,
        provider_data=(
            {"machine_type": instance, "accelerator_count": 0, "zones": ["us-east1-b"]}
            if provider == "gcp"
            else {}
        ),
    )
    return recommend(
        candidates_for(load_model_spec("llama-3.1-405b"), None),
        [o],
        Need(context=4096, objective="cost"),
    ).plans[0]


def node_command(run_script: str) -> tuple[list[str], str]:
    """(the `docker run` words of a multi-node run script, with $NODE_IP/$MASTER left as
    written, the whole script)."""
    last = run_script.strip().splitlines()[-1]
    return shlex.split(last.replace('"$NODE_IP"', "NODE_IP").replace('"$MASTER"', "MASTER")), (
        run_script
    )


def check_native_multi_node(head_script: str, worker_script: str, plan: Plan, head_ip: str):
    """vLLM's own multi-node mode: the same serve arguments on every node plus --nnodes,
    --node-rank, --master-addr/--master-port; --headless on workers; no Ray anywhere."""
    head, worker = boot_files(head_script), boot_files(worker_script)
    for script in (head_script, worker_script):
        assert "ray" not in " ".join(boot_files(script).values()).lower().replace("array", "")
    head_cmd, _ = node_command(head["/opt/gpuplan/run-vllm.sh"])
    worker_cmd, worker_run = node_command(worker["/opt/gpuplan/run-vllm.sh"])
    args = serve_args(plan)
    assert "--distributed-executor-backend" not in head_cmd
    i = head_cmd.index("vllm/vllm-openai:v0.33.0")
    assert head_cmd[i + 1 : i + 1 + len(args)] == args
    assert head_cmd[i + 1 + len(args) :] == [
        "--host", "127.0.0.1", "--port", "8001", "--nnodes", "2", "--node-rank", "0",
        "--master-port", "29501", "--master-addr", "MASTER",
    ]  # fmt: skip
    j = worker_cmd.index("vllm/vllm-openai:v0.33.0")
    assert worker_cmd[j + 1 + len(args) :] == [
        "--nnodes", "2", "--node-rank", "1", "--master-port", "29501", "--headless",
        "--master-addr", "MASTER",
    ]  # fmt: skip
    assert "VLLM_HOST_IP=$NODE_IP" in worker_cmd and "--network" in worker_cmd
    assert 'MASTER="$NODE_IP"' in head["/opt/gpuplan/run-vllm.sh"]
    assert f"MASTER={head_ip}" in worker_run
    # a worker that cannot reach the head says so and exits 1; its unit tries again (30 s
    # later, without a start limit: the head may be replaced, and the worker must rejoin it)
    assert 'cannot join the deployment" >&2; exit 1' in worker_run
    unit = worker["/etc/systemd/system/vllm.service"]
    assert "StartLimitIntervalSec=0\n" in unit and "StartLimitBurst" not in unit
    assert "Restart=always\nRestartSec=30\n" in unit
    # only the head serves: the proxy runs there alone
    assert "/opt/gpuplan/run-proxy.sh" in head and "/opt/gpuplan/run-proxy.sh" not in worker


def test_aws_multi_node_head_and_workers_natively(tmp_path):
    plan = multi_node_plan("aws", "p4de.24xlarge", "a100-80gb-sxm")
    assert plan.layout.nodes == 2 and "--pipeline-parallel-size" in plan.vllm_args
    out = tmp_path / "mn"
    write_project(render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,))), out)
    result = run_program(out, {})
    assert result["error"] is None
    insts = {r["name"]: r for r in by_type(result, "aws:ec2/instance:Instance")}
    assert set(insts) == {"vllm", "worker-1"}
    [pg] = by_type(result, "aws:ec2/placementGroup:PlacementGroup")
    assert pg["inputs"]["strategy"] == "cluster"
    assert all(i["inputs"]["placementGroup"] == "vllm_id" for i in insts.values())
    # one subnet, in an AZ that offers the type (sorted: stable across runs)
    assert insts["vllm"]["inputs"]["subnetId"] == insts["worker-1"]["inputs"]["subnetId"]
    assert insts["vllm"]["inputs"]["subnetId"] == "subnet-a"
    # only the head is in the serving security group; the cluster group talks to itself
    sgs = {r["name"]: r for r in by_type(result, "aws:ec2/securityGroup:SecurityGroup")}
    assert "vllm_id" in insts["vllm"]["inputs"]["vpcSecurityGroupIds"]
    assert insts["worker-1"]["inputs"]["vpcSecurityGroupIds"] == ["vllm-cluster_id"]
    assert [r["cidrBlocks"] for r in sgs["vllm"]["inputs"]["ingress"]] == [[CIDR]]
    # the cluster group's rules are standalone only (mixing inline and standalone rules on
    # one group makes them fight: perpetual diffs); the serving group's are inline only
    assert "egress" not in sgs["vllm-cluster"]["inputs"]
    assert "ingress" not in sgs["vllm-cluster"]["inputs"]
    assert not by_type(result, "aws:ec2/securityGroupRule:SecurityGroupRule")
    [rule] = by_type(result, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert rule["inputs"]["referencedSecurityGroupId"] == rule["inputs"]["securityGroupId"]
    [out_rule] = by_type(result, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
    assert out_rule["inputs"]["securityGroupId"] == "vllm-cluster_id"
    assert out_rule["inputs"]["cidrIpv4"] == "0.0.0.0/0"
    check_native_multi_node(
        insts["vllm"]["inputs"]["userData"], insts["worker-1"]["inputs"]["userData"], plan,
        "172.31.0.10",
    )  # fmt: skip


def test_gcp_multi_node_head_and_workers_natively(tmp_path):
    plan = multi_node_plan("gcp", "a3-highgpu-8g", "h100-sxm")
    out = tmp_path / "mn"
    write_project(render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,))), out)
    result = run_program(out, {})
    assert result["error"] is None
    vms = {r["name"]: r for r in by_type(result, "gcp:compute/instance:Instance")}
    assert set(vms) == {"vllm", "worker-1"}
    assert vms["vllm"]["inputs"]["zone"] == vms["worker-1"]["inputs"]["zone"] == "us-east1-b"
    [policy] = by_type(result, "gcp:compute/resourcePolicy:ResourcePolicy")
    assert policy["inputs"]["groupPlacementPolicy"]["collocation"] == "COLLOCATED"
    serving = next(
        f for f in by_type(result, "gcp:compute/firewall:Firewall") if f["name"] == "vllm"
    )
    assert set(serving["inputs"]["targetTags"]) <= set(vms["vllm"]["inputs"]["tags"])
    assert not set(serving["inputs"]["targetTags"]) & set(vms["worker-1"]["inputs"]["tags"])
    assert vms["vllm"]["inputs"]["networkInterfaces"][0]["nicType"] == "GVNIC"
    check_native_multi_node(
        vms["vllm"]["inputs"]["metadataStartupScript"],
        vms["worker-1"]["inputs"]["metadataStartupScript"], plan, "10.128.0.2",
    )  # fmt: skip


def test_multi_node_elsewhere_is_refused():
    from planner.errors import DeployError

    plan = multi_node_plan("aws", "p4de.24xlarge", "a100-80gb-sxm")
    from dataclasses import replace

    with pytest.raises(DeployError, match="AWS and Google Cloud only"):
        render_project(
            replace(plan, offer=replace(plan.offer, provider="vast")),
            ProjectOptions(allowed_cidrs=(CIDR,)),
        )


def test_replicas_and_multi_node_are_deterministic():
    plans = [
        replica_plan("aws"),
        replica_plan("gcp"),
        multi_node_plan("aws", "p4de.24xlarge", "a100-80gb-sxm"),
        multi_node_plan("gcp", "a3-highgpu-8g", "h100-sxm"),
    ]
    for plan in plans:
        opts = ProjectOptions(allowed_cidrs=(CIDR,))
        assert render_project(plan, opts) == render_project(plan, opts)


def test_amd_plans_are_generated_with_the_rocm_image(cli, tmp_path):
    """An MI300X plan on RunPod is written (vLLM's ROCm image, no CUDA host filter), not
    skipped."""
    out = tmp_path / "p"
    r = cli(
        "generate",
        "llama-3.1-70b",
        "--quant",
        "auto",
        "--providers",
        "runpod",
        "--gpu",
        "mi300x",
        "--allow-cidr",
        CIDR,
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.output
    plan = json.loads((out / "gpuplan.plan.json").read_text())
    assert plan["offer"]["gpu"] == "mi300x"
    program = (out / "__main__.py").read_text()
    assert "'image': 'vllm/vllm-openai-rocm:v0.33.0'" in program
    assert "'allowed_cuda_versions': []" in program
    assert "'gpu_type_id': 'AMD Instinct MI300X OAM'" in program


CERT = "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-0000-4000-8000-123456789abc"


def test_aws_tls_with_a_certificate_behind_an_nlb_tls_listener(tmp_path):
    opts = ProjectOptions(allowed_cidrs=(CIDR,), tls_certificate=CERT, tls_domain="llm.example.com")
    out = tmp_path / "tls"
    write_project(render_project(make_plan("aws"), opts), out)
    result = run_program(out, {})
    assert result["error"] is None
    [listener] = by_type(result, "aws:lb/listener:Listener")
    i = listener["inputs"]
    assert (i["protocol"], i["port"], i["certificateArn"]) == ("TLS", 443, CERT)
    assert i["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    assert len(by_type(result, "aws:lb/targetGroupAttachment:TargetGroupAttachment")) == 1
    # clients reach the TLS listener only; plain HTTP on 8000 only from the balancer
    assert aws_serving_rules(result) == {
        "vllm-balancer": [(443, (CIDR,), ())],
        "vllm": [(8000, (), ("vllm-balancer_id",))],
    }
    [tg] = by_type(result, "aws:lb/targetGroup:TargetGroup")
    assert tg["inputs"]["preserveClientIp"] == "false"
    assert "Not encrypted" not in (out / "README.md").read_text()


def test_aws_replicas_export_no_unreachable_addresses(tmp_path):
    opts = ProjectOptions(allowed_cidrs=(CIDR,), tls_certificate=CERT, tls_domain="llm.example.com")
    out = tmp_path / "tls3"
    write_project(render_project(replica_plan("aws"), opts), out)
    result = run_program(out, {})
    assert result["error"] is None
    assert result["exports"]["endpoint"] == "https://llm.example.com/v1"
    # the replicas' port 8000 is open to the balancer only: their addresses are not for
    # clients, with TLS or without
    assert "replicaEndpoints" not in result["exports"]
    assert len(result["exports"]["instanceIds"]) == 3
    plain = tmp_path / "plain3"
    write_project(render_project(replica_plan("aws"), ProjectOptions(allowed_cidrs=(CIDR,))), plain)
    exports = run_program(plain, {})["exports"]
    assert "replicaEndpoints" not in exports and len(exports["instanceIds"]) == 3
    assert exports["endpoint"].startswith("http://") and ":8000/v1" in exports["endpoint"]


def test_tls_options_are_checked():
    from planner.errors import UsageError

    with pytest.raises(UsageError, match="ACM certificate"):  # AWS terminates TLS on the NLB
        render_project(make_plan("aws"), ProjectOptions(allowed_cidrs=(CIDR,), tls_domain="a.io"))
    with pytest.raises(UsageError, match="needs the domain"):
        render_project(
            make_plan("aws"), ProjectOptions(allowed_cidrs=(CIDR,), tls_certificate=CERT)
        )
    with pytest.raises(UsageError, match="AWS only") as err:
        render_project(
            make_plan("gcp"),
            ProjectOptions(allowed_cidrs=(CIDR,), tls_certificate=CERT, tls_domain="a.example"),
        )
    assert err.value.hint.startswith("drop --tls-certificate: on Google Cloud")


@pytest.mark.parametrize(
    "provider, instance, gpu",
    [("aws", "p4de.24xlarge", "a100-80gb-sxm"), ("gcp", "a3-highgpu-8g", "h100-sxm")],
)
def test_the_multi_node_readme_says_a_worker_keeps_trying(tmp_path, provider, instance, gpu):
    """The unit has no start limit (a worker rejoins a head being replaced): the project's
    README must not say the unit ends failed."""
    plan = multi_node_plan(provider, instance, gpu)
    write_project(render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,))), tmp_path / "p")
    readme = " ".join((tmp_path / "p" / "README.md").read_text().split())
    assert "tries again 30 s later, without a limit" in readme
    assert "ends failed" not in readme


@pytest.mark.parametrize("download_gb", [13.0, 260.0, 474.0])
def test_gcp_auto_healing_only_when_a_replica_loads_within_the_delay(
    tmp_path, monkeypatch, download_gb
):
    """GCP caps auto-healing's initial delay at 3600 s, and the health check runs during the
    delay (its failures only ignored): a replica whose download and load take longer (474 GB:
    5,640 s at the assumed 100 MB/s) is unhealthy when the delay ends and is recreated at once,
    in a loop at the price of every VM (review: a slower check does not help). Such replicas
    get no auto-healing, and generate and the project README say so."""
    from infra import sizing
    from infra.targets import warnings

    monkeypatch.setattr(sizing, "download_gb", lambda plan: download_gb)
    plan = replica_plan("gcp")
    ready = sizing.ready_s(plan)
    out = tmp_path / "heal"
    write_project(render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,))), out)
    result = run_program(out, {})
    assert result["error"] is None
    [hc] = by_type(result, "gcp:compute/regionHealthCheck:RegionHealthCheck")  # the balancer's
    assert hc["inputs"]["checkIntervalSec"] == 30
    [mig] = by_type(result, "gcp:compute/instanceGroupManager:InstanceGroupManager")
    healing = mig["inputs"].get("autoHealingPolicies")
    warned = [w for w in warnings(plan, ProjectOptions(allowed_cidrs=(CIDR,))) if "auto-heal" in w]
    readme = " ".join((out / "README.md").read_text().split())
    if ready <= 3600:
        assert healing["initialDelaySec"] == ready and healing["healthCheck"]
        assert not warned and "Auto-healing recreates a replica that stops answering" in readme
    else:
        assert not healing, healing
        assert warned and f"{ready // 60} min" in warned[0]
        assert "Auto-healing is off" in readme and "recreate-instances" in readme
