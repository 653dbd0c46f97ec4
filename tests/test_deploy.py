"""gpuplan.toml, init, check, and deploy/status/destroy through a fake engine against a local
HTTP server that behaves like a starting vLLM."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from planner.errors import DeployError, UsageError
from planner.settings import load_settings
from tests.fakes.vllm import FakeVllm

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


def test_settings_precedence_flag_env_toml_default(tmp_path, monkeypatch):
    toml = write_toml(tmp_path / "gpuplan.toml")
    s = load_settings(toml=toml)
    assert (s.context, s.concurrency, s.output_tokens, s.stack) == (4096, 2, 250, "prod")
    assert s.sources["context"] == str(toml) and "output_tokens" not in s.sources
    monkeypatch.setenv("GPUPLAN_CONTEXT", "8192")
    monkeypatch.setenv("GPUPLAN_PROVIDERS", "aws,gcp")
    s = load_settings(toml=toml)
    assert s.context == 8192 and s.providers == ("aws", "gcp")
    assert load_settings({"context": 16384}, toml=toml).context == 16384
    monkeypatch.chdir(tmp_path / "..")
    monkeypatch.delenv("GPUPLAN_CONTEXT")
    assert load_settings().context == 8192  # no ./gpuplan.toml here: the default


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"workload__context": '"big"'}, "'workload.context' must be int"),
        ({"workload__contxt": "1"}, "unknown key 'workload.contxt'"),
        (
            {"constraints__objective": '"cheap"'},
            "allowed: auto, cost-per-token, cost, speed, latency",
        ),
        ({"workload__kv_cache_dtype": '"int4"'}, "allowed: auto, fp8"),
        ({"deploy__allow_cidrs": '"203.0.113.0/24"'}, "'deploy.allow_cidrs' must be list"),
    ],
)
def test_config_errors_name_the_key(tmp_path, override, needle):
    toml = write_toml(tmp_path / "gpuplan.toml", **override)
    with pytest.raises(UsageError) as err:
        load_settings(toml=toml)
    assert needle in err.value.message + " " + (err.value.hint or "")


def test_bad_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUPLAN_CONCURRENCY", "many")
    with pytest.raises(UsageError, match="GPUPLAN_CONCURRENCY"):
        load_settings(toml=write_toml(tmp_path / "gpuplan.toml"))


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
    cfg = load_settings(toml=tmp_path / "gpuplan.toml")
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
    [deploying] = [s for s in deploy_steps if s.get("name") == "gpuplan deploy"]
    assert deploying["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    assert not any("secrets." in str(v) for v in flow["env"].values())
    again = cli("init", "--dir", str(tmp_path))
    assert again.exit_code == 2 and "--force" in again.output


def test_init_without_allow_cidr_leaves_it_for_the_user_to_set(cli, tmp_path, monkeypatch):
    """Sweep: init without --allow-cidr wrote an active `allow_cidrs = ["203.0.113.7/32"]`, a
    documentation address routed nowhere, which slipped past generate's refusal of a project
    without one: an endpoint no one could reach. The line is a comment now, and generate
    refuses until the user sets it."""
    r = cli("init", "--dir", str(tmp_path), "--model", "llama-3.1-8b", "--providers", "aws")
    assert r.exit_code == 0 and "set allow_cidrs" in r.output, r.output
    text = (tmp_path / "gpuplan.toml").read_text()
    assert "\n# allow_cidrs = " in text and "\nallow_cidrs" not in text
    assert load_settings(toml=tmp_path / "gpuplan.toml", env={}).allow_cidrs == ()
    monkeypatch.chdir(tmp_path)
    g = cli("generate")
    assert g.exit_code == 2 and "no --allow-cidr given" in g.output, g.output
    assert not (tmp_path / "infra").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--providers", ""], "--providers has no item"),
        (["--providers", " , "], "--providers has no item"),
        (["--out", ""], "--out is empty"),
        (["--model", " "], "--model is empty"),
        (["--stack", "my stack"], "stack name 'my stack' is not valid"),
        (["--allow-cidr", "office"], "--allow-cidr 'office' is not a CIDR"),
        (["--allow-cidr", "203.0.113.7/24"], "--allow-cidr '203.0.113.7/24' has host bits set"),
    ],
)
def test_init_refuses_what_every_later_command_would(cli, tmp_path, args, needle):
    """A value that would make the written gpuplan.toml fail every command is refused before
    anything is written."""
    r = cli("init", "--dir", str(tmp_path), "--model", "llama-3.1-8b", *args)
    assert r.exit_code == 2 and f"error: {needle}" in r.output, r.output
    assert list(tmp_path.iterdir()) == []


def test_check_passes_then_reports_drift(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path / "gpuplan.toml")
    r = cli("generate")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "infra/llm/Pulumi.yaml").exists()
    ok = cli("check")
    assert ok.exit_code == 0 and ok.stdout.startswith("ok:"), ok.output
    assert ok.stderr.startswith("reading gpuplan.toml (model, context")
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
    monkeypatch.setenv("GPUPLAN_ENGINE", "tests.fakes.engine:make")
    monkeypatch.setenv("GPUPLAN_HEALTH_INTERVAL_S", "0.05")
    monkeypatch.setenv("FAKE_MODEL", MODEL)
    monkeypatch.setenv("FAKE_API_KEY", KEY)
    monkeypatch.setenv("FAKE_RECORD", str(tmp_path / "calls.jsonl"))
    return tmp_path


@pytest.mark.parametrize(
    ("spec", "needle"),
    [("os:getcwd", "is not an engine factory"), ("no_such_module:make", "cannot be loaded")],
)
def test_a_wrong_engine_hook_is_one_line(cli, project, monkeypatch, spec, needle):
    monkeypatch.setenv("GPUPLAN_ENGINE", spec)
    r = cli("status")
    assert r.exit_code == 2 and f"error: GPUPLAN_ENGINE={spec} {needle}" in r.output, r.output
    assert "unexpected" not in r.output and "hint: give module:factory" in r.output


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


def test_deploy_of_a_project_edited_by_hand_warns_and_runs_it(cli, project, monkeypatch):
    """Review: CI runs `gpuplan check` before deploy, but a deploy run by hand ran edited files
    without a word. It says so (one line, on stderr) and deploys the files as they are."""
    with FakeVllm(MODEL, KEY) as vllm:
        monkeypatch.setenv("FAKE_ENDPOINT", vllm.endpoint)
        clean = cli("deploy", "--yes", "--format", "json")
        assert clean.exit_code == 0 and "differs from what gpuplan writes" not in clean.output
        main = project / "infra/llm/__main__.py"
        main.write_text(main.read_text().replace("'port': 8000", "'port': 9000"))
        r = cli("deploy", "--yes", "--format", "json")
    assert r.exit_code == 0, r.output
    assert "warning: infra/llm differs from what gpuplan writes for its plan (__main__.py)" in (
        r.stderr
    ), r.stderr
    assert json.loads(r.stdout)["healthy"] is True
    # a CI step that reads the preview's JSON sees it too
    shown = cli("deploy", "--preview", "--format", "json")
    assert shown.exit_code == 0, shown.output
    warnings = json.loads(shown.stdout)["warnings"]
    assert any("differs from what gpuplan writes" in w for w in warnings), warnings
    assert shown.stderr.count("differs from what gpuplan writes") == 1  # said once


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


def test_deploy_with_wait_healthy_0_does_not_poll_an_endpoint_it_may_not_reach(
    cli, project, monkeypatch
):
    """A GitHub-hosted runner is outside the networks the endpoint is open to: the CI
    workflow deploys with --wait-healthy 0, which never polls and is not a failure."""
    with FakeVllm(MODEL, KEY, never_healthy=True) as vllm:
        monkeypatch.setenv("FAKE_ENDPOINT", vllm.endpoint)
        r = cli(
            "deploy", "--yes", "--wait-healthy", "0", "--destroy-on-failure", "--format", "json"
        )
        text = cli("deploy", "--yes", "--wait-healthy", "0")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["healthy"] is None and out["destroyed"] is False and "not checked" in out["detail"]
    assert not vllm.requests  # never polled
    assert calls(project) == ["open", "up", "open", "up"]  # and never destroyed
    assert text.exit_code == 0 and "(not checked: `gpuplan status`" in text.stdout
    assert "--destroy-on-failure does nothing" in r.stderr
    # a stack that exports no usable endpoint (Hetzner's test mode) is still reported
    monkeypatch.setenv("FAKE_ENDPOINT", "")
    empty = cli("deploy", "--yes", "--wait-healthy", "0")
    assert empty.exit_code == 5 and "no usable endpoint" in empty.output
    # ...but Hetzner's Robot test mode (the default) ordered nothing on purpose: the deploy
    # says so and succeeds, instead of sending CI to a boot log on a machine that is not there
    note = "Robot test mode: nothing was ordered. Set gpuplan:robotTestMode false to order"
    monkeypatch.setenv("FAKE_OUTPUTS", json.dumps({"robotTestMode": True, "note": note}))
    for wait in ("0", "600"):
        dry = cli("deploy", "--yes", "--wait-healthy", wait, "--format", "json")
        assert dry.exit_code == 0 and note in dry.stderr, dry.output
        assert json.loads(dry.stdout)["healthy"] is None and "boot.log" not in dry.output
    text = cli("deploy", "--yes")
    assert text.exit_code == 0 and "nothing to serve: Robot test mode" in text.stdout


def test_deploy_detects_the_wrong_model(cli, project, monkeypatch):
    with FakeVllm(MODEL, KEY, served_model="someone/else") as vllm:
        monkeypatch.setenv("FAKE_ENDPOINT", vllm.endpoint)
        r = cli("deploy", "--yes")
    assert r.exit_code == 5 and "serves someone/else, not " + MODEL in r.output
    assert KEY not in r.output


def test_wait_healthy_reports_a_refused_api_key_at_once():
    """A server that is up but answers 401 to the key is not healthy, and waiting longer
    cannot fix a wrong key: the wait ends at the first 401, saying so."""
    from infra.deploy import wait_healthy

    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # a fake clock: the test never waits
        sleeps.append(seconds)
        now[0] += seconds

    with FakeVllm(MODEL, KEY, loading_polls=2) as vllm:
        health = wait_healthy(
            vllm.endpoint, "sk-wrong-key", MODEL, timeout_s=600, interval_s=5,
            clock=lambda: now[0], sleep=sleep,
        )  # fmt: skip
    assert health.healthy is False
    assert "401" in health.detail and "key" in health.detail.lower()
    assert "sk-wrong-key" not in health.detail
    assert vllm.requests == [
        ("/health", 503),
        ("/health", 503),
        ("/health", 200),
        ("/v1/models", 401),
    ]
    assert sleeps == [5, 5]  # only while loading; none after the 401


def test_wait_healthy_never_sends_the_api_key_where_a_redirect_points():
    """urllib follows a redirect with every header the request was given, Authorization
    included, to any host: a /v1/models that redirects (a hijacked name, a misconfigured
    balancer) would receive the API key. The keyed request follows no redirect."""
    from infra.deploy import wait_healthy
    from tests.fakes.server import LoopbackServer, QuietHandler

    seen: list[str | None] = []

    class Elsewhere(QuietHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    other = LoopbackServer(Elsewhere)
    with other, FakeVllm(MODEL, KEY, models_redirect=f"{other.url}/v1/models") as vllm:
        health = wait_healthy(vllm.endpoint, KEY, MODEL, timeout_s=2, interval_s=0.05)
    assert seen == []  # never followed, so the key went nowhere else
    assert health.healthy is False and "302" in health.detail and "redirect" in health.detail
    assert KEY not in health.detail
    assert vllm.requests == [("/health", 200), ("/v1/models", 302)]  # at once, no waiting


def test_wait_healthy_asks_a_guarded_health_route_with_the_key():
    """vLLM's --api-key leaves /health open (its AuthenticationMiddleware checks only paths
    starting with /v1), and so does gpuplan's proxy; a gateway that guards every path answers
    401 there. That is not "still loading": /health is asked again with the key, and a key
    refused there too ends the wait at once instead of after wait_healthy seconds."""
    from infra.deploy import wait_healthy

    with FakeVllm(MODEL, KEY, health_needs_key=True) as vllm:
        ok = wait_healthy(vllm.endpoint, KEY, MODEL, timeout_s=2, interval_s=0.05)
    assert ok.healthy is True, ok.detail
    assert vllm.requests == [("/health", 401), ("/health", 200), ("/v1/models", 200)]
    with FakeVllm(MODEL, KEY, health_needs_key=True) as vllm:
        refused = wait_healthy(vllm.endpoint, "sk-wrong-key", MODEL, timeout_s=2, interval_s=0.05)
    assert refused.healthy is False and "401" in refused.detail and "key" in refused.detail
    assert vllm.requests == [("/health", 401), ("/health", 401)]


def test_deploy_with_a_refused_api_key_fails_and_says_why(cli, project, monkeypatch):
    with FakeVllm(MODEL, "sk-the-server-has-another-key-0123") as vllm:
        monkeypatch.setenv("FAKE_ENDPOINT", vllm.endpoint)
        r = cli("deploy", "--yes", "--format", "json")
    assert r.exit_code == 5
    out = json.loads(r.stdout)
    assert out["healthy"] is False and "401" in out["detail"]
    assert "API key" in r.stderr
    assert KEY not in r.output and "sk-the-server-has-another-key-0123" not in r.output
    assert ("/v1/models", 401) in vllm.requests


def test_deploy_preview_gives_the_changes_as_values_and_warns_of_a_replacement(
    cli, project, monkeypatch
):
    """`deploy --preview --format json` is what a CI step reads to stop before a replacement:
    the changes are an object (op -> count), not the repr of a Python dict inside a string,
    and a replacement (a new machine: new address, the weights downloaded again) is said."""
    r = cli("deploy", "--preview", "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["changes"] == {"create": 3} and doc["summary"] == "3 create"
    assert "warning" not in r.stderr
    monkeypatch.setenv("FAKE_PREVIEW", json.dumps({"same": 5, "replace": 1}))
    text = cli("deploy", "--preview")
    assert text.exit_code == 0, text.output
    assert text.stdout.strip() == "preview of prod: 1 replace, 5 same"
    assert "warning: 1 resource would be replaced" in text.stderr
    assert calls(project) == ["open", "preview", "open", "preview"]


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


def test_status_and_destroy_never_create_the_stack_they_name(cli, project, monkeypatch):
    """Review: `destroy --stack typo --yes` created an empty stack `typo`, destroyed it and
    said "destroyed stack typo" (exit 0) while the real one kept running; `status` created it
    too. They only select a stack now; deploy still creates it on the first run."""
    monkeypatch.setenv("FAKE_STACKS", "prod")
    for args in (("destroy", "--stack", "typo", "--yes"), ("status", "--stack", "typo")):
        r = cli(*args)
        assert r.exit_code == 5 and "error: no stack 'typo'" in r.output, r.output
        assert "destroyed" not in r.output and "unexpected" not in r.output
    assert "destroy" not in calls(project)
    assert cli("destroy", "--yes").exit_code == 0 and calls(project)[-1] == "destroy"
    assert cli("deploy", "--preview", "--stack", "new").exit_code == 0  # may be the first
    opened = [json.loads(line) for line in (project / "calls.jsonl").read_text().splitlines()]
    creates = [c["create"] for c in opened if c["call"] == "open"]
    assert creates == [False, False, False, True]  # destroy, status, destroy: select; deploy


def test_pulumi_engine_selects_without_creating_for_status_and_destroy(tmp_path, monkeypatch):
    """The Automation API side: select_stack, whose StackNotFoundError is one line (exit 5)."""
    from pulumi import automation as auto
    from pulumi.automation._cmd import CommandResult

    from infra import deploy

    opened: list[str] = []

    def missing(**kw):
        opened.append("select")
        raise auto.StackNotFoundError(CommandResult("", "error: no stack named 'typo' found", 255))

    monkeypatch.setattr(deploy.shutil, "which", lambda _: "/usr/bin/pulumi")
    monkeypatch.setattr(auto, "select_stack", missing)
    monkeypatch.setattr(auto, "create_or_select_stack", lambda **kw: opened.append("create"))
    with pytest.raises(DeployError, match="no stack 'typo' in this project") as refused:
        deploy.PulumiEngine(tmp_path, "typo", create=False)
    assert "pulumi stack ls" in (refused.value.hint or "")
    deploy.PulumiEngine(tmp_path, "typo")
    assert opened == ["select", "create"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_during_deploy_exits_130_and_writes_nothing(project, monkeypatch, sig):
    """SIGINT (Ctrl-C) or SIGTERM (a CI job cancelled: GitLab, a container stopped, GitHub's
    runner after 7.5 s) while Pulumi's `up` runs: exit 130, a one-line message, no file touched.

    The fake engine writes to a pipe once it is inside `up`; the signal goes only after that
    line arrived, so the test does not depend on how fast the child starts."""
    before = {
        p: p.read_bytes() for p in project.rglob("*") if p.is_file() and p.name != "calls.jsonl"
    }
    inside_up, signal_fd = os.pipe()
    env = {
        **os.environ,
        "FAKE_UP_SLEEP_S": "120",  # `up` never returns by itself while the test runs
        "FAKE_UP_FD": str(signal_fd),
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
        pass_fds=(signal_fd,),
        # As from a terminal: SIGINT at its default, which Python turns into KeyboardInterrupt.
        # A test run started in the background of a non-interactive shell has SIGINT ignored,
        # and a child inherits that: the signal would never arrive.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(signal_fd)  # the child holds the only write end: EOF if it dies before `up`
    try:
        with os.fdopen(inside_up, "rb") as events:
            # Waits until the engine is inside `up` (or EOF); the bound is only a safety net.
            ready, _, _ = select.select([events], [], [], 300)
            line = events.readline() if ready else b""
        if line != b"inside up\n":
            proc.kill()
            _, err = proc.communicate(timeout=60)
            pytest.fail(f"the deploy never reached `up`: {err[-2000:]}")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert calls(project) == ["open", "up"]
    after = {
        p: p.read_bytes() for p in project.rglob("*") if p.is_file() and p.name != "calls.jsonl"
    }
    assert after == before


def test_explicit_missing_toml_is_a_usage_error(cli, tmp_path):
    r = cli("check", "--toml", str(tmp_path / "nope.toml"))
    assert r.exit_code == 2 and "does not exist" in r.output and "Traceback" not in r.output


def test_price_improvement_handles_every_objective_sign():
    from planner.decide.objective import improvement

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


@pytest.mark.parametrize(
    "stderr",
    [
        "error: [409] Conflict: Another update is currently in progress.",  # Pulumi Cloud
        "error: the stack is currently locked by 1 lock(s). Either wait for the other "
        "process(es) to end or delete the lock file with `pulumi cancel`.",  # self-managed
    ],
)
def test_a_stack_locked_by_another_run_says_wait_then_cancel(stderr):
    """Two CI runs on one stack: Pulumi refuses the second (the Automation API raises
    ConcurrentUpdateError). The user is told it is a lock, to wait, and when `pulumi cancel`
    is safe, not only that "pulumi failed"."""
    from pulumi.automation._cmd import CommandResult
    from pulumi.automation.errors import create_command_error

    from infra.deploy import PulumiEngine
    from planner.errors import DeployError

    def locked() -> None:
        raise create_command_error(
            CommandResult(stdout="Updating (prod)\n", stderr=stderr, code=255)
        )

    with pytest.raises(DeployError) as err:
        PulumiEngine._run(locked)
    assert err.value.exit_code == 5
    assert err.value.message.startswith("the stack is locked by another update: error:")
    assert "wait for it" in (err.value.hint or "") and "pulumi cancel" in (err.value.hint or "")


def test_a_failed_up_says_what_it_left_behind():
    """`pulumi up` failing half-way keeps what it created, billed: the hint says so and how to
    remove it, not only where the log is."""
    from infra.deploy import PulumiEngine
    from planner.errors import DeployError

    class Stack:
        def up(self, **_: object) -> None:
            raise RuntimeError("error: creating EC2 Instance: InsufficientInstanceCapacity")

    engine = object.__new__(PulumiEngine)
    engine.stack = Stack()
    with pytest.raises(DeployError) as err:
        engine.up(print)
    assert err.value.message == "pulumi failed: error: creating EC2 Instance: " + (
        "InsufficientInstanceCapacity"
    )
    assert "stays in the stack (and is billed)" in (err.value.hint or "")
    assert "gpuplan destroy" in (err.value.hint or "")


def test_pulumi_preview_changes_become_plain_counts():
    from pulumi.automation import PreviewResult
    from pulumi.automation.events import OpType

    from infra.deploy import PulumiEngine

    class Stack:
        def preview(self, **_: object) -> PreviewResult:
            return PreviewResult("", "", {OpType.REPLACE: 1, "same": 5})  # type: ignore[dict-item]

    engine = object.__new__(PulumiEngine)
    engine.stack = Stack()
    changes = engine.preview(print)
    assert changes == {"replace": 1, "same": 5} and json.dumps(changes)


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


_ENGINE_UNDER_SIGTERM = r'''
import subprocess, sys, threading
from infra.deploy import PulumiEngine
from planner.cli import _sigterm_as_interrupt
from planner.errors import Terminated

CLI = r"""
import pathlib, signal, sys, time
marker = pathlib.Path(sys.argv[1])
def cancel(*_):  # as the Pulumi CLI does on its first SIGINT: cancel, save the state, exit
    print("cancelling the update", flush=True)
    time.sleep(0.3)
    marker.write_text("cancelled cleanly")
    sys.exit(1)
