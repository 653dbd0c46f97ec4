"""A model read from the Hugging Face Hub is planned and served at one commit: the commit the
config was read at (or the one --revision names) is what vLLM downloads, with its tokenizer
and any repository code, so a later push to the repository changes nothing that runs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from planner.cli import main
from planner.errors import ModelSpecError
from planner.model.sources import load_model_spec
from tests.conftest import sample_config, sample_models
from tests.fakes.hub import COMMIT

LLAMA8 = sample_config(sample_models()[0])
REPO = "acme/llama8"
NEWER = "fedcba9876543210fedcba9876543210fedcba98"
CIDR = "203.0.113.0/24"
DEPLOY = f'[deploy]\nallow_cidrs = ["{CIDR}"]\n'


@pytest.fixture
def two_commits(hub):
    """acme/llama8 at COMMIT (32 layers), then at NEWER (8 layers), which `main` names."""
    hub.add(REPO, {"config.json": LLAMA8}, commit=COMMIT)
    hub.add(REPO, {"config.json": dict(LLAMA8, num_hidden_layers=8)}, commit=NEWER)
    return hub


def test_the_spec_records_the_commit_read_and_a_revision_reads_that_commit(two_commits):
    latest = load_model_spec(REPO)
    assert (latest.revision, latest.num_layers) == (NEWER, 8)
    assert load_model_spec(REPO, revision="main").revision == NEWER
    pinned = load_model_spec(REPO, revision=COMMIT)
    assert (pinned.revision, pinned.num_layers) == (COMMIT, 32)
    with pytest.raises(ModelSpecError, match="revision 'v9' of acme/llama8 not found"):
        load_model_spec(REPO, revision="v9")


def _generate(out, *extra):
    args = ["generate", REPO, "--providers", "aws", "--allow-cidr", CIDR, "--out", str(out)]
    return CliRunner().invoke(main, [*args, *extra])


def test_generated_project_serves_the_commit_planned(two_commits, tmp_path):
    r = _generate(tmp_path / "p", "--revision", COMMIT)
    assert r.exit_code == 0, r.output
    plan = json.loads((tmp_path / "p" / "gpuplan.plan.json").read_text())
    args = plan["vllm_args"]
    assert args[args.index("--revision") + 1] == COMMIT
    assert f"at commit `{COMMIT}`" in (tmp_path / "p" / "README.md").read_text()
    r = _generate(tmp_path / "q")  # no revision: the commit `main` named when read
    assert r.exit_code == 0, r.output
    assert NEWER in (tmp_path / "q" / "gpuplan.plan.json").read_text()


def test_check_reads_the_model_at_the_plans_commit(two_commits, tmp_path):
    out = tmp_path / "p"
    assert _generate(out, "--revision", COMMIT).exit_code == 0
    # main moves on to a third shape: the plan is still checked against its own commit
    two_commits.add(REPO, {"config.json": dict(LLAMA8, num_hidden_layers=4)}, commit="9" * 40)
    toml = tmp_path / "gpuplan.toml"
    toml.write_text(f'{DEPLOY}out = "{out}"\n')
    r = CliRunner().invoke(main, ["check", "--toml", str(toml)])
    assert r.exit_code == 0 and "cannot verify" not in r.output, r.output
    # settings that name another commit are not what the project serves
    toml.write_text(f'[model]\nrevision = "{NEWER}"\n{DEPLOY}out = "{out}"\n')
    r = CliRunner().invoke(main, ["check", "--toml", str(toml)])
    assert r.exit_code == 6 and f"settings ask {NEWER}" in r.output, r.output


def test_a_registry_model_is_not_pinned_and_a_revision_for_it_is_refused(hub):
    r = CliRunner().invoke(
        main, ["recommend", "llama-3.1-8b", "--revision", COMMIT, "--providers", "aws"]
    )
    assert r.exit_code == 2 and "is a name in gpuplan's registry" in r.output, r.output
    r = CliRunner().invoke(
        main, ["recommend", "llama-3.1-8b", "--providers", "aws", "--format", "json"]
    )
    assert r.exit_code == 0, r.output
    assert "--revision" not in r.output


def test_a_branch_is_asked_of_the_hub_first_so_a_stale_cache_pins_nothing_old(two_commits):
    """Review: the cache answered first, so once main moved on, a plan still pinned the commit
    the cache had seen. A branch (or no revision) is now asked of the Hub; a commit id is the
    same in the cache, which answers it first."""
    assert load_model_spec(REPO).revision == NEWER  # cached now
    third = "9" * 40
    two_commits.add(REPO, {"config.json": dict(LLAMA8, num_hidden_layers=4)}, commit=third)
    assert load_model_spec(REPO).revision == third
    assert load_model_spec(REPO, revision="main").revision == third
    asked = len(two_commits.requests)
    assert load_model_spec(REPO, revision=NEWER).revision == NEWER  # from the cache
    assert len(two_commits.requests) == asked


def test_the_cache_answers_when_the_hub_cannot_and_the_spec_says_so(two_commits, monkeypatch):
    assert load_model_spec(REPO).revision == NEWER
    monkeypatch.setenv("GPUPLAN_HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    spec = load_model_spec(REPO)
    assert spec.revision == NEWER
    assert any("could not be reached" in n and NEWER in n for n in spec.notes), spec.notes


def test_a_revision_of_a_hub_id_the_registry_knows_reads_the_hub(hub):
    """Review: `revision` in gpuplan.toml for meta-llama/Llama-3.1-8B-Instruct (a registry
    alias too) was refused, and `check --prices`, which has no --from-hub, failed in CI."""
    hub.add("meta-llama/Llama-3.1-8B-Instruct", {"config.json": LLAMA8}, commit=COMMIT)
    spec = load_model_spec("meta-llama/Llama-3.1-8B-Instruct", revision="main")
    assert (spec.source, spec.revision) == ("hf", COMMIT)
    assert load_model_spec("meta-llama/Llama-3.1-8B-Instruct").source == "registry"


def test_a_plan_saved_before_pinning_still_verifies_unpinned(two_commits, tmp_path):
    """Review: a Hub plan written by a gpuplan that did not pin (no --revision in its vLLM
    arguments) failed `check` and `generate --plan`, since re-deriving it added the pin."""
    out = tmp_path / "p"
    assert _generate(out).exit_code == 0
    path = out / "gpuplan.plan.json"
    plan = json.loads(path.read_text())
    args = plan["vllm_args"]
    i = args.index("--revision")
    plan["vllm_args"] = args[:i] + args[i + 2 :]
    unpinned = tmp_path / "old.json"
    unpinned.write_text(json.dumps(plan))
    r = CliRunner().invoke(
        main,
        ["generate", "--plan", str(unpinned), "--allow-cidr", CIDR, "--out", str(tmp_path / "q")],
    )
    assert r.exit_code == 0, r.output
    assert "--revision" not in (tmp_path / "q" / "gpuplan.plan.json").read_text()
