"""The generated dynamic providers (RunPod, Vast, Hetzner) through Pulumi's real provider
protocol: `python -m pulumi.dynamic` started in the generated project and driven over gRPC as
the engine drives it (tests/provider_protocol.py), against stateful loopback fakes of each API.
Each lifecycle: create, a no-op `up` (no diff), the SDK's pickled provider changing (no
replace), a real spec change (replace), transient API errors while waiting (nothing leaked),
destroy."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

import pytest

from tests.fakes import FakeApi
from tests.provider_protocol import DIFF_NONE, DIFF_SOME, DynamicProvider
from tests.test_generate import HETZNER_CONFIG, by_type, generate, run_program

FAST = {"GPUPLAN_POLL_S": "0.01"}


def program_inputs(project: Path, config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The dynamic resources' inputs as the program registers them (with `__provider`)."""
    result = run_program(project, dict(config or {}))
    assert result["error"] is None
    return [r["inputs"] for r in by_type(result, "pulumi-python:dynamic:Resource")]


def repickled(provider: str, project: Path, protocol: int) -> str:
    """The same provider object pickled with another protocol, as a venv rebuilt on another
    Python would store it (Python 3.14's default protocol is 5)."""
    code = (
        "import base64, sys, dill; sys.path.insert(0, sys.argv[2]); "
        "p = dill.loads(base64.b64decode(sys.argv[1])); "
        f"print(base64.b64encode(dill.dumps(p, protocol={protocol}, recurse=True)).decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, provider, str(project)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def check_second_up(dp: DynamicProvider, name: str, id_: str, inputs: dict, outs: dict, project):
    """A no-op `up`, then the same inputs with the provider pickled another way: neither
    changes anything."""
    again = dp.check(name, outs, inputs)
    assert dp.diff(name, id_, outs, again).changes == DIFF_NONE
    other = next(
        p
        for p in (repickled(inputs["__provider"], project, n) for n in (5, 4, 3))
        if p != inputs["__provider"]
    )
    moved = dp.check(name, outs, {**inputs, "__provider": other})
    diff = dp.diff(name, id_, outs, moved)
    assert diff.changes == DIFF_NONE and list(diff.replaces) == []


# ------------------------------------------------------------------ RunPod
# PodCreateInput.allowedCudaVersions as RunPod documents it (docs.runpod.io/api-reference/pods/
# POST/pods, read 2026-12-01), written out here rather than taken from infra.versions, so that
# a value gpuplan adds beyond it fails as the real API would
RUNPOD_DOCUMENTED_CUDA = ("13.0", "12.9", "12.8", "12.7", "12.6", "12.5", "12.4", "12.3", "12.2",
                          "12.1", "12.0", "11.8")  # fmt: skip


class RunpodCloud:
    """RunPod's REST API: POST /v1/pods creates, DELETE /v1/pods/{id} terminates."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.lost_answers = 0  # creates that succeed but whose answer is lost (a 504)

    def route(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        if headers.get("authorization") != "Bearer rp_test":
            return 401, {"error": "unauthorized"}
        with self.lock:
            if method == "GET" and path.startswith("/v1/pods?name="):
                name = unquote(path.split("=", 1)[1])
                return 200, [{"id": i, "name": p["name"], "desiredStatus": "RUNNING"}
                             for i, p in self.pods.items() if p["name"] == name]  # fmt: skip
            if method == "POST" and path == "/v1/pods":
                unknown = set(json.loads(body).get("allowedCudaVersions", [])) - set(
                    RUNPOD_DOCUMENTED_CUDA
                )
                if unknown:  # the REST API validates its enums: 400, no pod
                    return 400, {"error": f"allowedCudaVersions: invalid values {sorted(unknown)}"}
                pod_id = f"pod{next(self.ids)}"
                self.pods[pod_id] = json.loads(body)
                self.created.append(self.pods[pod_id])
                if self.lost_answers:
                    self.lost_answers -= 1
                    return 504, {"error": "gateway timeout"}
                return 201, {"id": pod_id, "desiredStatus": "RUNNING"}
            if method == "DELETE" and path.startswith("/v1/pods/"):
                if self.pods.pop(path.rsplit("/", 1)[1], None) is None:
                    return 404, {"error": "pod not found"}
                return 204, b""
        return 404, {"error": "not found"}


def test_runpod_lifecycle_through_the_provider_protocol(tmp_path):
    project, _ = generate(tmp_path, "runpod")
    [inputs] = program_inputs(project)
    cloud = RunpodCloud()
    with (
        FakeApi(cloud.route) as api,
        DynamicProvider(
            project, {"RUNPOD_REST_URL": api.url, "RUNPOD_API_KEY": "rp_test", **FAST}
        ) as dp,
    ):
        checked = dp.check("vllm", {}, inputs)
        id_, outs = dp.create("vllm", checked)
        assert list(cloud.pods) == [id_] and outs["endpoint"].startswith(f"https://{id_}-8000.")
        created = cloud.created[0]
        # only hosts whose driver runs the CUDA 13 image
        assert created["allowedCudaVersions"] == ["13.0"]
        # the pod runs the authenticating proxy, then vLLM on loopback
        assert created["dockerEntrypoint"] == ["bash"] and created["dockerStartCmd"][0] == "-c"
        assert "gpuplan_proxy.py 0.0.0.0 8000 8001" in created["dockerStartCmd"][1]
        check_second_up(dp, "vllm", id_, inputs, outs, project)
        bigger = dp.check("vllm", outs, {**inputs, "disk_gb": inputs["disk_gb"] + 10})
        diff = dp.diff("vllm", id_, outs, bigger)
        assert diff.changes == DIFF_SOME and list(diff.replaces) == ["disk_gb"]
        assert diff.deleteBeforeReplace
        dp.delete("vllm", id_, outs)
        assert cloud.pods == {}
        dp.delete("vllm", id_, outs)  # already gone (404): deleted, not an error


def test_runpod_create_whose_answer_was_lost_adopts_the_pod(tmp_path):
    """RunPod accepts the create but the answer never arrives: the next `up` finds the pod by
    its unique name instead of renting a second one."""
    project, _ = generate(tmp_path, "runpod")
    [inputs] = program_inputs(project)
    cloud = RunpodCloud()
    cloud.lost_answers = 1
    with (
        FakeApi(cloud.route) as api,
        DynamicProvider(
            project, {"RUNPOD_REST_URL": api.url, "RUNPOD_API_KEY": "rp_test", **FAST}
        ) as dp,
    ):
        checked = dp.check("vllm", {}, inputs)
        with pytest.raises(Exception, match="504"):
            dp.create("vllm", checked)
        [lost] = cloud.pods
        assert cloud.pods[lost]["name"] == inputs["label"] != inputs["name"]
        id_, outs = dp.create("vllm", checked)
        assert id_ == lost and len(cloud.created) == 1  # adopted, not rented twice
        assert outs["endpoint"].startswith(f"https://{lost}-8000.")


# ------------------------------------------------------------------ Vast
class VastCloud:
    def __init__(self) -> None:
        self.instances: dict[str, dict[str, Any]] = {}
        self.searches: list[dict[str, Any]] = []
        self.failing_gets = 0
        self.ids = itertools.count(4242)
        self.lock = threading.Lock()
        self.lost_answers = 0  # rentals that succeed but whose answer is lost (a 504)

    def route(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        if headers.get("authorization") != "Bearer vast_test":
            return 401, {"error": "unauthorized"}
        with self.lock:
            if method == "GET" and path == "/api/v0/instances/?owner=me":
                return 200, {"instances": [{"id": int(i), "label": inst["label"]}
                                           for i, inst in self.instances.items()]}  # fmt: skip
            if method == "POST" and path == "/api/v0/bundles/":
                self.searches.append(json.loads(body))
                return 200, {"offers": [{"id": 2201, "dph_total": 0.3}]}
            if method == "PUT" and path == "/api/v0/asks/2201/":
                instance_id = str(next(self.ids))
                self.instances[instance_id] = json.loads(body)
                if self.lost_answers:
                    self.lost_answers -= 1
                    return 504, {"error": "gateway timeout"}
                return 200, {"success": True, "new_contract": int(instance_id)}
            parts = path.strip("/").split("/")
            if method == "DELETE" and parts[:3] == ["api", "v0", "instances"]:
                if self.instances.pop(parts[3], None) is None:
                    return 404, {"error": "no such instance"}
                return 200, {"success": True}
            if parts[:3] == ["api", "v0", "instances"] and parts[3] in self.instances:
                if method == "DELETE":
                    del self.instances[parts[3]]
                    return 200, {"success": True}
                if self.failing_gets:
                    self.failing_gets -= 1
                    return 502, {"error": "bad gateway"}
                ports = {"8000/tcp": [{"HostPort": "41000"}]}
                return 200, {"instances": {"public_ipaddr": "198.51.100.9", "ports": ports}}
        return 404, {"error": "not found"}


def test_vast_lifecycle_through_the_provider_protocol(tmp_path):
    project, _ = generate(tmp_path, "vast")
    [inputs] = program_inputs(project)
    cloud = VastCloud()
    cloud.failing_gets = 3  # transient errors while waiting for the address
    with (
        FakeApi(cloud.route) as api,
        DynamicProvider(
            project, {"VAST_API_URL": api.url, "VAST_API_KEY": "vast_test", **FAST}
        ) as dp,
    ):
        checked = dp.check("vllm", {}, inputs)
        id_, outs = dp.create("vllm", checked)
        assert list(cloud.instances) == [id_] and outs["endpoint"] == "http://198.51.100.9:41000/v1"
        [rented] = cloud.instances.values()
        assert rented["onstart"] == "bash" and rented["args"][0] == "-c"  # proxy, then vLLM
        query = cloud.searches[0]
        assert query["cuda_max_good"] == {"gte": 13.0}  # the host's driver runs CUDA 13
        assert "reliability" in query and "reliability2" not in query  # vast-cli's field name
        check_second_up(dp, "vllm", id_, inputs, outs, project)
        # waiting longer, or a higher price cap, is not a reason to rent another machine
        relaxed = dp.check(
            "vllm", outs, {**inputs, "wait_minutes": 60, "max_price_usd_per_hour": 9.0}
        )
        assert dp.diff("vllm", id_, outs, relaxed).changes == DIFF_NONE
        image = dp.check("vllm", outs, {**inputs, "image": "vllm/vllm-openai:v0.34.0"})
        assert list(dp.diff("vllm", id_, outs, image).replaces) == ["image"]
        dp.delete("vllm", id_, outs)
        assert cloud.instances == {}
        dp.delete("vllm", id_, outs)  # already gone (404): deleted, not an error


def test_vast_rental_whose_answer_was_lost_is_adopted(tmp_path):
    project, _ = generate(tmp_path, "vast")
    [inputs] = program_inputs(project)
    cloud = VastCloud()
    cloud.lost_answers = 1
    with (
        FakeApi(cloud.route) as api,
        DynamicProvider(
            project, {"VAST_API_URL": api.url, "VAST_API_KEY": "vast_test", **FAST}
        ) as dp,
    ):
        checked = dp.check("vllm", {}, inputs)
        with pytest.raises(Exception, match="504"):
            dp.create("vllm", checked)
        [lost] = cloud.instances
        assert cloud.instances[lost]["label"] == inputs["label"] != inputs["name"]
        id_, outs = dp.create("vllm", checked)
        assert id_ == lost and len(cloud.searches) == 1  # adopted, not rented twice
        assert outs["endpoint"] == "http://198.51.100.9:41000/v1"


def test_vast_instance_is_recorded_when_its_address_never_comes(tmp_path):
    """The API errs for the whole wait: create still returns the rented instance (so it is in
    state and `destroy` can delete it), and the next `up` finishes the wait."""
    project, _ = generate(tmp_path, "vast")
    [inputs] = program_inputs(project)
    inputs = {**inputs, "wait_minutes": 0.0005}
    cloud = VastCloud()
    cloud.failing_gets = 10**6
    with (
        FakeApi(cloud.route) as api,
        DynamicProvider(
            project, {"VAST_API_URL": api.url, "VAST_API_KEY": "vast_test", **FAST}
        ) as dp,
    ):
        id_, outs = dp.create("vllm", dp.check("vllm", {}, inputs))
        assert list(cloud.instances) == [id_] and outs["endpoint"] == ""
        cloud.failing_gets = 0
        again = dp.check("vllm", outs, inputs)
        diff = dp.diff("vllm", id_, outs, again)
        assert diff.changes == DIFF_SOME and list(diff.replaces) == []  # update, not replace
        updated = dp.update("vllm", id_, outs, again)
        assert updated["endpoint"] == "http://198.51.100.9:41000/v1"
        assert len(cloud.searches) == 1  # nothing rented twice
        dp.delete("vllm", id_, updated)
        assert cloud.instances == {}


# ------------------------------------------------------------------ Hetzner
class RobotCloud:
    """Robot's ordering API: POST /order/server/transaction orders, GET .../transaction lists
    the orders of the last 30 days, GET .../transaction/{id} polls one, POST
    /server/{n}/cancellation cancels. ``lost_answers`` orders are taken but answered with a
    504 (or, with ``drop``, a closed connection); ``unlisted`` listings do not show them yet;
    ``not_taken`` lost orders are not taken at all."""

    AUTH = "Basic " + base64.b64encode(b"robot_user:robot_pass").decode()
    KEY: ClassVar = {
        "key": {"name": "k", "fingerprint": "aa:bb:cc", "type": "ED25519", "size": 256}
    }

    def __init__(self, polls_in_process: int = 0, failing_gets: int = 0) -> None:
        self.orders: list[str] = []
        self.transactions: list[dict[str, Any]] = []
        self.polls_in_process = polls_in_process
        self.failing_gets = failing_gets
        self.cancelled: list[str] = []
        self.lost_answers = 0
        self.drop = False
        self.unlisted = 0
        self.not_taken = False
        self.taken = 0
        self.lock = threading.Lock()

    def add_order(self, when: datetime, **changes: Any) -> dict[str, Any]:
        """An order in Robot's list (the account's own, or one this fake took): ``id`` and
        whatever differs from this resource's order."""
        tx = {
            "id": changes.pop("id"), "date": when.isoformat(),
            "status": "in process", "server_number": None, "server_ip": None,
            "authorized_key": [self.KEY], "host_key": [], "comment": None,
            "product": {"id": "GEX130", "name": "Dedicated Server GEX130",
                        "dist": "Ubuntu 24.04.1 LTS base", "lang": "en", "location": "NBG1"},
            "addons": ["primary_ipv4"],
        }  # fmt: skip
        for key, value in changes.items():
            if key in tx["product"]:
                tx["product"][key] = value
            else:
                tx[key] = value
        self.transactions.append(tx)
        return tx

    def _answer(self, tx: dict[str, Any]) -> dict[str, Any]:
        if tx["status"] == "in process" and tx["id"] == "B20261130-1":
            if self.polls_in_process:
                self.polls_in_process -= 1
            else:
                tx.update(status="ready", server_number=321, server_ip="198.51.100.30")
        return {"transaction": dict(tx)}

    def route(self, method: str, path: str, body: bytes, headers: dict[str, str]):
        if headers.get("authorization") != self.AUTH:
            return 401, {"error": {"status": 401, "code": "UNAUTHORIZED"}}
        with self.lock:
            if method == "GET" and path == "/order/server/product/GEX130":
                dists = ["Rescue system", "Ubuntu 22.04.2 LTS base", "Ubuntu 24.04.1 LTS base"]
                return 200, {"product": {"id": "GEX130", "dist": dists}}
            if method == "POST" and path == "/order/server/transaction":
                self.orders.append(body.decode())
                if self.lost_answers and self.not_taken:
                    self.lost_answers -= 1
                    self.orders.pop()
                    return 504, {"error": {"status": 504}}
                self.taken += 1
                tx = self.add_order(datetime.now(UTC), id=f"B20261130-{self.taken}")
                if self.lost_answers:
                    self.lost_answers -= 1
                    return (None, None) if self.drop else (504, {"error": {"status": 504}})
                return 201, {"transaction": dict(tx, status="in process")}
            if method == "GET" and path == "/order/server/transaction":
                listed = self.transactions
                if self.unlisted:
                    self.unlisted -= 1
                    taken = {f"B20261130-{n}" for n in range(1, self.taken + 1)}
                    listed = [t for t in listed if t["id"] not in taken]
                if not listed:
                    return 404, {"error": {"status": 404, "code": "NOT_FOUND"}}
                return 200, [{"transaction": dict(t)} for t in listed]
            if method == "GET" and path.startswith("/order/server/transaction/"):
                if self.failing_gets:
                    self.failing_gets -= 1
                    return 503, {"error": {"status": 503}}
                tx_id = path.rsplit("/", 1)[1]
                for tx in self.transactions:
                    if tx["id"] == tx_id:
                        return 200, self._answer(tx)
            if method == "POST" and path == "/server/321/cancellation":
                if self.cancelled:  # the server has left the account
                    return 404, {"error": {"status": 404, "code": "SERVER_NOT_FOUND"}}
                self.cancelled.append(body.decode())
                return 200, {"cancellation": {"server_number": 321}}
        return 404, {"error": {"status": 404}}