signal.signal(signal.SIGINT, cancel)
marker.write_text("ready")
for _ in range(200):  # bounded: ten seconds at most
    print("updating", flush=True)
    time.sleep(0.05)
"""

def call():  # as the Automation API runs the CLI: output read by a thread, then wait
    with subprocess.Popen([sys.executable, "-c", CLI, sys.argv[1]], stdout=subprocess.PIPE,
                          text=True) as cli:
        reader = threading.Thread(target=lambda: [None for _ in cli.stdout])
        reader.start()
        code = cli.wait()
        reader.join()
    raise RuntimeError(f"pulumi exited {code}")

_sigterm_as_interrupt()
try:
    PulumiEngine._run(call)
except Terminated:
    print("interrupted")
    sys.exit(130)
'''


def test_sigterm_during_a_pulumi_run_lets_the_cli_cancel_and_save(tmp_path):
    """Review: a SIGTERM (a cancelled CI job) reached gpuplan only, and the interrupt raised
    inside the Automation API closed the Pulumi CLI's pipes under it: the CLI died of SIGPIPE
    mid-update, without cancelling. The CLI is now sent the SIGINT on which it cancels and
    saves the state, and gpuplan waits for it before exiting 130."""
    marker = tmp_path / "cli"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _ENGINE_UNDER_SIGTERM, str(marker)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(600):  # until the stand-in CLI runs: 60 s at most
            if marker.exists() and marker.read_text() == "ready":
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in out and "Exception in thread" not in err, err
    assert marker.read_text() == "cancelled cleanly"


@pytest.mark.parametrize("answer", [[{"id": MODEL}], {"data": "none"}, {"data": [None, 5]}])
def test_wait_healthy_reads_an_odd_model_list_as_no_model_not_a_crash(answer):
    """A /v1/models answer that is not an OpenAI model list (a JSON list, a non-list 'data',
    entries that are not objects) ended in 'unexpected AttributeError' after a good `up`."""
    from infra.deploy import wait_healthy

    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with FakeVllm(MODEL, KEY, models_answer=answer) as vllm:
        health = wait_healthy(
            vllm.endpoint, KEY, MODEL, timeout_s=20, interval_s=5,
            clock=lambda: now[0], sleep=sleep,
        )  # fmt: skip
    assert health.healthy is False
    assert "model list" in health.detail or "no model" in health.detail, health.detail


def test_the_last_update_time_is_read_as_utc_whatever_the_local_zone(monkeypatch):
    """Review: the Automation API parses Pulumi's "...Z" start time without a zone, and
    .timestamp() read it as local time: `status` on a laptop in UTC-8 said an update of a
    minute ago was -8 hours ago (and a negative cost)."""
    import datetime
    import time as clock

    from pulumi.automation._stack import _DATETIME_FORMAT

    from infra import deploy
    from infra.deploy import utc_epoch

    monkeypatch.setenv("TZ", "America/Los_Angeles")
    clock.tzset()
    try:
        now = datetime.datetime.now(datetime.UTC).strftime(_DATETIME_FORMAT)
        parsed = datetime.datetime.strptime(now, _DATETIME_FORMAT)  # as the SDK parses it
        assert abs(utc_epoch(parsed) - clock.time()) < 60
        engine = object.__new__(deploy.PulumiEngine)  # its stack: a stand-in with a history
        seen: dict[str, object] = {}

        class Stack:
            def history(self, **kw):
                seen.update(kw)
                return [type("Summary", (), {"start_time": parsed})()]

        engine.stack = Stack()
        assert abs(engine.last_update_epoch() - clock.time()) < 60
        assert seen["show_secrets"] is False
    finally:
        monkeypatch.delenv("TZ")
        clock.tzset()


def test_a_wait_shorter_than_the_poll_interval_ends_at_its_timeout():
    """Sweep: `deploy --wait-healthy 1` slept the whole 10 s interval and then said "not
    healthy after 1 s" with "waited_s": 10.0. The sleeps stop at the timeout: one last poll
    there, and the wait reported is the one asked for."""
    from infra.deploy import wait_healthy

    now, slept = [0.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    health = wait_healthy(
        "http://127.0.0.1:9/v1", KEY, MODEL, timeout_s=1, interval_s=10,
        clock=lambda: now[0], sleep=sleep,
    )  # fmt: skip
    assert health.healthy is False and "not healthy after 1 s" in health.detail
    assert slept == [1.0] and health.waited_s == 1.0
