"""Plan -> the files of a Pulumi (Python) project, deterministically, and their safe write.

Same plan and options, byte-identical files: no timestamps, sorted keys, pinned versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from infra import targets, versions
from infra.check import PLAN_FILE
from infra.options import ProjectOptions, validate_options
from infra.render import render, static_file
from infra.sizing import disk_gb, ready_s, resource_name, slug
from planner.decide.plan import TRUST_REMOTE_CODE, Plan
from planner.errors import DeployError, LocalFileError, UsageError, local_file_error, short
from planner.fsutil import text_bytes

__all__ = [
    "MARKER",
    "ProjectOptions",
    "hand_edits",
    "plan_data",
    "render_project",
    "write_project",
]

MARKER = ".gpuplan"
PORT = 8000
# vLLM's native multi-node rendezvous port (torch.distributed store on the head); any free
# port works, it only has to match on every node and be open between them.
MASTER_PORT = 29501


def plan_data(plan: Plan, opts: ProjectOptions) -> dict[str, Any]:
    """The literal PLAN dict of the generated program (only plain values). A plan no target
    can write raises DeployError with targets.refusal's reason."""
    reason = targets.refusal(plan)
    if reason:
        raise DeployError(reason, "pin --providers / --gpu to an offer gpuplan generates for")
    o = plan.offer
    target = targets.targets()[o.provider]
    data: dict[str, Any] = {
        "provider": o.provider, "name": resource_name(plan),
        "stack_tag": slug(opts.stack, 30), "image": opts.image or image_for(plan),
        "vllm_args": serve_args(plan, opts), "port": PORT,
        "served_model_name": plan.base_model, "usd_per_hour": plan.estimate.usd_per_hour,
        "allowed_cidrs": list(opts.allowed_cidrs), "ssh_cidr": opts.ssh_cidr,
        "ssh_public_key": opts.ssh_public_key, "spot": plan.need.spot,
        "disk_gb": disk_gb(plan, opts),
        "replicas": plan.estimate.replicas,
        "nodes": plan.layout.nodes,
        "gpus_total": plan.offer.gpu_count * plan.layout.nodes,
        "master_port": MASTER_PORT,
        "needs_hf_token": needs_hf_token(plan),
    }  # fmt: skip
    data.update(target.facts(plan, opts))
    return data


# Hugging Face organisations whose model repositories are all gated (the model card must be
# accepted and requests need a token): huggingface.co/meta-llama ("You need to agree to share
# your contact information to access this model"), huggingface.co/google gemma-* ("review and
# agree to Google's usage license"). Other gated repositories are not known to gpuplan.
GATED_PREFIXES = ("meta-llama/", "google/gemma")


def needs_hf_token(plan: Plan) -> bool:
    return plan.model.lower().startswith(GATED_PREFIXES)


def image_for(plan: Plan) -> str:
    """vLLM's image for the plan's GPUs: the ROCm build on AMD, the CUDA build otherwise."""
    return versions.VLLM_ROCM_IMAGE if targets.is_amd(plan.offer.gpu) else versions.VLLM_IMAGE


def serve_args(plan: Plan, opts: ProjectOptions) -> list[str]:
    """`vllm serve` arguments: the model first and positional (`--model` is deprecated in
    `vllm serve`), no Ray executor (the stock image has no Ray since v0.19: ai-dynamo/dynamo#8515;
    multi-node uses vLLM's native --nnodes, added per node at boot), then the user's extras."""
    args = list(plan.vllm_args)
    model = plan.model
    if args and args[0] == model:  # plans from this version: the model is already first
        del args[0]
    if "--model" in args:  # plans saved by earlier versions
        i = args.index("--model")
        model = args[i + 1]
        del args[i : i + 2]
    if "--distributed-executor-backend" in args:
        i = args.index("--distributed-executor-backend")
        del args[i : i + 2]
    return [model, *args, *opts.extra_vllm_args]


