"""gpuplan.toml, init, check, and deploy/status/destroy through a fake engine against a local
HTTP server that behaves like a starting vLLM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from planner.errors import UsageError
from planner.settings import load_config
from tests.fakevllm import FakeVllm

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
KEY = "sk-fake-api-key-never-printed-0123"
CIDR = "203.0.113.0/24"


# ------------------------------------------------------------------ gpuplan.toml
def write_toml(path: Path, **overrides: str) -> Path:
    sections = {
        "model": {"model": '"llama-3.1-8b"'},
        "workload": {"context": "4096", "concurrency": "2"},
        "constraints": {"providers": '["aws"]'},
        "deploy": {
            "out": '"infra/llm"',
            "stack": '"prod"',
            "allow_cidrs": f'["{CIDR}"]',
            "wait_healthy": "5",
        },
    }
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        sections.setdefault(section, {})[key] = value
    text = "".join(
        f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) + "\n"
        for s, kv in sections.items()
    )
    path.write_text(text)
    return path


def test_config_precedence_flag_env_toml_default(tmp_path, monkeypatch):
    toml = write_toml(tmp_path / "gpuplan.toml")
    cfg = load_config(toml)
    assert (cfg.context, cfg.concurrency, cfg.output_tokens, cfg.stack) == (4096, 2, 250, "prod")
    monkeypatch.setenv("GPUPLAN_CONTEXT", "8192")
    monkeypatch.setenv("GPUPLAN_PROVIDERS", "aws,gcp")
    cfg = load_config(toml)
    assert cfg.context == 8192 and cfg.providers == ("aws", "gcp")
    assert load_config(toml, {"context": 16384}).context == 16384
    assert load_config(tmp_path / "none.toml").context == 8192


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"workload__context": '"big"'}, "'workload.context' must be int"),
        ({"workload__contxt": "1"}, "unknown key 'workload.contxt'"),
        ({"constraints__objective": '"cheap"'}, "allowed: cost-per-token, cost, speed, latency"),
        ({"workload__kv_cache_dtype": '"int4"'}, "allowed: auto, fp8"),
        ({"deploy__allow_cidrs": '"203.0.113.0/24"'}, "'deploy.allow_cidrs' must be list"),
    ],
)
def test_config_errors_name_the_key(tmp_path, override, needle):
    toml = write_toml(tmp_path / "gpuplan.toml", **override)
    with pytest.raises(UsageError) as err:
        load_config(toml)
    assert needle in err.value.message + " " + (err.value.hint or "")


def test_bad_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUPLAN_CONCURRENCY", "many")
    with pytest.raises(UsageError, match="GPUPLAN_CONCURRENCY"):
        load_config(write_toml(tmp_path / "gpuplan.toml"))


# ------------------------------------------------------------------ init and check
def test_init_writes_config_and_a_valid_workflow(cli, tmp_path):
    r = cli(
        "init",
        "--dir",
        str(tmp_path),
        "--model",
        "llama-3.1-70b",
        "--allow-cidr",
        CIDR,
        "--providers",
        "aws",
    )
    assert r.exit_code == 0, r.output
    cfg = load_config(tmp_path / "gpuplan.toml")
    assert cfg.model == "llama-3.1-70b" and cfg.allow_cidrs == (CIDR,) and cfg.providers == ("aws",)
    flow = yaml.safe_load((tmp_path / ".github/workflows/gpuplan.yml").read_text())
    on = flow.get("on", flow.get(True))
    assert "pull_request" in on and on["push"]["branches"] == ["main"]
    check_steps = flow["jobs"]["check"]["steps"]
    runs = [s.get("run", "") for s in check_steps]
    assert any(r.startswith("gpuplan check") for r in runs)
    preview = [s for s in check_steps if s.get("with", {}).get("command") == "preview"]
    assert preview and preview[0]["uses"].startswith("pulumi/actions@")
    assert preview[0]["with"]["work-dir"] == "infra/gpuplan"
    deploy_steps = flow["jobs"]["deploy"]["steps"]
    assert any("gpuplan deploy --yes" in s.get("run", "") for s in deploy_steps)
    assert any(s.get("uses", "").startswith("pulumi/actions@") for s in deploy_steps)
    deploy_env = flow["jobs"]["deploy"]["env"]
    assert deploy_env["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    assert not any("secrets." in str(v) for v in flow["env"].values())
    again = cli("init", "--dir", str(tmp_path))
    assert again.exit_code == 2 and "--force" in again.output


def test_check_passes_then_reports_drift(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path / "gpuplan.toml")
    r = cli("generate")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "infra/llm/Pulumi.yaml").exists()
    ok = cli("check")
    assert ok.exit_code == 0 and ok.output.startswith("ok:")
    # the user's own `pulumi config set` values are not drift
    stack_file = tmp_path / "infra/llm/Pulumi.prod.yaml"
    stack_file.write_text("config:\n  gcp:project: mine\n  aws:region: eu-west-1\n")
    assert cli("check").exit_code == 0
    assert cli("generate").exit_code == 0 and "eu-west-1" in stack_file.read_text()
    write_toml(tmp_path / "gpuplan.toml", workload__context="8192")
    drift = cli("check")
    assert drift.exit_code == 6 and "plan differs: context" in drift.output
    write_toml(tmp_path / "gpuplan.toml")
    main = tmp_path / "infra/llm/__main__.py"
    main.write_text(main.read_text().replace("'port': 8000", "'port': 9000"))
    edited = cli("check", "--prices")
    assert edited.exit_code == 6 and "changed: infra/llm/__main__.py" in edited.output
    assert "-    'port': 9000," in edited.output and "prices:" in edited.output


def test_check_without_project_is_a_usage_error(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path / "gpuplan.toml")
    r = cli("check")
    assert r.exit_code == 2 and "gpuplan generate" in r.output


# ------------------------------------------------------------------ deploy
@pytest.fixture
def project(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path / "gpuplan.toml")
    assert cli("generate").exit_code == 0
    monkeypatch.setenv("GPUPLAN_ENGINE", "tests.fakeengine:make")
    monkeypatch.setenv("GPUPLAN_HEALTH_INTERVAL_S", "0.05")
    monkeypatch.setenv("FAKE_MODEL", MODEL)
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "calls.jsonl"))
    return tmp_path


def calls(root: Path) -> list[str]:
    return [json.loads(line)["call"] for line in (root / "calls.jsonl").read_text().splitlines()]


def test_deploy_waits_through_refused_and_503_until_healthy(cli, project, monkeypatch):
    with FakeVllm(MODEL, KEY, start_after_s=0.3, loading_polls=3) as vllm:
        monkeypatch.setenv("FAKE_ENDPOINT", vllm.endpoint)
        r = cli("deploy", "--yes", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["schema"] == "gpuplan.deploy/1" and out["healthy"] is True
    assert out["endpoint"] == vllm.endpoint and out["outputs"]["apiKey"] == "[secret]"
    assert [s for p, s in vllm.requests if p == "/health"][:4] == [503, 503, 503, 200]
    assert ("/v1/models", 200) in vllm.requests
    assert KEY not in r.output
    assert calls(project) == ["open", "up"]


def test_deploy_never_healthy_times_out_and_can_destroy(cli, project, monkeypatch):
    with FakeVllm(MODEL, KEY, never_healthy=True) as vllm:
        monkeypatch.setenv("FAKE_ENDPOINT", vllm.endpoint)
        r = cli(
            "deploy", "--yes", "--wait-healthy", "1", "--destroy-on-failure", "--format", "json"
        )
    assert r.exit_code == 5
    assert "not healthy after 1 s" in r.output and "destroyed" in r.output
    assert json.loads(r.stdout)["destroyed"] is True
    assert calls(project) == ["open", "up", "destroy"]
    assert KEY not in r.output


def test_deploy_detects_the_wrong_model(cli, project, monkeypatch):
    with FakeVllm(MODEL, KEY, served_model="someone/else") as vllm:
        monkeypatch.setenv("FAKE_ENDPOINT", vllm.endpoint)
        r = cli("deploy", "--yes")
    assert r.exit_code == 5 and "serves someone/else, not " + MODEL in r.output
    assert KEY not in r.output


def test_deploy_refuses_without_yes_when_not_interactive(cli, project):
    r = cli("deploy")
    assert r.exit_code == 2 and "--yes" in r.output
    assert calls(project) == ["open"]


def test_deploy_without_pulumi_cli_says_how_to_install(cli, project, monkeypatch, tmp_path):
    monkeypatch.delenv("GPUPLAN_ENGINE")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    r = cli("deploy", "--yes")
    assert r.exit_code == 5 and "Pulumi CLI is not installed" in r.output
    assert "get.pulumi.com" in r.output


def test_status_and_destroy(cli, project, monkeypatch):
    with FakeVllm(MODEL, KEY) as vllm:
        monkeypatch.setenv("FAKE_ENDPOINT", vllm.endpoint)
        r = cli("status", "--format", "json")
    out = json.loads(r.stdout)
    assert out["healthy"] is True and out["estimated_cost_usd"] == pytest.approx(3.0, abs=0.05)
    assert KEY not in r.output
    assert cli("destroy").exit_code == 2
    r = cli("destroy", "--yes")
    assert r.exit_code == 0 and "destroyed stack prod" in r.output
    assert calls(project)[-1] == "destroy"


def test_sigint_during_deploy_exits_130_and_writes_nothing(project, monkeypatch):
    before = {
        p: p.read_bytes() for p in project.rglob("*") if p.is_file() and p.name != "calls.jsonl"
    }
    env = {
        **os.environ,
        "FAKE_UP_SLEEP_S": "30",
        "FAKE_ENDPOINT": "http://127.0.0.1:9/v1",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner.cli", "deploy", "--yes"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "up" not in (
            calls(project) if (project / "calls.jsonl").exists() else []
        ):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    after = {
        p: p.read_bytes() for p in project.rglob("*") if p.is_file() and p.name != "calls.jsonl"
    }
    assert after == before


def test_explicit_missing_toml_is_a_usage_error(cli, tmp_path):
    r = cli("check", "--toml", str(tmp_path / "nope.toml"))
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output


def test_price_improvement_handles_every_objective_sign():
    from infra.check import improvement

    assert improvement(2.0, 1.5) == pytest.approx(0.25)  # $/M tokens: lower is better
    assert improvement(-1000.0, -1500.0) == pytest.approx(0.5)  # speed: more negative is better
    assert improvement(2.0, 2.2) < 0
    assert improvement(0.0, 1.0) == 0.0


# ------------------------------------------------------------------ engine errors
def test_pulumis_own_error_line_is_passed_through():
    from pulumi.automation._cmd import CommandResult
    from pulumi.automation.errors import CommandError

    from infra.deploy import _first_line

    err = CommandError(
        CommandResult(
            stdout="Logging in using access token from PULUMI_ACCESS_TOKEN\n",
            stderr="error: PULUMI_ACCESS_TOKEN must be set for login during non-interactive "
            "CLI sessions\n",
            code=255,
        )
    )
    assert _first_line(err).startswith("error: PULUMI_ACCESS_TOKEN must be set")
    assert _first_line(RuntimeError("boom\nmore")) == "boom"


def test_deploy_without_the_pulumi_package_says_which_extra(monkeypatch, tmp_path):
    import shutil
    import sys

    from infra.deploy import PulumiEngine
    from planner.errors import DeployError

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/local/bin/pulumi")
    import pulumi

    monkeypatch.setitem(sys.modules, "pulumi.automation", None)
    monkeypatch.delattr(pulumi, "automation", raising=False)
    with pytest.raises(DeployError, match="pulumi Python package") as err:
        PulumiEngine(tmp_path, "dev")
    assert "gpuplan[deploy]" in (err.value.hint or "")


def test_the_deploy_extra_pins_the_generated_projects_pulumi():
    import tomllib

    from infra.versions import BASE_REQUIREMENTS

    meta = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert meta["project"]["optional-dependencies"]["deploy"] == [
        f"pulumi=={BASE_REQUIREMENTS['pulumi']}"
    ]