HETZNER_ENV = {"HETZNER_ROBOT_USER": "robot_user", "HETZNER_ROBOT_PASSWORD": "robot_pass"}


@pytest.mark.parametrize("wait_minutes", [60, 0.0005])
def test_hetzner_order_lifecycle_through_the_provider_protocol(tmp_path, wait_minutes):
    """A live order is recorded even when delivery outlasts the wait (then the next `up`
    picks it up instead of ordering a second server); transient Robot errors while polling
    are retried."""
    project, _ = generate(tmp_path, "hetzner", ssh=True)
    [inputs] = program_inputs(project, HETZNER_CONFIG)
    inputs = {**inputs, "test": False, "wait_minutes": wait_minutes}
    cloud = RobotCloud(polls_in_process=3, failing_gets=2)
    with (
        FakeApi(cloud.route) as api,
        DynamicProvider(project, {"HETZNER_ROBOT_URL": api.url, **HETZNER_ENV, **FAST}) as dp,
    ):
        id_, outs = dp.create("gex", dp.check("gex", {}, inputs))
        assert id_ == "B20261130-1" and len(cloud.orders) == 1
        # the OS image is the product's own, read from Robot, not a hard-coded name
        assert "dist=Ubuntu+24.04.1+LTS+base" in cloud.orders[0]
        assert outs["dist"] == "Ubuntu 24.04.1 LTS base"
        if wait_minutes < 1:
            assert outs["status"] == "in process" and outs["server_ip"] == ""
            again = dp.check("gex", outs, {**inputs, "wait_minutes": 60})
            diff = dp.diff("gex", id_, outs, again)
            assert diff.changes == DIFF_SOME and list(diff.replaces) == []
            outs = dp.update("gex", id_, outs, again)
        assert (outs["status"], outs["server_ip"]) == ("ready", "198.51.100.30")
        assert len(cloud.orders) == 1  # never a second monthly server
        check_second_up(dp, "gex", id_, {**inputs, "wait_minutes": 60}, outs, project)
        # a rotated Robot key or a longer wait does not cancel and re-order the server
        keys = dp.check("gex", outs, {**inputs, "key_fingerprints": ["ff:ee"], "wait_minutes": 9})
        assert dp.diff("gex", id_, outs, keys).changes == DIFF_NONE
        other = dp.check("gex", outs, {**inputs, "product_id": "GEX44"})
        assert list(dp.diff("gex", id_, outs, other).replaces) == ["product_id"]
        older_os = dp.check("gex", outs, {**inputs, "dist": "Ubuntu 22.04"})
        assert list(dp.diff("gex", id_, outs, older_os).replaces) == ["dist"]
        dp.delete("gex", id_, outs)
        assert cloud.cancelled == ["cancellation_date=now"]
        dp.delete("gex", id_, outs)  # already gone (404): deleted, not an error


def test_hetzner_dist_is_chosen_from_the_products_own_list():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "templates/hetzner/gpuplan_hetzner.py"
    spec = importlib.util.spec_from_file_location("gpuplan_hetzner_for_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    choices = ["Rescue system", "Ubuntu 24.04.1 LTS minimal", "Ubuntu 24.04.1 LTS base"]
    assert module.choose_dist(choices, "Ubuntu 24.04") == "Ubuntu 24.04.1 LTS base"
    with pytest.raises(RuntimeError, match=r"no Ubuntu 24\.04 image"):
        module.choose_dist(["Debian 12 base"], "Ubuntu 24.04")