def render_project(plan: Plan, opts: ProjectOptions) -> dict[str, str]:
    """{relative path: content} of the generated project."""
    opts = validate_options(opts)
    targets.require(plan, opts)
    data = plan_data(plan, opts)
    provider = data["provider"]
    target = targets.targets()[provider]
    ctx = {
        "data": data, "provider": provider, "model": plan.model, "base_model": plan.base_model,
        # a dynamic provider module adopts a machine whose create answer was lost, by label
        "dynamic_provider": target.helper is not None,
    }  # fmt: skip
    requirements = {**versions.BASE_REQUIREMENTS, **versions.PROVIDER_REQUIREMENTS[provider]}
    est = plan.estimate
    monthly = (
        f" (a monthly rental: ${est.monthly_commitment_usd:,.0f}/month + "
        f"${est.setup_fee_usd:,.0f} setup)"
        if est.monthly_commitment_usd
        else ""
    )
    readme_ctx = {
        **ctx, "provider_title": target.title,
        "image": data["image"], "usd_per_hour": est.usd_per_hour, "monthly_line": monthly,
        "offer_line": plan.offer_label(), "machines": plan.machines,
        "layout": plan.layout.label, "tokens_per_s": est.aggregate_output_tokens_per_s,
        "stream_tokens_per_s": est.single_stream_tokens_per_s,
        "replicas": est.replicas, "nodes": plan.layout.nodes, "stack": opts.stack,
        "setup_lines": list(target.setup_lines), "gated_hint": True,
        "monthly_price_usd": est.monthly_commitment_usd or 0.0,
        "setup_fee_usd": est.setup_fee_usd or 0.0,
        "protects": list(target.protects),
        "exposes": list(target.exposes),
        "tls": targets.is_https(plan, opts),
        # HTTPS from a Let's Encrypt certificate the machine gets for this domain, or None
        "acme_domain": targets.acme_domain(opts),
        # how to get HTTPS when the endpoint is plain HTTP
        "tls_hint": targets.tls_hint(target),
        "model_is_guess": plan.model_is_guess,
        # also when the user passed the flag through --extra-vllm-arg: the README says so
        "remote_code": plan.runs_remote_code or TRUST_REMOTE_CODE in opts.extra_vllm_args,
        "revision": plan.revision,  # the Hub commit served, or None: the latest at each start
        # minutes from a new machine's start until it serves (sizing.ready_s, an allowance)
        "ready_minutes": -(-ready_s(plan) // 60),
    }  # fmt: skip
    files = {
        "Pulumi.yaml": render(
            "_shared/Pulumi.yaml.j2",
            project=data["name"],
            project_config=target.project_config(data),
            **ctx,
        ),
        "__main__.py": render(f"{provider}/__main__.py.j2", **ctx),
        "gpuplan_boot.py": static_file("_shared/gpuplan_boot.py"),
        "gpuplan_gzip.py": static_file("_shared/gpuplan_gzip.py"),
        "requirements.txt": render("_shared/requirements.txt.j2", requirements=requirements),
        "README.md": render(f"{provider}/README.md.j2", **readme_ctx),
        ".gitignore": render("_shared/gitignore.j2"),
    }
    if target.helper:
        files[target.helper] = static_file(f"{provider}/{target.helper}")
    if target.auth_proxy:
        files["gpuplan_proxy.py"] = static_file("_shared/gpuplan_proxy.py")
    if target.boot_extras:
        files["gpuplan_boot_extras.py"] = static_file("_shared/gpuplan_boot_extras.py")
    files[PLAN_FILE] = _plan_json(plan)
    # what each file held as written: a later generate tells a hand edit from an older
    # gpuplan's output (hand_edits)
    digests = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in files.items()}
    marker = {"generated_by": "gpuplan", "files": sorted([*files, MARKER]), "sha256": digests}
    files[MARKER] = json.dumps(marker, indent=1, sort_keys=True) + "\n"
    return dict(sorted(files.items()))


def _plan_json(plan: Plan) -> str:
    from planner.decide.plan import plan_to_json

    return plan_to_json(plan)


def user_owned(name: str) -> bool:
    """Files of the project folder that belong to the user: the stack settings files, which
    `pulumi config set` writes (gpuplan never writes, removes or checks them)."""
    return name.startswith("Pulumi.") and name.endswith(".yaml") and name != "Pulumi.yaml"


# The modules that build the machines' start-up (AWS user data, GCP startup script, the RunPod
# and Vast start command): a change to one changes it, and the clouds replace a machine (or
# restart a pod) whose start-up changes.
STARTUP_FILES = ("gpuplan_boot.py", "gpuplan_gzip.py", "gpuplan_proxy.py", "gpuplan_boot_extras.py")


def startup_changes(files: dict[str, str], out: Path) -> list[str]:
    """The start-up modules that regenerating the project at ``out`` (generated before: it has
    the marker) rewrites with other content; [] for a new folder."""
    if not (out / MARKER).is_file():
        return []
    changed = []
    for name in STARTUP_FILES:
        old = out / name
        # bytes: a hand-edited file that is not UTF-8 is "changed", not an error
        if name in files and old.is_file() and old.read_bytes() != files[name].encode():
            changed.append(name)
    return changed


