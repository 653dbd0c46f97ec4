"""A Hetzner order whose answer is lost (a gateway timeout or a reset connection after Robot
took it) is found again among Robot's orders and adopted, never ordered twice: through Pulumi's
real provider protocol (tests/provider_protocol.py) against the loopback Robot fake."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import FakeApi
from tests.provider_protocol import DIFF_SOME, DynamicProvider
from tests.test_dynamic_lifecycle import (
    FAST,
    HETZNER_ENV,
    RobotCloud,
    check_second_up,
    program_inputs,
)
from tests.test_generate import HETZNER_CONFIG, generate


def order_inputs(tmp_path):
    project, _ = generate(tmp_path, "hetzner", ssh=True)
    [inputs] = program_inputs(project, HETZNER_CONFIG)
    return project, {**inputs, "test": False, "wait_minutes": 60}


def robot(project, cloud):
    api = FakeApi(cloud.route)
    return api, lambda: DynamicProvider(
        project, {"HETZNER_ROBOT_URL": api.url, **HETZNER_ENV, **FAST}
    )


def others(cloud: RobotCloud) -> None:
    """Orders in the account that are not this resource's: an older one of the same server,
    a cancelled one, one with other SSH keys, one of another product."""
    now = datetime.now(UTC)
    cloud.add_order(now - timedelta(hours=3), id="B20261129-7")
    cloud.add_order(now, id="B20261130-90", status="cancelled")
    cloud.add_order(now, id="B20261130-91", authorized_key=[])
    cloud.add_order(now, id="B20261130-92", product={"id": "GEX44", "location": "NBG1"})


def lost_answer(tmp_path, others_in_account: bool = True, **faults):
    """(project, inputs, cloud, api, provider) for an order whose first answer is lost, with
    the cloud's other ``faults`` (RobotCloud attributes) set."""
    project, inputs = order_inputs(tmp_path)
    cloud = RobotCloud()
    if others_in_account:
        others(cloud)
    cloud.lost_answers = 1
    for name, value in faults.items():
        setattr(cloud, name, value)
    return (project, inputs, cloud, *robot(project, cloud))


@pytest.mark.parametrize("drop", [False, True])
def test_an_order_whose_answer_was_lost_is_adopted_at_once(tmp_path, drop):
    _, inputs, cloud, api, provider = lost_answer(tmp_path, drop=drop)
    with api, provider() as dp:
        id_, outs = dp.create("gex", dp.check("gex", {}, inputs))
        assert id_ == "B20261130-1" and len(cloud.orders) == 1  # adopted, not ordered again
        assert outs["transaction_id"] == id_
        assert (outs["status"], outs["server_ip"]) == ("ready", "198.51.100.30")


def test_an_order_robot_lists_late_is_recorded_then_adopted_by_the_next_up(tmp_path):
    project, inputs, cloud, api, provider = lost_answer(tmp_path, unlisted=10**6)
    with api, provider() as dp:
        id_, outs = dp.create("gex", dp.check("gex", {}, inputs))
        # recorded in the state (no error, nothing leaked), with the time to look from
        assert id_.startswith("unconfirmed-") and outs["status"] == "unconfirmed"
        assert outs["ordered_after"] and outs["server_ip"] == ""
        cloud.unlisted = 0
        again = dp.check("gex", outs, inputs)
        diff = dp.diff("gex", id_, outs, again)
        assert diff.changes == DIFF_SOME and list(diff.replaces) == []  # update, not replace
        cloud.polls_in_process = 0
        outs = dp.update("gex", id_, outs, again)
        assert (outs["status"], outs["server_ip"]) == ("ready", "198.51.100.30")
        assert outs["transaction_id"] == "B20261130-1" and len(cloud.orders) == 1
        check_second_up(dp, "gex", id_, inputs, outs, project)
        assert dp.read("gex", id_, outs)["server_number"] == "321"
        dp.delete("gex", id_, outs)
        assert cloud.cancelled == ["cancellation_date=now"]


def test_a_lost_order_robot_never_took_is_not_ordered_again_by_itself(tmp_path):
    _, inputs, cloud, api, provider = lost_answer(tmp_path, not_taken=True)
    with api, provider() as dp:
        id_, outs = dp.create("gex", dp.check("gex", {}, inputs))
        assert outs["status"] == "unconfirmed" and cloud.orders == []
        again = dp.check("gex", outs, inputs)
        with pytest.raises(Exception, match=r"nothing was ordered.*--replace"):
            dp.update("gex", id_, outs, again)
        assert cloud.orders == []  # no order placed behind the user's back
        dp.delete("gex", id_, outs)  # `--replace`: nothing to cancel, then a new order
        assert cloud.cancelled == []
        new_id, _ = dp.create("gex", dp.check("gex", {}, inputs))
        assert new_id == "B20261130-1" and len(cloud.orders) == 1


def test_several_candidates_are_never_guessed_between(tmp_path):
    """Two matching orders since the lost one (a replica ordered at the same moment): gpuplan
    says which, and orders nothing."""
    _, inputs, cloud, api, provider = lost_answer(tmp_path, others_in_account=False)
    cloud.add_order(datetime.now(UTC), id="B20261130-50")  # the other replica's order
    with api, provider() as dp:
        id_, outs = dp.create("gex", dp.check("gex", {}, inputs))
        assert outs["status"] == "unconfirmed"
        again = dp.check("gex", outs, inputs)
        with pytest.raises(Exception, match=r"2 matching.*B20261130-1, B20261130-50"):
            dp.update("gex", id_, outs, again)
        with pytest.raises(Exception, match="cancel the right one"):
            dp.delete("gex", id_, outs)
        assert len(cloud.orders) == 1 and cloud.cancelled == []
