"""Use cases that run the committed project: deploy, status, destroy.

The engine (Pulumi's Automation API, or the one GPUPLAN_ENGINE names) is opened once per command
by ``open_stack``; the CLI confirms with the user in between, then calls one of these.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.deploy import Engine
from planner.errors import DeployError, UsageError
from planner.settings import Settings

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Stack:
    folder: Path
    name: str
    engine: Engine


@dataclass(frozen=True, slots=True)
class Deployed:
    document: dict[str, Any]  # gpuplan.deploy/1, never with secret values
    error: DeployError | None  # set when the model is not serving (exit 5)


def open_stack(s: Settings, project_dir: str | None = None) -> Stack:
    """The committed project (``project_dir``, else the settings' out) and its engine."""
    from infra.deploy import make_engine

    folder = Path(project_dir or s.out)
    if not (folder / "Pulumi.yaml").exists():
        raise UsageError(f"no Pulumi project at {folder}", "run `gpuplan generate` first")
    return Stack(folder, s.stack, make_engine(folder, s.stack))


def public_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """Stack outputs with every secret shown as [secret]."""
    return {k: str(v) if type(v).__name__ == "Secret" else v for k, v in sorted(outputs.items())}


def preview(stack: Stack, log: Log) -> dict[str, Any]:
    """What `pulumi up` would do: ``changes`` (operation -> resource count) for scripts, the
    same as one line in ``summary``, and a warning when a resource would be replaced."""
    changes = dict(sorted(stack.engine.preview(log).items()))
    replaced = changes.get("replace", 0)
    warnings = (
        [f"{replaced} resource{'s' if replaced > 1 else ''} would be replaced: a replaced "
         "machine is a new one (another address unless it is reserved, the weights downloaded "
         "again); `pulumi preview --diff` in the project folder says why"]
        if replaced else []
    )  # fmt: skip
    return {
        "schema": "gpuplan.deploy-preview/1",
        "stack": stack.name,
        "summary": ", ".join(f"{n} {op}" for op, n in changes.items()) or "no changes",
        "changes": changes,
        "warnings": warnings,
    }


def deploy(
    stack: Stack,
    s: Settings,
    *,
    log: Log,
    destroy_on_failure: bool = False,
    health_interval_s: float | None = None,
) -> Deployed:
    """`pulumi up`, then wait (``s.wait_healthy`` seconds at most) until the model answers,
    destroying the stack if it never does and that was asked. ``wait_healthy`` 0: no check
    (``healthy`` is None), for a machine outside the networks the endpoint is open to, such
    as a GitHub-hosted CI runner."""
    from infra.deploy import Health, reveal, wait_healthy

    outputs = stack.engine.up(log)
    endpoint = str(reveal(outputs.get("endpoint", "")))
    model = str(outputs.get("model", ""))
    interval = health_interval_s
    if interval is None:
        interval = float(os.environ.get("GPUPLAN_HEALTH_INTERVAL_S", "10"))
    # an endpoint that is no URL (Hetzner's test mode) is reported whatever the wait
    checked = s.wait_healthy > 0 or not endpoint.startswith(("http://", "https://"))
    if checked:
        health = wait_healthy(
            endpoint,
            reveal(outputs.get("apiKey")),
            model,
            timeout_s=s.wait_healthy,
            interval_s=interval,
            on_output=log,
        )
    else:
        health = Health(False, "not checked (wait_healthy 0)", 0.0)
        log("not waiting for the model (wait_healthy 0): `gpuplan status` from a network the "
            "endpoint is open to says when it answers")  # fmt: skip
        if destroy_on_failure:
            log("--destroy-on-failure does nothing with wait_healthy 0: the model is not checked")
    destroyed = False
    if checked and not health.healthy and destroy_on_failure:
        log("destroying the stack (--destroy-on-failure)")
        stack.engine.destroy(log)
        destroyed = True
    result = {
        "schema": "gpuplan.deploy/1",
        "stack": stack.name,
        "endpoint": endpoint,
        "model": model,
        "healthy": health.healthy if checked else None,
        "detail": health.detail,
        "waited_s": round(health.waited_s, 1),
        "destroyed": destroyed,
        "outputs": public_outputs(outputs),
    }
    error = None
    if checked and not health.healthy:
        error = DeployError(
            f"deployed, but the model is not serving: {health.detail}",
            "the stack was destroyed"
            if destroyed
            else "look at the machine's /var/log/gpuplan-boot.log, or redeploy with "
            "--destroy-on-failure",
        )
    return Deployed(result, error)


def status(stack: Stack) -> dict[str, Any]:
    """Outputs, whether the model answers now, and the cost since the last update."""
    from infra.deploy import reveal, wait_healthy

    outputs = stack.engine.outputs()
    endpoint = str(reveal(outputs.get("endpoint", "")))
    health = wait_healthy(
        endpoint, reveal(outputs.get("apiKey")), str(outputs.get("model", "")), 0, 0
    )
    since = stack.engine.last_update_epoch()
    hours = (time.time() - since) / 3600 if since else None
    price = outputs.get("hourlyPriceUsd")
    cost = round(hours * float(price), 2) if hours is not None and price is not None else None
    return {
        "schema": "gpuplan.status/1",
        "stack": stack.name,
        "endpoint": endpoint,
        "healthy": health.healthy,
        "detail": health.detail,
        "hours_since_last_update": round(hours, 2) if hours is not None else None,
        "estimated_cost_usd": cost,
        "outputs": public_outputs(outputs),
    }


def destroy(stack: Stack, log: Log) -> dict[str, Any]:
    stack.engine.destroy(log)
    return {"schema": "gpuplan.destroy/1", "stack": stack.name, "destroyed": True}
