"""What generate, check, deploy and status tell a person (plain lines; JSON is the documents
the app returns)."""

from __future__ import annotations

from typing import Any

from planner.settings import Settings


def settings_note(s: Settings) -> str | None:
    """Which gpuplan.toml was read and what it set (said on stderr), or None."""
    if s.toml_path is None:
        return None
    keys = s.from_toml()
    note = f"reading {s.toml_path}" + (f" ({', '.join(keys)})" if keys else " (no values used)")
    return "; ".join([note, *s.shadowed])


def generated_lines(gen: Any) -> list[str]:
    """gen: app.project.Generated."""
    from planner.present.suggestions import spread_line, suggestion_line

    plan = gen.plan
    total = " in total" if plan.machines > 1 else ""
    lines = [
        f"wrote {len(gen.written)} files to {gen.out}: {plan.offer_label()} serving "
        f"{plan.model} at ${plan.estimate.usd_per_hour:.2f}/h{total}",
    ]
    if getattr(gen, "spread", None) is not None:
        lines.append(f"cheaper: {spread_line(gen.spread)}")
    if getattr(gen, "suggestion", None) is not None:
        lines.append(f"cheaper: {suggestion_line(gen.suggestion)}")
    return [*lines, f"next: cd {gen.out} && cat README.md"]


def skipped_lines(skipped: list[str]) -> list[str]:
    return [f"note: skipped a better plan, {line}" for line in skipped[:3]]


def check_lines(res: Any, threshold: float) -> list[str]:
    """res: app.project.CheckResult."""
    plan, lines = res.plan, []
    if res.clean:
        lines.append(
            f"ok: {res.out} matches the settings ({plan.rented()}, {plan.quant_format}, "
            f"{plan.layout.label})"
        )
    else:
        lines += [f"plan differs: {line}" for line in res.plan_mismatches]
        lines += [f"missing: {res.out}/{name}" for name in res.drift.missing]
        for name in res.drift.changed:
            lines.append(f"changed: {res.out}/{name}")
            lines += [f"    {line}" for line in res.drift.diffs[name]]
        lines.append("fix: run `gpuplan generate` and commit the result")
    if getattr(res, "unverified", None):
        lines.append(f"note: {res.unverified}")
    p = res.prices
    if p is None:
        return lines
    if p.best is None:
        lines.append(f"prices: no feasible offer at current prices ({p.detail})")
    elif p.committed is None:
        gone = (
            f"no longer serves the load these settings ask ({p.detail})"
            if p.detail
            else "is no longer in the catalog"
        )
        lines.append(
            f"prices: the committed offer ({plan.rented()}) {gone}; best now: {p.best.rented()}"
        )
    elif p.improvement > threshold:
        lines.append(
            f"prices: {p.best.rented()} would now be {p.improvement:.0%} better on "
            f"{plan.need.objective} than the committed {plan.rented()}; regenerate to switch"
        )
    else:
        lines.append(
            f"prices: the committed plan is still within {threshold:.0%} of the best at current "
            "catalog prices"
        )
    return lines


def deployed_line(doc: dict[str, Any]) -> str:
    if not doc["endpoint"]:  # Hetzner's Robot test mode ordered nothing: the detail says so
        return f"stack {doc['stack']} updated, nothing to serve: {doc['detail']}"
    health = (
        f"healthy after {doc['waited_s']:.0f} s"
        if doc["healthy"]
        else "not checked: `gpuplan status` says when it answers"
    )
    return (
        f"deployed {doc['model']} at {doc['endpoint']} ({health}); "
        "API key: `pulumi stack output apiKey --show-secrets`"
    )


def status_lines(doc: dict[str, Any]) -> list[str]:
    lines = [f"{k}: {v}" for k, v in doc.items() if k not in {"schema", "outputs"}]
    return lines + [f"output {k}: {v}" for k, v in doc["outputs"].items()]
