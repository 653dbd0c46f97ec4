"""Spot on Google Cloud (issue #12, item 18): a preempted single VM comes back by itself (a
managed instance group of one, spot VMs deleted on preemption, a static address), multi-node
spot VMs stay stopped until `pulumi up --refresh`, and each README says which and how long."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from infra.emit import ProjectOptions, render_project, write_project
from infra.sizing import ready_s
from tests.test_generate import CIDR, OFFERS, by_type, generate, run_program
from tests.test_generate_scale import multi_node_plan, replica_plan

DOMAIN = "llm.example.com"
MIG = "gcp:compute/instanceGroupManager:InstanceGroupManager"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"


def spot(plan):
    return replace(plan, need=replace(plan.need, spot=True))


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def spot_priced(monkeypatch):
    monkeypatch.setitem(OFFERS["gcp"], "spot", 0.29)


@pytest.mark.parametrize("tls", [False, True])
def test_a_single_spot_vm_runs_in_a_group_of_one_that_replaces_it(tmp_path, spot_priced, tls):
    project, plan = generate(tmp_path, "gcp", spot=True, tls_domain=DOMAIN if tls else None)
    result = run_program(project, {"gcp:project": "p"})
    assert result["error"] is None
    # no standalone VM, which would stay stopped after a preemption
    assert not by_type(result, "gcp:compute/instance:Instance")
    [group] = by_type(result, MIG)
    assert group["inputs"]["targetSize"] == 1
    # an update deletes the VM before creating the next: one VM can hold the address
    policy = group["inputs"]["updatePolicy"]
    assert (policy["maxSurgeFixed"], policy["maxUnavailableFixed"]) == (0, 1)
    assert policy["replacementMethod"] == "RECREATE"
    [template] = by_type(result, TEMPLATE)
    sched = template["inputs"]["scheduling"]
    assert sched["provisioningModel"] == "SPOT" and sched["preemptible"] is True
    assert sched["automaticRestart"] is False
    # deleted when preempted, so the group recreates it (a stopped member is not what the
    # group's repair is documented for)
    assert sched["instanceTerminationAction"] == "DELETE"
    # the same reserved address on every VM the group creates, so the endpoint stays
    assert len(by_type(result, "gcp:compute/address:Address")) == 1
    nic = template["inputs"]["networkInterfaces"][0]
    assert nic["accessConfigs"][0]["natIp"] == "203.0.113.21"
    # no balancer and no health-check firewall for a group of one
    assert not by_type(result, "gcp:compute/forwardingRule:ForwardingRule")
    assert not by_type(result, "gcp:compute/regionHealthCheck:RegionHealthCheck")
    exports = result["exports"]
    if tls:
        assert exports["endpoint"] == f"https://{DOMAIN}/v1"
        assert exports["address"] == "203.0.113.21"
    else:
        assert exports["endpoint"] == "http://203.0.113.21:8000/v1"
    readme = flat((project / "README.md").read_text())
    minutes = math.ceil(ready_s(plan) / 60)
    assert "managed instance group of one" in readme
    assert f"serves again about {minutes} minutes after it starts" in readme
    assert "downloads the model again" in readme and "keeps its address" in readme
    assert "pulumi up --refresh" not in readme and "address may change" not in readme
    # a new VM is a new Let's Encrypt order: the weekly limit is said where it applies
    assert ("at most 5 a week" in readme) == tls


def test_the_restart_time_in_the_readme_is_not_capped_like_the_heal_delay(spot_priced):
    """A model whose download alone takes over an hour: the README's wait follows the download
    (ready_s), not auto-healing's 3,600 s cap."""
    plan = spot(multi_node_plan("gcp", "a3-highgpu-8g", "h100-sxm"))
    plan = replace(plan, layout=replace(plan.layout, nodes=1, pp=1))
    assert ready_s(plan) > 3600, "pick a bigger model for this test"
    readme = flat(render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,)))["README.md"])
    assert f"serves again about {math.ceil(ready_s(plan) / 60)} minutes" in readme


def test_multi_node_spot_vms_stay_stopped_and_the_readme_says_refresh(tmp_path):
    plan = spot(multi_node_plan("gcp", "a3-highgpu-8g", "h100-sxm"))
    out = tmp_path / "mn"
    write_project(render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,))), out)
    result = run_program(out, {"gcp:project": "p"})
    assert result["error"] is None
    vms = by_type(result, "gcp:compute/instance:Instance")
    assert len(vms) == plan.layout.nodes > 1 and not by_type(result, MIG)
    for vm in vms:
        assert vm["inputs"]["scheduling"]["instanceTerminationAction"] == "STOP"
        assert vm["inputs"]["desiredStatus"] == "RUNNING"
    readme = flat((out / "README.md").read_text())
    assert "stays stopped" in readme and "`pulumi up --refresh` starts them again" in readme
    assert "managed instance group of one" not in readme


def test_spot_replicas_are_deleted_on_preemption_and_recreated(tmp_path):
    out = tmp_path / "rep"
    write_project(
        render_project(spot(replica_plan("gcp")), ProjectOptions(allowed_cidrs=(CIDR,))), out
    )
    result = run_program(out, {"gcp:project": "p"})
    assert result["error"] is None
    [template] = by_type(result, TEMPLATE)
    assert template["inputs"]["scheduling"]["instanceTerminationAction"] == "DELETE"
    [group] = by_type(result, MIG)
    assert group["inputs"]["targetSize"] == 3
    assert "rejoins the balancer" in flat((out / "README.md").read_text())
