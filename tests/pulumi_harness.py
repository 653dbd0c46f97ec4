"""Run a generated Pulumi program in-process under pulumi.runtime.set_mocks (no CLI, no cloud)
and write what it registered as JSON: every resource's type, name, inputs and which inputs
were secret, plus the stack outputs and invoke calls.

Usage (a subprocess per program, so each gets a fresh Pulumi runtime):
    python tests/pulumi_harness.py PROJECT_DIR OUT_JSON [CONFIG_JSON]
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SIG_KEY = "4dabf18193072939515e22adb298388d"


def _secret_paths(value: Any, path: str = "") -> list[str]:
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return [path or "."]
        out = []
        for k, v in value.items():
            out += _secret_paths(v, f"{path}.{k}" if path else k)
        return out
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _secret_paths(v, f"{path}[{i}]")]
    return []


def subnet_zone(subnet_id: str) -> str:
    """A fake subnet's zone: the id's last letter (subnet-a2b: us-east-1b), else us-east-1a."""
    return "us-east-1" + (subnet_id[-1] if subnet_id[-1] in "abc" else "a")


def zone_id(zone: str) -> str:
    """A fake zone's ID (us-east-1a: use1-az1, b: use1-az2, c: use1-az3)."""
    return f"use1-az{'abc'.index(zone[-1]) + 1}"


def main(project: Path, out: Path, config: dict[str, Any]) -> None:
    import pulumi
    from google.protobuf.json_format import MessageToDict
    from pulumi.runtime import mocks as pm
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    resources: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []

    class Mocks(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs):
            state = dict(args.inputs)
            if args.typ == "aws:ec2/instance:Instance":
                state.update(
                    publicIp="203.0.113.10", privateIp="172.31.0.10", id="i-0123456789abcdef0"
                )
            if args.typ == "gcp:compute/instance:Instance":
                state["instanceId"] = "1234567890"
                nics = state.get("networkInterfaces") or [{}]
                # a given static address (natIp) stays; else an ephemeral one
                given = (nics[0].get("accessConfigs") or [{}])[0].get("natIp")
                nics[0]["accessConfigs"] = [{"natIp": given or "203.0.113.20"}]
                nics[0]["networkIp"] = "10.128.0.2"
                state["networkInterfaces"] = nics
            if args.typ == "gcp:compute/address:Address":
                state["address"] = "203.0.113.21"
            if args.typ == "aws:ssm/parameter:Parameter":
                state["arn"] = "arn:aws:ssm:us-east-1:123456789012:parameter" + state["name"]
            if args.typ == "gcp:serviceaccount/account:Account":
                state["email"] = state["accountId"] + "@gpuplan-test.iam.gserviceaccount.com"
            if args.typ == "aws:lb/loadBalancer:LoadBalancer":
                state.update(dnsName="vllm-123.elb.us-east-1.amazonaws.com", arn="arn:lb")
            if args.typ == "aws:lb/targetGroup:TargetGroup":
                state["arn"] = "arn:tg"
            if args.typ == "gcp:compute/forwardingRule:ForwardingRule":
                state["ipAddress"] = "203.0.113.30"
            if args.typ == "random:index/randomPassword:RandomPassword":
                state["result"] = "generated-api-key-0123456789"
            if args.typ == "pulumi-python:dynamic:Resource":
                state.update(
                    pod_id="pod123",
                    instance_id="4242",
                    server_ip="198.51.100.30",
                    server_number="321",
                    endpoint="https://example.test/v1",
                    transaction_id="B20261122-1",
                    status="ready",
                )
            return [args.name + "_id", state]

        def call(self, args: pulumi.runtime.MockCallArgs):
            calls.append({"token": args.token, "args": dict(args.args)})
            if args.token == "aws:ec2/getVpc:getVpc":
                return {
                    "id": "vpc-0123",
                    "cidrBlock": "172.31.0.0/16",
                    "default": True,
                    "arn": "arn:vpc",
                }
            if args.token == "aws:ec2/getSubnets:getSubnets":
                given = [f["values"] for f in args.args["filters"] if f["name"] == "subnet-id"]
                ids = given[0] if given else ["subnet-b", "subnet-a"]
                for f in args.args["filters"]:  # zones by name, or by ID (us-east-1b: use1-az2)
                    if f["name"] == "availability-zone":
                        ids = [i for i in ids if subnet_zone(i) in f["values"]]
                    if f["name"] == "availability-zone-id":
                        ids = [i for i in ids if zone_id(subnet_zone(i)) in f["values"]]
                return {"id": "x", "ids": ids}
            if args.token == "aws:ec2/getSubnet:getSubnet":
                sid = args.args["id"]
                return {"id": sid, "availabilityZone": subnet_zone(sid), "vpcId": "vpc-0123"}
            if args.token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
                return {
                    "id": "x",
                    "locations": ["us-east-1b", "us-east-1a"],
                    "locationTypes": ["availability-zone"] * 2,
                    "instanceTypes": ["x"] * 2,
                }
            if args.token == "aws:ssm/getParameter:getParameter":
                return {
                    "name": args.args["name"],
                    "value": "ami-0123456789abcdef0",
                    "type": "String",
                    "id": args.args["name"],
                    "arn": "arn:x",
                    "version": 1,
                    "insecureValue": "ami-0123456789abcdef0",
                }
            return {}

    exports: dict[str, Any] = {}

    def record_export(name: str, value: Any) -> None:
        """pulumi.export, recorded: plain values as they are, outputs once resolved (the
        program's run waits for them)."""
        exports[name] = None
        pulumi.Output.from_input(value).apply(lambda v: exports.__setitem__(name, _plain(v)))

    pulumi.export = record_export

    class Monitor(pm.MockMonitor):
        def RegisterResource(self, request):
            raw = MessageToDict(request.object)
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                inputs = self.resources[response.urn].state
                resources.append(
                    {
                        "type": request.type,
                        "name": request.name,
                        "inputs": _plain(inputs),
                        "secret": sorted(_secret_paths(raw)),
                        "ignore_changes": sorted(request.ignoreChanges),
                        "delete_before_replace": request.deleteBeforeReplace,
                    }
                )
            return response

    stack = config.pop("__stack__", "dev")
    project_name = config.pop("__project__", "gpuplan-test")
    pulumi.runtime.set_mocks(
        Mocks(), project=project_name, stack=stack, preview=False, monitor=Monitor(Mocks())
    )
    secret_keys = [k for k, v in config.items() if isinstance(v, dict) and v.get("secret")]
    plain = {
        k: (v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in config.items()
    }
    plain = {k: v if isinstance(v, str) else json.dumps(v) for k, v in plain.items()}
    pulumi.runtime.set_all_config(plain, secret_keys=secret_keys)
    sys.path.insert(0, str(project))
    error = None
    try:
        _sync_await(
            run_pulumi_func(
                lambda: runpy.run_path(str(project / "__main__.py"), run_name="__main__")
            )
        )
    except Exception as exc:  # reported to the test, which decides
        error = f"{type(exc).__name__}: {exc}"
    out.write_text(
        json.dumps(
            {"resources": resources, "calls": calls, "error": error, "exports": exports},
            indent=1,
            sort_keys=True,
            default=str,
        )
    )


def _plain(value: Any) -> Any:
    if isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG:
        return _plain(value.get("value"))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


if __name__ == "__main__":
    cfg = json.loads(Path(sys.argv[3]).read_text()) if len(sys.argv) > 3 else {}
    main(Path(sys.argv[1]), Path(sys.argv[2]), cfg)
