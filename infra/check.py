"""`gpuplan check`: does the committed project still match gpuplan.toml?

The committed gpuplan.plan.json is the plan the project was generated from. The check verifies
that it answers what gpuplan.toml asks (model, workload, constraints) and that regenerating the
project from it with the toml's deployment settings gives exactly the committed files. It does
not re-plan against today's prices (that would make CI flaky); --prices does, as a suggestion.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from infra.emit import ProjectOptions, render_project
from planner.decide.plan import Plan, plan_from_json
from planner.errors import UsageError
from planner.settings import ProjectConfig

PLAN_FILE = "gpuplan.plan.json"


@dataclass
class Drift:
    plan_mismatches: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    diffs: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.plan_mismatches or self.changed or self.missing)


def project_options(cfg: ProjectConfig) -> ProjectOptions:
    key = None
    if cfg.ssh_key:
        try:
            key = Path(cfg.ssh_key).expanduser().read_text("utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read ssh_key {cfg.ssh_key}: {exc.strerror}") from None
    return ProjectOptions(
        stack=cfg.stack, allowed_cidrs=cfg.allow_cidrs, ssh_cidr=cfg.ssh_cidr, ssh_public_key=key
    )


def committed_plan(out: Path) -> Plan:
    path = out / PLAN_FILE
    if not path.exists():
        raise UsageError(
            f"no generated project at {out} ({PLAN_FILE} missing)",
            "run `gpuplan generate` and commit its output",
        )
    return plan_from_json(path.read_text("utf-8"))


def _plan_mismatches(cfg: ProjectConfig, plan: Plan) -> list[str]:
    from planner.model.sources import load_model_spec

    out = []
    if cfg.model:
        asked = load_model_spec(cfg.model).name
        if asked != plan.base_model:
            out.append(f"model: gpuplan.toml asks {asked}, the project serves {plan.base_model}")
    need = plan.need
    pairs = {
        "context": need.context, "concurrency": need.concurrency,
        "prompt_tokens": need.prompt_tokens, "output_tokens": need.output_tokens,
        "kv_cache_dtype": need.kv_cache_dtype,
        "gpu_memory_utilization": need.gpu_memory_utilization, "objective": need.objective,
        "spot": need.spot, "max_price": need.max_price_usd_per_hour,
        "min_tokens_per_s": need.min_tokens_per_s, "max_ttft": need.max_ttft_ms,
    }  # fmt: skip
    for key, planned in pairs.items():
        wanted = getattr(cfg, key)
        if wanted != planned:
            out.append(f"{key}: gpuplan.toml says {wanted!r}, the plan was made for {planned!r}")
    o = plan.offer
    if cfg.providers and o.provider not in cfg.providers:
        out.append(f"providers: {o.provider} is not in {list(cfg.providers)}")
    if cfg.gpu:
        from planner.offers.gpus import canonical_gpu

        if canonical_gpu(cfg.gpu).id != o.gpu:
            out.append(f"gpu: gpuplan.toml asks {cfg.gpu}, the project runs {o.gpu}")
    if cfg.instance_type and cfg.instance_type != o.instance_type:
        out.append(
            f"instance_type: gpuplan.toml asks {cfg.instance_type}, the project uses "
            f"{o.instance_type}"
        )
    if cfg.regions and not any(r.lower() in o.region.lower() for r in cfg.regions):
        out.append(f"regions: {o.region} matches none of {list(cfg.regions)}")
    return out


def check_project(cfg: ProjectConfig) -> tuple[Drift, Plan]:
    out = Path(cfg.out)
    plan = committed_plan(out)
    drift = Drift(plan_mismatches=_plan_mismatches(cfg, plan))
    expected = render_project(plan, project_options(cfg))
    for name, content in expected.items():
        path = out / name
        if not path.exists():
            drift.missing.append(name)
            continue
        actual = path.read_text("utf-8")
        if actual != content:
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
    return drift, plan


def improvement(current: float, best: float) -> float:
    """How much better ``best`` is than ``current`` as a share of it (objective values: lower
    is better, and speed values are negative), 0 when there is nothing to compare."""
    return (current - best) / abs(current) if current else 0.0
