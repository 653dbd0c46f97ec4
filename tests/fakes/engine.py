"""A fake Pulumi engine, plugged in like any custom engine:
GPUPLAN_ENGINE=tests.fakes.engine:make.

Behaviour from the environment (so it also works in a subprocess): FAKE_ENDPOINT, FAKE_MODEL,
FAKE_API_KEY, FAKE_OUTPUTS (more outputs, JSON), FAKE_PREVIEW (the preview's changes, JSON),
FAKE_UP_SLEEP_S (a slow `up`, for interruption tests), FAKE_STACKS (comma-separated: the stacks
`status` and `destroy` find; unset: any), FAKE_UP_FD (a pipe's write end: `up` writes one line
to it once it is running, the event an interruption test waits for) and FAKE_RECORD (a file
that collects the calls, one JSON line each).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from infra.deploy import Printer, Secret
from planner.errors import DeployError


class FakeEngine:
    def __init__(self, project_dir: Path, stack: str, create: bool = True) -> None:
        self.project_dir, self.stack = project_dir, stack
        self._record("open", stack=stack, create=create)
        known = os.environ.get("FAKE_STACKS")  # the backend's stacks (unset: any)
        if not create and known is not None and stack not in known.split(","):
            raise DeployError(f"no stack '{stack}' in this project (fake backend)")

    def _record(self, call: str, **extra: Any) -> None:
        path = os.environ.get("FAKE_RECORD")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"call": call, **extra}) + "\n")

    def _outputs(self) -> dict[str, Any]:
        return {
            "endpoint": os.environ.get("FAKE_ENDPOINT", ""),
            "model": os.environ.get("FAKE_MODEL", "m"),
            "apiKey": Secret(os.environ.get("FAKE_API_KEY", "fake-key")),
            "provider": "aws", "instanceId": "i-0fake", "hourlyPriceUsd": 1.5,
            **json.loads(os.environ.get("FAKE_OUTPUTS", "{}")),
        }  # fmt: skip

    def up(self, on_output: Printer) -> dict[str, Any]:
        self._record("up")
        on_output("Updating (fake)")
        fd = os.environ.get("FAKE_UP_FD")
        if fd:
            os.write(int(fd), b"inside up\n")
            os.close(int(fd))
        time.sleep(float(os.environ.get("FAKE_UP_SLEEP_S", "0")))
        on_output("Resources: 3 created")
        return self._outputs()

    def preview(self, on_output: Printer) -> dict[str, int]:
        self._record("preview")
        changes: dict[str, int] = json.loads(os.environ.get("FAKE_PREVIEW", '{"create": 3}'))
        return changes

    def destroy(self, on_output: Printer) -> None:
        self._record("destroy")
        on_output("Destroying (fake)")

    def outputs(self) -> dict[str, Any]:
        self._record("outputs")
        return self._outputs()

    def last_update_epoch(self) -> float | None:
        return time.time() - 7200


def make(project_dir: Path, stack: str, create: bool = True) -> FakeEngine:
    return FakeEngine(project_dir, stack, create)
