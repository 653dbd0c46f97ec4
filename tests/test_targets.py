"""infra/targets: one target per provider and template folder, what each refuses, and the
sizes and options a project is generated with."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from infra.options import ProjectOptions, validate_options
from infra.sizing import disk_gb, download_gb
from infra.targets import refusal, targets
from planner.decide.plan import Need
from planner.decide.rank import candidates_for, recommend
from planner.errors import UsageError
from planner.model.sources import load_model_spec
from planner.offers.providers import provider_names
from tests.test_generate import CIDR, make_offer, make_plan
from tests.test_generate_scale import multi_node_plan

ROOT = Path(__file__).resolve().parents[1]


def test_providers_targets_and_template_folders_agree():
    folders = sorted(
        p.name
        for p in (ROOT / "templates").iterdir()
        if p.is_dir() and not p.name.startswith(("_", ".")) and p.name != "ci"
    )
    assert sorted(provider_names()) == sorted(targets()) == folders
    for name, target in targets().items():
        assert (ROOT / "templates" / name / "__main__.py.j2").exists()
        assert (ROOT / "templates" / name / "README.md.j2").exists()
        if target.helper:
            assert (ROOT / "templates" / name / target.helper).exists()


@pytest.mark.parametrize("provider", ["aws", "gcp", "runpod", "vast", "hetzner"])
def test_a_plain_plan_is_writable_everywhere(provider):
    assert refusal(make_plan(provider)) is None


def test_refusals_follow_declared_capabilities():
    plan = make_plan("runpod")
    amd = replace(plan, offer=replace(plan.offer, gpu="mi300x"))
    assert refusal(amd) is None  # RunPod serves AMD with vLLM's ROCm image
    vast = make_plan("vast")
    assert "ROCm" in (refusal(replace(vast, offer=replace(vast.offer, gpu="mi300x"))) or "")
    mn = multi_node_plan("aws", "p4de.24xlarge", "a100-80gb-sxm")
    assert refusal(mn) is None
    for provider in ("runpod", "vast", "hetzner"):
        reason = refusal(replace(mn, offer=replace(mn.offer, provider=provider)))
        assert "AWS and Google Cloud only" in (reason or "")
    spot = replace(plan, need=replace(plan.need, spot=True))
    assert "spot" in (refusal(spot) or "")
    assert refusal(replace(plan, offer=replace(plan.offer, provider="azure"))) is not None
    hetzner = make_plan("hetzner")
    gone = replace(hetzner, offer=replace(hetzner.offer, notes=("discontinued",)))
    assert "discontinued" in (refusal(gone) or "")
    unknown_gpu = replace(plan, offer=replace(plan.offer, gpu="t4", provider_data={}))
    assert "RunPod GPU type" in (refusal(unknown_gpu) or "")


def test_disk_is_sized_from_the_download_not_the_loaded_weights():
    """Online FP8 downloads the BF16 checkpoint: ~141 GB for Llama 3.1 70B."""
    need = Need(context=4096)
    ranking = recommend(
        candidates_for(load_model_spec("llama-3.1-70b"), "fp8"), [make_offer("aws")], need
    )
    plans = [p for p in ranking.plans if "--quantization" in p.vllm_args]
    if not plans:  # one L40S cannot hold it: plan on 8 of them
        offer = replace(make_offer("aws"), instance_type="g6e.48xlarge", gpu_count=8)
        plans = [
            p
            for p in recommend(
                candidates_for(load_model_spec("llama-3.1-70b"), "fp8"), [offer], need
            ).plans
            if "--quantization" in p.vllm_args
        ]
    plan = plans[0]
    assert plan.quant_format == "fp8"
    assert 135 < download_gb(plan) < 150  # 70.6e9 parameters x 2 bytes
    assert disk_gb(plan, ProjectOptions()) >= download_gb(plan) + 60
    # the Base DLAMI's root is 100 GB before anything is downloaded (AWS's recommended size)
    assert disk_gb(plan, ProjectOptions()) >= download_gb(plan) * 1.2 + 130
    assert disk_gb(plan, ProjectOptions(disk_gb=500)) == 500


def test_an_moe_plan_whose_replicas_share_the_experts_downloads_the_whole_checkpoint():
    """Review: data-parallel replicas of an MoE model share its routed experts, so a GPU holds
    a dp-th of them and weights per GPU x TP no longer is the checkpoint: Qwen3-30B-A3B (61 GB
    in BF16) at TP1 x DP8 was sized a 13 GB download and a disk too small to hold it."""
    offer = replace(make_offer("vast"), instance_type="8x-H100", gpu="h100-sxm", gpu_count=8)
    need = Need(concurrency=512)
    cands = candidates_for(load_model_spec("Qwen/Qwen3-30B-A3B"), "bf16")
    plan = next(p for p in recommend(cands, [offer], need).plans if p.layout.dp > 1)
    assert plan.estimate.weights_gib_per_gpu * plan.layout.tp < 40  # a share of the experts
    assert 58 < download_gb(plan) < 66  # 30.5e9 parameters x 2 bytes
    assert disk_gb(plan, ProjectOptions()) >= download_gb(plan) * 1.2 + 30
    job = Need(workload="batch", job_requests=200000)
    plan = next(p for p in recommend(cands, [offer], job).plans if p.layout.dp > 1)
    assert any(f"downloading {plan.estimate.model_weights_gib:,.0f} GiB" in n for n in plan.notes)
    assert 53 < (plan.estimate.model_weights_gib or 0) < 62


def test_open_serving_port_is_refused_unless_insisted():
    for cidrs in (("0.0.0.0/0",), ("0.0.0.0/1", "128.0.0.0/1"), ("::/0",)):
        with pytest.raises(UsageError, match="whole internet"):
            validate_options(ProjectOptions(allowed_cidrs=cidrs))
        assert validate_options(ProjectOptions(allowed_cidrs=cidrs, allow_open_port=True))
    assert validate_options(ProjectOptions(allowed_cidrs=("0.0.0.0/1",)))


def test_escape_hatches_are_validated():
    ok = validate_options(
        ProjectOptions(
            allowed_cidrs=(CIDR,),
            disk_gb=400,
            image="vllm/vllm-openai:v0.33.1",
            extra_vllm_args=("--enable-prefix-caching",),
        )
    )
    assert ok.disk_gb == 400
    with pytest.raises(UsageError, match="disk size"):
        validate_options(ProjectOptions(allowed_cidrs=(CIDR,), disk_gb=5))
    with pytest.raises(UsageError, match="image"):
        validate_options(ProjectOptions(allowed_cidrs=(CIDR,), image="x; rm -rf /"))
    with pytest.raises(UsageError, match="subnets"):
        validate_options(ProjectOptions(allowed_cidrs=(CIDR,), subnets=("subnet-1",)))
    # review: an extra --revision (or =form), appended last, overrode the commit planned
    for extra in (("--revision", "main"), ("--tokenizer-revision=v2",), ("--code-revision", "x")):
        with pytest.raises(UsageError, match="another revision than the one planned"):
            validate_options(ProjectOptions(allowed_cidrs=(CIDR,), extra_vllm_args=extra))
    # review: a secret as an extra argument landed in __main__.py and the boot script
    for extra in (("--api-key", "sk-1"), ("--hf-token=hf_x",)):
        with pytest.raises(UsageError, match="would write a secret"):
            validate_options(ProjectOptions(allowed_cidrs=(CIDR,), extra_vllm_args=extra))


# QA: appended after the plan's flags, these won (argparse keeps the last): a TP1 plan served
# at TP2 with --max-model-len 999999, its memory fit no longer true. Every spelling vLLM reads.
PLANNED_EXTRAS = [
    ("--tensor-parallel-size=2",), ("--tensor-parallel-size", "2"), ("-tp", "2"), ("-tp=2",),
    ("--tensor_parallel_size", "2"), ("--pipeline-parallel-size=2",), ("-pp", "2"),
    ("--data-parallel-size", "2"), ("-dp=2",), ("--data_parallel_size=2",), ("-dpl", "2"),
    ("--max-model-len=999999",), ("--max_model_len", "999999"), ("--gpu-memory-utilization", "1"),
    ("--gpu_memory_utilization=0.99",), ("--max-num-seqs", "4096"), ("--max_num_seqs=4096",),
    ("--quantization", "fp8"), ("-q", "fp8"), ("-qfp8",), ("--kv-cache-dtype=fp8",),
    ("--kv_cache_dtype", "fp8"), ("--served-model-name", "x"), ("--served_model_name=x",),
    ("--dtype", "half"), ("--dtype=float16",), ("--enable-expert-parallel",), ("-ep",),
    ("--enable_expert_parallel",), ("--no-enable-expert-parallel",), ("--model", "other/m"),
    # review: argparse takes a unique prefix (allow_abbrev, which vLLM's parser keeps)
    ("--max-model=999999",), ("--tensor-parallel", "2"), ("--gpu_memory_util=0.99",),
]  # fmt: skip


@pytest.mark.parametrize("extra", PLANNED_EXTRAS, ids=" ".join)
def test_an_extra_vllm_arg_never_overrides_what_the_plan_sets(extra):
    with pytest.raises(UsageError, match="would override the plan's own value") as refused:
        validate_options(ProjectOptions(allowed_cidrs=(CIDR,), extra_vllm_args=extra))
    assert "set it through gpuplan instead: " in refused.value.hint


@pytest.mark.parametrize(
    "extra",
    [("--enable-prefix-caching",), ("--max-num-batched-tokens", "8192"), ("--seed", "-1"),
     ("--compilation-config.level=3",), ("--enable_chunked_prefill",), ("--model-impl", "vllm")],
    ids=" ".join,
)  # fmt: skip
def test_extra_vllm_args_the_plan_does_not_set_stay_allowed(extra):
    opts = validate_options(ProjectOptions(allowed_cidrs=(CIDR,), extra_vllm_args=extra))
    assert opts.extra_vllm_args == extra


@pytest.mark.parametrize("extra", [("--api_key", "sk-1"), ("--hf_token=hf_x",)], ids=" ".join)
def test_a_secret_flag_in_vllms_underscore_spelling_is_refused_too(extra):
    with pytest.raises(UsageError, match="would write a secret"):
        validate_options(ProjectOptions(allowed_cidrs=(CIDR,), extra_vllm_args=extra))


def test_escape_hatches_reach_the_program():
    import ast

    from infra.emit import render_project

    files = render_project(
        make_plan("aws"),
        ProjectOptions(
            allowed_cidrs=(CIDR,),
            disk_gb=400,
            image="vllm/vllm-openai:v0.33.1",
            extra_vllm_args=("--enable-prefix-caching",),
        ),
    )
    tree = ast.parse(files["__main__.py"])
    [assign] = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PLAN"]
    plan = ast.literal_eval(assign.value)
    assert plan["disk_gb"] == 400 and plan["image"] == "vllm/vllm-openai:v0.33.1"
    assert plan["vllm_args"][-1] == "--enable-prefix-caching"
    assert plan["vllm_args"][0] == "meta-llama/Llama-3.1-8B-Instruct"  # positional model


def test_a_guessed_model_is_refused_unless_insisted():
    from infra.emit import render_project

    plan = replace(make_plan("aws"), model_is_guess=True)
    with pytest.raises(UsageError, match="guessed"):
        render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,)))
    files = render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,), allow_guessed_model=True))
    assert "was guessed from its name" in files["README.md"]


def test_warnings_say_what_a_target_does_not_enforce():
    from infra.targets import warnings

    opts = ProjectOptions(allowed_cidrs=(CIDR,))
    assert any("not enforced" in w for w in warnings(make_plan("vast"), opts))
    assert any("plain HTTP" in w for w in warnings(make_plan("vast"), opts))
    assert not any("not enforced" in w for w in warnings(make_plan("aws"), opts))
    assert not any("plain HTTP" in w for w in warnings(make_plan("runpod"), opts))
    for provider in ("runpod", "vast", "hetzner", "aws"):  # all run the authenticating proxy
        assert not any("/invocations" in w for w in warnings(make_plan(provider), opts))


def test_private_allowed_ranges_alone_are_warned_about():
    """A private --allow-cidr in front of a public endpoint lets no one in over the internet
    (clients arrive from their public NAT address): `pulumi up` succeeds and no request does."""
    from infra.targets import warnings

    def said(provider: str, *cidrs: str) -> bool:
        opts = ProjectOptions(allowed_cidrs=cidrs)
        return any("private ranges only" in w for w in warnings(make_plan(provider), opts))

    assert said("gcp", "10.0.0.0/8") and said("aws", "172.31.0.0/16", "192.168.1.0/24")
    assert said("aws", "fd00::/8") and said("gcp", "100.64.0.0/16")
    assert not said("aws", "10.0.0.0/7")  # reaches beyond the private range
    assert not said("aws", CIDR) and not said("gcp", "10.0.0.0/8", CIDR)
    assert not said("vast", "10.0.0.0/8")  # no firewall there: the other warning says so


def test_infra_packages_are_listed_for_the_wheel():
    """pyproject lists packages by hand: a missing one (infra.targets) breaks installs."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "infra").rglob("__init__.py")
    }
    assert found <= listed


