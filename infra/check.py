"""`gpuplan check`, the file side: do the committed files equal a regeneration?

The committed gpuplan.plan.json is the plan the project was generated from. Regenerating from it
must give exactly the committed files. Whether that plan still answers the settings is the
application's question (planner.app.project), not this module's: infra never loads models.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from planner.decide.plan import Plan, plan_from_json
from planner.errors import UsageError, not_utf8
from planner.fsutil import text_bytes

PLAN_FILE = "gpuplan.plan.json"


@dataclass
class Drift:
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    diffs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.changed or self.missing)


def committed_plan(out: Path) -> Plan:
    path = out / PLAN_FILE
    if not path.exists():
        raise UsageError(
            f"no generated project at {out} ({PLAN_FILE} missing)",
            "run `gpuplan generate` and commit its output",
        )
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as exc:  # as a plan that is not JSON: one line, exit 2
        raise UsageError(
            not_utf8(str(path), exc), "restore it from git, or run `gpuplan generate` again"
        ) from None
    try:
        return plan_from_json(text)
    except UsageError as exc:  # a project's plan is generate's to write, not --save-plan's
        raise UsageError(
            f"{path}: {exc.message}", "restore it from git, or run `gpuplan generate` again"
        ) from None


def file_drift(out: Path, expected: dict[str, str]) -> Drift:
    """Which of ``expected`` (name -> content) are missing or differ under ``out``, with diffs."""
    drift = Drift()
    for name, content in expected.items():
        path = out / name
        if not path.exists():
            drift.missing.append(name)
            continue
        # bytes: a committed file that is not UTF-8 (an editor's encoding) is drift, not a crash;
        # line endings as text reads them (a CRLF checkout, git's autocrlf, is no drift)
        raw = text_bytes(path)
        if raw != content.encode("utf-8"):
            actual = raw.decode("utf-8", errors="replace")
            drift.changed.append(name)
            drift.diffs[name] = list(
                difflib.unified_diff(
                    actual.splitlines(),
                    content.splitlines(),
                    f"committed/{name}",
                    f"regenerated/{name}",
                    n=1,
                    lineterm="",
                )
            )[:40]
    return drift
