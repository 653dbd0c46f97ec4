"""Use cases about the generated project: generate, init, check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from infra.check import Drift
from planner.app.plan import SpreadSuggestion
from planner.decide.plan import Need, Plan
from planner.decide.suggest import QuantSuggestion
from planner.errors import DeployError, GpuplanError, NoFeasibleOfferError, UsageError, short
from planner.settings import KEYS, Settings, on_command_line


@dataclass(frozen=True, slots=True)
class Generated:
    plan: Plan
    out: str
    written: list[str]
    skipped: list[str] = field(default_factory=list)  # better plans gpuplan cannot write yet
    warnings: list[str] = field(default_factory=list)  # what to read before deploying
    suggestion: QuantSuggestion | None = None  # FP8 >= 20% cheaper (see app.plan.recommend)
    spread: SpreadSuggestion | None = None  # identical machines sharing the streams, as well


def _project_options(s: Settings):  # -> infra.emit.ProjectOptions
    from infra.emit import ProjectOptions

    key = None
    if s.ssh_key:
        path = Path(s.ssh_key).expanduser()
        try:
            key = path.read_text("utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not a text file"
            where = s.sources.get("ssh_key", "ssh_key")  # --ssh-key, or where else it came from
            raise UsageError(
                f"cannot read {where} {short(s.ssh_key)}: {reason}",
                "give the path of your SSH public key, e.g. ~/.ssh/id_ed25519.pub",
            ) from None
    return ProjectOptions(
        stack=s.stack, allowed_cidrs=s.allow_cidrs, ssh_cidr=s.ssh_cidr, ssh_public_key=key,
        disk_gb=s.disk_gb, image=s.image, extra_vllm_args=s.extra_vllm_args,
        network=s.network, subnets=s.subnets, tls_certificate=s.tls_certificate,
        tls_domain=s.tls_domain, allow_open_port=s.allow_open_port,
        allow_guessed_model=s.allow_guessed_model, allow_remote_code=s.allow_remote_code,
    )  # fmt: skip


def unwritable(plan: Plan, options=None) -> str | None:
    """Why gpuplan cannot write a project for ``plan`` (the target's declared capabilities, and
    whether it serves the HTTPS ``options`` ask for), or None when it can."""
    from infra.targets import refusal, tls_refusal

    return refusal(plan) or (tls_refusal(plan, options) if options else None)


def best_writable(plans: Sequence[Plan], options=None) -> tuple[Plan, list[str]]:
    """The best plan gpuplan can write a project for, and the better ones it had to skip. When
    none can be written, the error is the user's to fix (exit 2) if the HTTPS options stopped a
    plan gpuplan could otherwise write (those reasons only, and what to change); else gpuplan
    cannot write any of them yet (exit 5)."""
    from infra.targets import refusal, tls_refusal_hint

    skipped: list[str] = []
    reasons: dict[str, int] = {}  # each distinct reason once, with how many plans it stopped
    tls_reasons: dict[str, int] = {}  # the same, for plans only the TLS options stopped
    stopped_by_tls: Plan | None = None  # the best of those
    for plan in plans:
        why = unwritable(plan, options)
        if why is None:
            return plan, skipped
        skipped.append(f"{plan.offer.provider} {plan.offer.instance_type}: {why}")
        reasons[why] = reasons.get(why, 0) + 1
        if refusal(plan) is None:
            stopped_by_tls = stopped_by_tls or plan
            tls_reasons[why] = tls_reasons.get(why, 0) + 1
    if stopped_by_tls is not None:
        raise UsageError(
            "none of the feasible plans can be generated with these TLS options: "
            + _counted(tls_reasons),
            tls_refusal_hint(stopped_by_tls, options),
        )
    raise DeployError(
        "none of the feasible plans can be generated yet: " + _counted(reasons),
        "recommend again pinned to an offer gpuplan generates for (--providers / --gpu), "
        "then generate from that plan",
    )


def _counted(reasons: dict[str, int]) -> str:
    """The first three distinct reasons, each with how many plans it stopped."""
    return "; ".join(f"{n} x {why}" if n > 1 else why for why, n in list(reasons.items())[:3])


def read_plan_file(path: str | Path) -> Plan:
    from planner.decide.plan import plan_from_json

    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a text file"
        raise UsageError(f"cannot read plan file {path}: {reason}") from None
    return plan_from_json(text)


class PlanNotVerified(UsageError):
    """A plan file that does not match what gpuplan derives for its model on its offer."""


# Why a plan saved by an older gpuplan may no longer match what gpuplan derives.
RESAVE = (
    "since gpuplan of 2026-12-01, TTFT is taken at the load and throughput targets are sized "
    "within the service level: plans saved before may differ; save the plan again with "
    "`gpuplan recommend --save-plan`"
)


def verify_plan(plan: Plan, *, config_path: str | None = None, offline: bool = False) -> list[str]:
    """What in ``plan`` differs from what gpuplan derives: the offer must be in the catalog
    with the same GPUs, and re-planning the file's model, format and need on the file's offer
    must give the same layout, vLLM arguments and price. Returns the differences (empty: the
    plan is gpuplan's own). ``offline`` reads the model from the registry or the Hugging Face
    cache only; a model that cannot be read raises ``PlanNotVerified`` saying why."""
    from planner.decide.checks import validate_need
    from planner.decide.rank import plan_offer
    from planner.errors import short
    from planner.offers.catalog import load_catalog
    from planner.offers.providers import provider_classes
    from planner.offers.providers.base import same_machine
    from planner.settings import check_need

    check_need(plan.need, "plan file")
    validate_need(plan.need)
    o = plan.offer
    problems: list[str] = []
    catalog = load_catalog([o.provider]) if o.provider.isidentifier() else None
    listed = catalog.offers if catalog else []
    same = [
        c
        for c in listed
        if (c.provider, c.instance_type, c.region) == (o.provider, o.instance_type, o.region)
    ]
    source = provider_classes().get(o.provider)
    if not same:
        # marketplaces and clouds that name a machine otherwise find it again by their own rule
        if source is None or not source.sells_again(o, listed):
            problems.append(
                f"offer: {short(o.provider, 20)} {short(o.instance_type, 40)} in "
                f"{short(o.region, 30)} is not in the offer catalog"
            )
    elif not any(same_machine(c, o) for c in same):
        c = same[0]
        problems.append(
            f"offer: {o.instance_type} has {c.gpu_count}x {c.gpu} ({c.gpu_memory_gb:g} GB) in "
            f"the catalog, the plan says {o.gpu_count}x {short(o.gpu, 30)} ({o.gpu_memory_gb:g} GB)"
        )
    spec = _plan_model(plan, config_path, offline)
    if plan.revision is None and spec.revision is not None:
        # planned by a gpuplan that did not pin the commit (or pinning removed by hand): the
        # same plan unpinned, which serves the repository's latest revision at each start
        spec = replace(spec, revision=None)
    cands = [
        c
        for c in _plan_candidates(spec, plan.quant_format)
        if c.spec.name == plan.model and c.fmt.name == plan.quant_format
    ]
    if not cands:
        return [*problems, f"model: {short(plan.model)} in {plan.quant_format} is not a "
                           f"checkpoint gpuplan plans for {short(plan.base_model)}"]  # fmt: skip
    derived = plan_offer(cands, o, plan.need)
    if isinstance(derived, str):
        return [*problems, f"plan: the offer cannot serve this model and need ({derived})", RESAVE]
    if derived.layout != plan.layout:
        problems.append(f"layout: gpuplan derives {derived.layout}, the plan says {plan.layout}")
    if derived.vllm_args != plan.vllm_args:
        extra = [a for a in plan.vllm_args if a not in derived.vllm_args]
        missing = [a for a in derived.vllm_args if a not in plan.vllm_args]
        problems.append(
            "vllm_args differ from what gpuplan derives"
            + (f" (not gpuplan's: {short(' '.join(extra), 60)})" if extra else "")
            + (f" (gpuplan adds: {short(' '.join(missing), 60)})" if missing else "")
        )
    want, got = derived.estimate.usd_per_hour, plan.estimate.usd_per_hour
    if abs(want - got) > 1e-6 * max(want, 1.0):
        problems.append(f"price: the offer costs ${want:,.2f}/h, the plan says ${got:,.2f}/h")
    # Figures that follow from the offer and the layout alone (not from the speed model, whose
    # calibration may move between versions) must match too.
    for name in ("monthly_commitment_usd", "setup_fee_usd", "replicas"):
        want_v, got_v = getattr(derived.estimate, name), getattr(plan.estimate, name)
        if (want_v is None) != (got_v is None) or (
            want_v is not None and abs(want_v - got_v) > 1e-6 * max(abs(want_v), 1.0)
        ):
            problems.append(f"estimate.{name}: gpuplan derives {want_v}, the plan says {got_v}")
            if name == "replicas" and plan.need.target_output_tokens_per_s:
                problems.append(RESAVE)
    return problems


def _plan_model(plan: Plan, config_path: str | None, offline: bool):  # -> ModelSpec
    import os

    from planner.model.sources import load_model_spec

    if plan.model_source in {"config", "gguf"} and not config_path:
        raise PlanNotVerified(
            "cannot verify the plan: it was made from a local config file",
            "pass the same file with --config PATH",
        )
    # a plan read from the Hub is checked against the Hub at the commit it serves
    hub = {"from_hub": True, "revision": plan.revision} if plan.model_source == "hf" else {}
    if not offline:
        return load_model_spec(plan.base_model, config_path=config_path, **hub)
    saved = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the registry or the cache only: check never calls out
    try:
        return load_model_spec(plan.base_model, config_path=config_path, **hub)
    except GpuplanError as exc:
        raise PlanNotVerified(
            f"cannot verify the model offline: {exc.message}",
            "run `gpuplan recommend` for it once online (it fills the Hugging Face cache)",
        ) from None
    finally:
        if saved is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved


def _plan_candidates(spec, quant_format: str) -> list:  # -> list[Candidate]
    from planner.decide.rank import candidates_for
    from planner.model.sources import quantized_variants

    variants = quantized_variants(spec.name)
    out = []
    for quant in (None, "auto", quant_format):
        try:
            out += candidates_for(spec, quant, variants)
        except GpuplanError:
            continue
    return out


def generate(
    s: Settings,
    *,
    plan_file: str | None = None,
    config_path: str | None = None,
    from_hub: bool = False,
    old_stack_destroyed: bool = False,
) -> Generated:
    """Plan (or read ``plan_file``) and write the Pulumi project of the best writable plan to
    ``s.out``, all files or none."""
    from infra.emit import hand_edits, render_project, startup_changes, write_project
    from infra.targets import warnings
    from planner.app.plan import cheaper_quantization_for, cheaper_spread_for, recommend

    if plan_file and on_command_line(s.sources.get("model", "")):
        raise UsageError("give MODEL or --plan, not both")
    planning = [
        s.sources[k]
        for k in s.sources
        if KEYS[k].section != "deploy" and k != "model" and on_command_line(s.sources[k])
    ] + (["--from-hub"] if from_hub else [])
    if plan_file and planning:  # the plan file is written as planned: these would be dropped
        raise UsageError(
            f"--plan takes the saved plan as it is; {', '.join(sorted(planning))} would be ignored",
            "drop them, or plan again: `gpuplan recommend ... --save-plan FILE`",
        )
    if not plan_file and not s.model and not config_path:
        raise UsageError(
            "no MODEL, --plan or gpuplan.toml [model].model",
            "pass a model, or run `gpuplan init` first",
        )
    if s.toml_path is None and "out" not in s.sources:
        raise UsageError("no --out folder given", "pass --out DIR (or set [deploy].out)")
    options = _project_options(s)
    skipped: list[str] = []
    read_first: tuple[str, ...] = ()  # the catalog's and the settings' warnings
    suggestion = spread = None
    if plan_file:
        plan = read_plan_file(plan_file)
        problems = verify_plan(plan, config_path=config_path)
        if problems:
            raise PlanNotVerified(
                f"plan file {short(plan_file)} does not match what gpuplan derives: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                "regenerate it with `gpuplan recommend ... --save-plan FILE`",
            )
    else:
        rec = recommend(s, config_path=config_path, from_hub=from_hub, suggest=False)
        plan, skipped = best_writable(rec.ranking.plans, options)
        read_first = rec.warnings

        # compared with the plan written, among the plans gpuplan can write
        def writable(p: Plan) -> bool:
            return unwritable(p, options) is None

        suggestion = cheaper_quantization_for(rec, plan, accept=writable)
        spread = cheaper_spread_for(rec, plan, accept=writable)
    files = render_project(plan, options)
    replacing = startup_changes(files, Path(s.out))
    edited = hand_edits(files, Path(s.out))
    written = write_project(files, Path(s.out), old_stack_destroyed=old_stack_destroyed)
    notes = [*read_first, *warnings(plan, options)]
    if edited:
        notes.append(
            f"replaced your edits to {', '.join(edited)}: gpuplan writes these files (an edit "
            "you committed is still in git); keep changes in gpuplan.toml's [deploy] settings "
            "(image, disk_gb, extra_vllm_args, network...), which regenerating keeps"
        )
    if replacing:
        notes.append(
            f"{', '.join(replacing)} changed, and the machines' start-up is built from it: the "
            "next `pulumi up` replaces the machines (or restarts the pods), the model downloads "
            "again, and a machine's own address may change; `pulumi preview` shows it"
        )
    return Generated(plan, s.out, written, skipped, notes, suggestion, spread)


def init_repo(
    *,
    model: str,
    allow_cidrs: tuple[str, ...],
    providers: str | None,
    stack: str,
    out: str,
    root: str,
    force: bool,
    ci_install: str | None = None,
) -> list[Path]:
    """Write a commented gpuplan.toml and the GitHub Actions workflow; returns the paths."""
    from infra.options import check_cidr, check_stack
    from infra.workflow import render_workflow
    from planner.fsutil import atomic_write_many
    from planner.inittoml import config_template
    from planner.offers.providers import parse_provider_list
    from planner.settings import load_settings

    # what every later command would refuse is refused now, before anything is written
    if not model.strip():  # init's --model (load_settings would call it MODEL)
        raise UsageError("--model is empty", "give the model to serve, e.g. llama-3.1-8b")
    given = {"providers": providers.split(",")} if providers is not None else {}
    load_settings({"model": model, "out": out, **given}, toml=None, env={})
    check_stack(stack)
    for cidr in allow_cidrs:
        check_cidr(cidr)
    names = parse_provider_list(providers) if providers else None
    base = Path(root)
    targets = {
        base / "gpuplan.toml": config_template(
            model, list(allow_cidrs), names, stack, out, ci_install
        ),
        base / ".github" / "workflows" / "gpuplan.yml": render_workflow(out, stack, ci_install),
    }
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise UsageError(f"{', '.join(existing)} already exist(s)", "add --force to overwrite")
    atomic_write_many(targets)  # both files or neither
    return list(targets)


@dataclass(frozen=True, slots=True)
class PriceCheck:
    committed: float | None  # the committed offer's objective value now (None: gone)
    best: Plan | None  # None: nothing feasible at current prices
    improvement: float  # share by which best beats committed (0 when not comparable)
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    out: str
    plan: Plan
    drift: Drift
    plan_mismatches: list[str]
    prices: PriceCheck | None = None
    unverified: str | None = None  # why the plan could not be checked against its model

    @property
    def clean(self) -> bool:
        return self.drift.clean and not self.plan_mismatches


def _asked_model(name: str) -> str:
    """The canonical name of what gpuplan.toml asks for, offline: registry ids and aliases
    resolve to the registry id; anything else (a Hub id, a folder) is compared as written."""
    from planner.model.sources import find_registry_entry

    entry = find_registry_entry(name)
    return entry["id"] if entry else name.strip()


# Need fields the ranking sets (the default service level dropped when no offer meets it,
# machines sharing streams no single one serves), not the user: never a mismatch.
_SET_BY_THE_RANKING = frozenset({"default_service_level", "stream_replicas"})


def plan_mismatches(s: Settings, plan: Plan) -> list[str]:
    """What the settings ask that the committed plan does not answer."""
    from planner.model.sources import COMMIT_ID
    from planner.offers.gpus import gpu_ids

    out = []
    if s.model and _asked_model(s.model) != plan.base_model:
        out.append(f"model: settings ask {s.model}, the project serves {plan.base_model}")
    # a commit id can be compared offline; a branch or tag names whatever the Hub says now
    if s.revision and COMMIT_ID.fullmatch(s.revision) and s.revision != plan.revision:
        out.append(f"revision: settings ask {s.revision}, the project serves {plan.revision}")
    asked, planned = s.need(), plan.need
    for key in (f.name for f in fields(Need) if f.name not in _SET_BY_THE_RANKING):
        if key == "target_output_tokens_per_s" and asked.deadline_hours:
            continue  # derived from the job and its deadline, which are compared themselves
        if key == "replica_headroom" and not (
            asked.target_output_tokens_per_s or planned.target_output_tokens_per_s
        ):
            continue  # it sizes a throughput target's replicas: without one it changes nothing
        wanted, got = getattr(asked, key), getattr(planned, key)
        if wanted != got:
            out.append(f"{key}: settings say {wanted!r}, the plan was made for {got!r}")
    o = plan.offer
    if s.providers and o.provider not in s.providers:
        out.append(f"providers: {o.provider} is not in {list(s.providers)}")
    if s.gpu and o.gpu not in gpu_ids(s.gpu):
        out.append(f"gpu: settings ask {s.gpu}, the project runs {o.gpu}")
    if s.instance_type and s.instance_type != o.instance_type:
        out.append(
            f"instance_type: settings ask {s.instance_type}, the project uses {o.instance_type}"
        )
    if s.regions and not any(r.lower() in o.region.lower() for r in s.regions):
        out.append(f"regions: {o.region} matches none of {list(s.regions)}")
    return out


def _price_check(s: Settings, plan: Plan) -> PriceCheck:
    """Would another plan now be better on the committed plan's objective?"""
    from planner.app.plan import recommend
    from planner.decide.objective import improvement

    settings = s if s.model else replace(s, model=plan.base_model)
    try:
        ranking = recommend(settings, from_hub=plan.model_source == "hf", suggest=False).ranking
    except NoFeasibleOfferError as exc:
        return PriceCheck(None, None, 0.0, exc.message)
    best = ranking.plans[0]
    same = next(
        (
            p
            for p in ranking.plans
            if (p.offer.provider, p.offer.instance_type, p.offer.region)
            == (plan.offer.provider, plan.offer.instance_type, plan.offer.region)
        ),
        None,
    )
    if same is None:
        # in the catalog still, but no longer serving the load as the settings ask it?
        committed = (plan.offer.provider, plan.offer.instance_type, plan.offer.region)
        fields = ranking.rejected.fields(("provider", "instance_type", "region"))
        why = next((r for f, r in zip(fields, ranking.rejected.reasons, strict=True)
                    if f == committed), "")  # fmt: skip
        return PriceCheck(None, best, 0.0, why)
    return PriceCheck(
        same.objective_value, best, improvement(same.objective_value, best.objective_value)
    )


def project_drift(folder: Path, plan: Plan, s: Settings) -> Drift:
    """Which files under ``folder`` are missing or differ from what gpuplan writes for ``plan``
    with the settings' project options."""
    from infra.check import file_drift
    from infra.emit import render_project

    return file_drift(folder, render_project(plan, _project_options(s)))


def check(s: Settings, *, prices: bool = False) -> CheckResult:
    """Does the committed project answer the settings, and regenerate byte for byte?"""
    from infra.check import committed_plan

    plan = committed_plan(Path(s.out))
    edited: list[str] = []
    unverified = None
    try:
        # A hand-edited plan (another offer, extra vLLM arguments, a wrong price) is drift too.
        edited = [f"plan file: {p}" for p in verify_plan(plan, offline=True)]
    except PlanNotVerified as exc:
        unverified = exc.message
    try:
        drift = project_drift(Path(s.out), plan, s)
    except UsageError:
        if not edited:
            raise
        drift = Drift()  # the edited plan is refused as it stands: its differences say why
    mismatches = plan_mismatches(s, plan) + edited
    return CheckResult(
        s.out,
        plan,
        drift,
        mismatches,
        _price_check(s, plan) if prices else None,
        unverified,
    )