def test_the_planner_plans_multi_node_only_where_a_target_can_write_it():
    """decide/ cannot import infra/, so it keeps its own list of clouds with private networking
    between machines; it must be exactly the targets that declare multi-node."""
    from infra.targets import targets
    from planner.decide.fit import MULTI_NODE_PROVIDERS

    able = {name for name, t in targets().items() if t.capabilities.multi_node}
    assert able == set(MULTI_NODE_PROVIDERS)


def test_a_model_needing_remote_code_is_refused_unless_allowed():
    """Kimi K2 starts only with vLLM's --trust-remote-code (its tokenizer is the repository's
    code): a project that runs a repository's code on the server is written only when the
    user says so, and then carries the flag."""
    from infra.emit import render_project

    plan = make_plan("aws")
    plan = replace(plan, vllm_args=(*plan.vllm_args, "--trust-remote-code"))
    with pytest.raises(UsageError, match="--trust-remote-code") as refused:
        render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,)))
    assert "--allow-remote-code" in refused.value.hint
    assert "--from-hub --revision COMMIT" in refused.value.hint  # the latest code otherwise
    files = render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,), allow_remote_code=True))
    assert "'--trust-remote-code'" in files["__main__.py"]
    assert "vLLM runs with `--trust-remote-code`" in files["README.md"]
    assert "the repository's latest revision at each start" in files["README.md"]
    # the flag given by hand (--extra-vllm-arg) is the user's consent, and the README says so
    plain = make_plan("aws")
    opts = ProjectOptions(allowed_cidrs=(CIDR,), extra_vllm_args=("--trust-remote-code",))
    assert "vLLM runs with `--trust-remote-code`" in render_project(plain, opts)["README.md"]
    assert (
        "--trust-remote-code"
        not in render_project(plain, ProjectOptions(allowed_cidrs=(CIDR,)))["README.md"]
    )
    # pinned to a commit: the hint has nothing to add, and the README names the commit
    commit = "0123456789abcdef0123456789abcdef01234567"
    pinned = replace(plan, vllm_args=(*plan.vllm_args, "--revision", commit))
    with pytest.raises(UsageError) as refused:
        render_project(pinned, ProjectOptions(allowed_cidrs=(CIDR,)))
    assert "--revision" not in refused.value.hint
    files = render_project(pinned, ProjectOptions(allowed_cidrs=(CIDR,), allow_remote_code=True))
    assert f"it is the code of commit `{commit}`" in files["README.md"]


def test_an_ssh_key_a_project_does_not_install_is_named():
    """Review: Hetzner servers get the keys stored in Robot (gpuplan:robotKeyFingerprints) and
    RunPod/Vast containers no SSH at all, so a --ssh-key given there was silently dropped."""
    from infra.targets import warnings

    opts = ProjectOptions(allowed_cidrs=(CIDR,), ssh_public_key="ssh-ed25519 AAAA test")
    said = {p: [w for w in warnings(make_plan(p), opts) if "--ssh-key" in w]
            for p in ("aws", "gcp", "hetzner", "runpod", "vast")}  # fmt: skip
    assert said["aws"] == [] and said["gcp"] == []  # installed there
    assert "robotKeyFingerprints" in said["hetzner"][0]
    assert said["runpod"] and said["vast"]
    without = ProjectOptions(allowed_cidrs=(CIDR,))
    assert not any("--ssh-key" in w for w in warnings(make_plan("hetzner"), without))