def hand_edits(files: dict[str, str], out: Path) -> list[str]:
    """The files at ``out`` that were changed by hand since gpuplan wrote them (their content
    is not what the marker recorded) and that regenerating rewrites, or removes (named with
    " (removed)": the new project has no such file); [] when the marker is from a gpuplan that
    recorded no digests."""
    try:
        recorded = json.loads((out / MARKER).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    edited = []
    for name, digest in sorted(recorded.items() if isinstance(recorded, dict) else []):
        path = out / name
        # a doctored marker's name outside the folder is never read (write_project refuses it)
        if name == MARKER or user_owned(name) or not inside(out, name) or not path.is_file():
            continue
        now = text_bytes(path)  # a CRLF checkout (git's autocrlf) is no edit
        if hashlib.sha256(now).hexdigest() == digest:  # as gpuplan wrote it
            continue
        if name not in files:
            edited.append(f"{name} (removed)")
        elif now != files[name].encode():
            edited.append(name)
    return edited


def inside(out: Path, name: str) -> bool:
    """Is ``name`` a relative file name whose folder is ``out`` or below it (not absolute, no
    ``..``, no folder of it a symlink leading out)? Only such names in a marker are gpuplan's."""
    rel = PurePosixPath(name)
    if not rel.parts or rel.is_absolute() or ".." in rel.parts or "\\" in name or "\0" in name:
        return False
    return _within(out, out / rel.parent)


def _within(out: Path, path: Path) -> bool:
    """Does ``path``, its symlinks resolved, lie in ``out`` (or is it ``out``)?"""
    root, real = os.path.realpath(out), os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def _recorded_files(out: Path) -> list[str]:
    """The files the marker at ``out`` says an earlier generate wrote. A marker that is not JSON,
    holds other types, or names a file outside ``out`` is refused as damaged: trusting it would
    remove files gpuplan never wrote."""
    marker = out / MARKER
    hint = "remove it (or restore it from git), or use an empty --out"
    try:
        names = json.loads(marker.read_text("utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"{marker} is damaged", hint) from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{marker} is damaged: its 'files' is not a list of names", hint)
    outside = [n for n in names if not inside(out, n)]
    if outside:
        raise UsageError(
            f"{marker} is damaged: it lists {short(outside[0], 60)}, which is not a file inside "
            f"{short(out, 60)} (nothing was removed)",
            hint,
        )
    return names


def _links_out(out: Path, names: list[str]) -> None:
    """Refuse a file of the project that is a symlink to a place outside ``out``: writing
    through it would overwrite a file elsewhere (a link within the folder stays a link)."""
    for name in names:
        path = out / name
        if path.is_symlink() and not _within(out, path):
            target = os.path.realpath(path)
            raise UsageError(
                f"--out {out}: {name} is a symlink to {short(target, 200)}, outside the project "
                "folder; gpuplan will not write through it",
                "replace the link with a file (or remove it), or use a new --out",
            )


def _pulumi_project(text: str) -> str | None:
    """The project name a Pulumi.yaml names (Pulumi keys its stacks by it), unquoted."""
    found = re.search(r"^name:\s*(.+?)\s*$", text, re.M)
    return found[1].strip("'\"") if found else None


def _provider_change(old_plan: Path, new_plan: str | None) -> tuple[str, str] | None:
    """(old provider, new provider) when the folder's plan and the new one differ; None when
    they agree or either cannot be read (a damaged plan file is the marker's business)."""
    try:
        old = json.loads(old_plan.read_bytes())["offer"]["provider"]
        new = json.loads(new_plan or "")["offer"]["provider"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if isinstance(old, str) and isinstance(new, str) and old != new:
        return old, new
    return None


def _old_project(old_yaml: Path) -> str | None:
    """The project name of the folder's Pulumi.yaml, or None when there is none. A file that is
    not UTF-8 elsewhere is a hand edit like any other (regenerating replaces it); a name that
    is not UTF-8 cannot be compared with the new one, and is refused."""
    if not old_yaml.is_file():
        return None
    name = _pulumi_project(old_yaml.read_bytes().decode("utf-8", errors="replace"))
    if name and "\ufffd" in name:
        raise UsageError(
            f"{old_yaml}: the Pulumi project name is not UTF-8 text, so gpuplan cannot tell "
            "whether the folder is another model's project (whose stacks would be left running)",
            "restore Pulumi.yaml from git, or remove it if no stack was deployed from this folder",
        )
    return name


def write_project(files: dict[str, str], out: Path, old_stack_destroyed: bool = False) -> list[str]:
    """Write the files into ``out``, all or nothing. A folder holding files gpuplan did not
    generate is refused; files an earlier generation wrote but this one does not are removed.
    Everything that can be checked is checked before the first write: a refusal leaves the old
    project as it was.

    Regenerating for another provider would remove the old provider's dynamic-provider module,
    which the Pulumi state still needs to delete the old machine (it would otherwise fail with
    ModuleNotFoundError and keep billing): refused unless ``old_stack_destroyed``."""
    from planner.fsutil import atomic_write_many, atomic_write_text

    previous: list[str] = []
    if out.exists():
        if not out.is_dir():
            raise UsageError(f"--out {out} is a file, not a folder")
        present = sorted(
            p.name
            for p in out.iterdir()
            if p.name not in {"venv", "__pycache__"}
            and not p.name.startswith(".pulumi")
            and not user_owned(p.name)
        )
        if (out / MARKER).exists():
            previous = _recorded_files(out)
        helpers = {t.helper for t in targets.targets().values() if t.helper}
        stranded = sorted((set(previous) - set(files)) & helpers)
        if stranded and not old_stack_destroyed:
            raise UsageError(
                f"--out {out} was generated for another provider, and its deployed resources "
                f"need {', '.join(stranded)} to be destroyed",
                "run `pulumi destroy` in that folder first (then regenerate with "
                "--old-stack-destroyed), or use a new --out",
            )
        moved = _provider_change(out / PLAN_FILE, files.get(PLAN_FILE))
        if moved and not old_stack_destroyed:
            old, new = moved
            raise UsageError(
                f"--out {out} was generated for {old} and the new plan is for {new}: the next "
                f"`pulumi up` would have to delete the {old} resources of its stacks with {old}'s "
                f"credentials, which a {new} deploy (CI's too) does not have, and they would "
                "keep running",
                "destroy the deployed stack first (`gpuplan destroy`), then regenerate with "
                "--old-stack-destroyed (also when nothing was deployed), or use a new --out",
            )
        before = _old_project(out / "Pulumi.yaml")
        after = _pulumi_project(files.get("Pulumi.yaml", ""))
        if before and after and before != after and not old_stack_destroyed:
            raise UsageError(
                f"--out {out} is Pulumi project '{short(before, 60)}' and the new plan's is "
                f"'{short(after, 60)}' (another model): its stacks, and their machines, would "
                "be left running and out of reach",
                "destroy the deployed stack first (`gpuplan destroy`), then regenerate with "
                "--old-stack-destroyed, or use a new --out",
            )
        foreign = [p for p in present if p not in previous and p not in files]
        if foreign:
            raise UsageError(
                f"--out {out} holds files gpuplan did not generate: {', '.join(foreign[:5])}",
                "use an empty or new folder, or the folder of an earlier `gpuplan generate`",
            )
        _links_out(out, list(files))
    # earlier gpuplan versions wrote the stack file, which is the user's
    stale = [n for n in sorted(set(previous) - set(files)) if not user_owned(n)]
    for name in stale:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            raise UsageError(
                f"cannot remove {short(path)}: it is a folder, where an earlier generate wrote "
                "a file (nothing was written)",
                "move the folder out of --out, then generate again",
            )
    out.mkdir(parents=True, exist_ok=True)
    # All files or none: a full disk or an interrupt leaves the previous project as it was.
    atomic_write_many({out / name: content for name, content in files.items() if name != MARKER})
    left: list[str] = []
    failed: LocalFileError | None = None
    for name in stale:
        try:
            (out / name).unlink(missing_ok=True)
        except OSError as exc:
            left.append(name)
            exc.filename = name  # the name, not the whole path cut short
            err = local_file_error(exc, "remove")
            failed = failed or LocalFileError(f"{err.message} in --out {short(out, 60)}", err.hint)
    marker = files[MARKER]
    if left:  # the marker still lists them: the next generate removes them, not "foreign"
        data = json.loads(marker)
        data["files"] = sorted([*data["files"], *left])
        marker = json.dumps(data, indent=1, sort_keys=True) + "\n"
    atomic_write_text(out / MARKER, marker)  # last: it vouches for the rest
    if failed is not None:
        raise failed
    return sorted(files)
