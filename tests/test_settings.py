"""One settings merge for every command: flag > GPUPLAN_<KEY> > gpuplan.toml > default, each value
validated once whatever its source. Tested through the real CLI (click's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.errors import UsageError
from planner.settings import KEYS, Settings, load_settings

CIDR = "203.0.113.0/24"


def toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def need_of(r) -> dict:
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["need"]


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A folder with a gpuplan.toml, as the working directory."""
    monkeypatch.chdir(tmp_path)
    toml(
        tmp_path / "gpuplan.toml",
        '[model]\nmodel = "llama-3.1-8b"\n'
        "[workload]\ncontext = 2048\nconcurrency = 3\n"
        '[constraints]\nproviders = ["gcp"]\n'
        f'[deploy]\nout = "infra/llm"\nallow_cidrs = ["{CIDR}"]\n',
    )
    return tmp_path


# ------------------------------------------------------------------ recommend
def test_recommend_env_beats_default(cli, monkeypatch):
    """The reported bug: GPUPLAN_CONTEXT=4096 still planned at 8192."""
    monkeypatch.setenv("GPUPLAN_CONTEXT", "4096")
    r = cli("recommend", "llama-3.1-8b", "--format", "json", "--top", "1")
    assert need_of(r)["context"] == 4096
    plan = json.loads(r.stdout)["plans"][0]
    assert plan["vllm_args"][plan["vllm_args"].index("--max-model-len") + 1] == "4096"


def test_recommend_reads_toml_and_says_so(cli, repo):
    """The reported bug: recommend ignored gpuplan.toml (model, workload and providers)."""
    r = cli("recommend", "--format", "json", "--top", "3")
    need = need_of(r)
    assert (need["context"], need["concurrency"]) == (2048, 3)
    assert {p["offer"]["provider"] for p in json.loads(r.stdout)["plans"]} == {"gcp"}
    assert r.stderr.startswith("reading gpuplan.toml (model, context, concurrency, providers")


def test_the_load_given_with_more_precedence_wins(cli, repo, monkeypatch):
    """The toml's `concurrency = 3` and a target or a job on the command line: the flag's load
    wins (flag > variable > file), as for any setting, and the other way round; two loads
    given at the same level are refused (exit 2): the figures would describe neither."""
    for flags in (["--target-rps", "2"], ["--job-requests", "1000"], ["--workload", "batch"]):
        need = need_of(cli("recommend", *flags, "--format", "json", "--top", "1"))
        assert need["concurrency"] == 1, flags
    monkeypatch.setenv("GPUPLAN_WORKLOAD", "batch")
    need = need_of(cli("recommend", "--concurrency", "8", "--format", "json", "--top", "1"))
    assert (need["concurrency"], need["workload"]) == (8, "interactive")
    monkeypatch.delenv("GPUPLAN_WORKLOAD")
    text = (repo / "gpuplan.toml").read_text()
    more = text.replace('providers = ["gcp"]\n', 'providers = ["gcp"]\ntarget_rps = 2.0\n')
    toml(repo / "gpuplan.toml", more)
    r = cli("recommend")
    assert r.exit_code == 2 and "concurrency (" in r.output and "target_rps (" in r.output
    need = need_of(cli("recommend", "--concurrency", "8", "--format", "json", "--top", "1"))
    assert need["concurrency"] == 8 and need["target_output_tokens_per_s"] is None
    # a job's deadline counts as its load: given as a flag, it outranks a variable's streams
    toml(repo / "gpuplan.toml", text.replace("concurrency = 3\n", "job_requests = 1000\n"))
    monkeypatch.setenv("GPUPLAN_CONCURRENCY", "8")
    need = need_of(cli("recommend", "--deadline-hours", "2", "--format", "json", "--top", "1"))
    assert (need["concurrency"], need["job_requests"], need["deadline_hours"]) == (1, 1000, 2)


def test_an_init_project_takes_a_target_or_a_job(cli, tmp_path, monkeypatch):
    """`gpuplan init` leaves concurrency at its default: a target or a job given later is the
    load, not a conflict with the template."""
    monkeypatch.chdir(tmp_path)
    assert cli("init", "--model", "llama-3.1-8b").exit_code == 0
    for flags in (["--target-rps", "2"], ["--job-requests", "1000"]):
        r = cli("recommend", *flags, "--top", "1")
        assert r.exit_code == 0, r.output


def test_recommend_precedence_flag_over_env_over_toml(cli, repo, monkeypatch):
    monkeypatch.setenv("GPUPLAN_CONTEXT", "4096")
    monkeypatch.setenv("GPUPLAN_CONCURRENCY", "2")
    r = cli("recommend", "--format", "json", "--top", "1", "--concurrency", "5")
    need = need_of(r)
    assert (need["context"], need["concurrency"]) == (4096, 5)  # env > toml; flag > env
    # A flag equal to its default still wins: the user typed it.
    r = cli("recommend", "--format", "json", "--top", "1", "--context", "8192")
    assert need_of(r)["context"] == 8192


def test_on_demand_flag_beats_spot_from_env(cli, monkeypatch):
    monkeypatch.setenv("GPUPLAN_SPOT", "true")
    assert need_of(cli("recommend", "llama-3.1-8b", "--format", "json", "--top", "1"))["spot"]
    r = cli("recommend", "llama-3.1-8b", "--format", "json", "--top", "1", "--on-demand")
    assert need_of(r)["spot"] is False


# ------------------------------------------------------------------ generate and check
def test_generate_with_model_keeps_toml_workload_and_check_passes(cli, repo):
    """The reported bug: `generate MODEL` dropped the toml's providers and context, and the
    next `check` reported drift on the project gpuplan had just written."""
    r = cli("generate", "llama-3.1-8b")
    assert r.exit_code == 0, r.output
    plan = json.loads((repo / "infra/llm/gpuplan.plan.json").read_text())
    assert plan["offer"]["provider"] == "gcp"
    assert (plan["need"]["context"], plan["need"]["concurrency"]) == (2048, 3)
    ok = cli("check")
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("ok:")


def test_check_applies_env_over_toml(cli, repo, monkeypatch):
    assert cli("generate").exit_code == 0
    monkeypatch.setenv("GPUPLAN_CONTEXT", "4096")
    r = cli("check")
    assert r.exit_code == 6
    assert "plan differs: context: settings say 4096, the plan was made for 2048" in r.stdout


def test_a_headroom_without_a_target_is_no_drift_and_recommend_says_it_is_ignored(
    cli, repo, monkeypatch
):
    """A sweep: GPUPLAN_REPLICA_HEADROOM=0.5 made `check` exit 6 on an interactive plan it
    cannot change (the headroom sizes a throughput target's replicas), and `recommend
    --replica-headroom` ignored it without a word."""
    assert cli("generate").exit_code == 0
    monkeypatch.setenv("GPUPLAN_REPLICA_HEADROOM", "0.5")
    r = cli("check")
    assert r.exit_code == 0 and "replica_headroom" not in r.stdout, r.output
    monkeypatch.setenv("GPUPLAN_TARGET_RPS", "2")  # with a target it sizes: drift again
    assert "plan differs: replica_headroom" in cli("check").stdout
    monkeypatch.delenv("GPUPLAN_TARGET_RPS")
    said = cli("recommend", "llama-3.1-8b", "--top", "1").stderr
    assert "warning: replica_headroom is ignored" in said
    monkeypatch.delenv("GPUPLAN_REPLICA_HEADROOM")
    assert "replica_headroom" not in cli("recommend", "llama-3.1-8b", "--top", "1").stderr


def test_a_corrupt_committed_plan_sends_the_user_to_git_or_generate(cli, repo):
    """A sweep: a garbled infra/llm/gpuplan.plan.json told `check` users to save a plan with
    `recommend ... --save-plan`, which a generated project never reads."""
    assert cli("generate").exit_code == 0
    (repo / "infra/llm/gpuplan.plan.json").write_text("{garbage")
    r = cli("check")
    assert r.exit_code == 2 and "gpuplan.plan.json: plan file is not valid JSON" in r.output
    assert "restore it from git, or run `gpuplan generate` again" in r.output
    assert "--save-plan" not in r.output


def test_generate_flag_beats_toml_and_env(cli, repo, monkeypatch):
    monkeypatch.setenv("GPUPLAN_CONTEXT", "4096")
    r = cli("generate", "--context", "3072", "--providers", "aws")
    assert r.exit_code == 0, r.output
    plan = json.loads((repo / "infra/llm/gpuplan.plan.json").read_text())
    assert (plan["need"]["context"], plan["offer"]["provider"]) == (3072, "aws")


def test_explicit_toml_must_exist(cli, tmp_path):
    r = cli("recommend", "llama-3.1-8b", "--toml", str(tmp_path / "missing.toml"))
    assert r.exit_code == 2 and "--toml" in r.stderr and "does not exist" in r.stderr


# ------------------------------------------------------------------ one validation, any source
@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("GPUPLAN_GPU_MEMORY_UTILIZATION", "7", "GPUPLAN_GPU_MEMORY_UTILIZATION is 7.0"),
        ("GPUPLAN_GPU_MEMORY_UTILIZATION", "0", "must be > 0"),
        ("GPUPLAN_GPU_MEMORY_UTILIZATION", "nan", "finite"),
        ("GPUPLAN_HORIZON_MONTHS", "0", "GPUPLAN_HORIZON_MONTHS"),
        ("GPUPLAN_MAX_PRICE", "inf", "finite"),
        ("GPUPLAN_CONTEXT", "0", "must be >= 1"),
        ("GPUPLAN_OBJECTIVE", "cheap", "allowed: auto, cost-per-token"),
        ("GPUPLAN_SPOT", "maybe", "true/false"),
    ],
)
def test_bad_env_values_are_usage_errors(cli, monkeypatch, env, value, needle):
    monkeypatch.setenv(env, value)
    r = cli("recommend", "llama-3.1-8b")
    assert r.exit_code == 2, r.output
    assert needle in r.stderr and "Traceback" not in r.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization is 1.5"),
        (["--gpu-memory-utilization", "nan"], "finite"),
        (["--max-price", "nan"], "finite"),
        (["--max-price", "-1"], "--max-price is -1.0"),
        (["--max-nodes", "17"], "<= 16"),
    ],
)
def test_bad_flag_values_are_usage_errors(cli, args, needle):
    r = cli("recommend", "llama-3.1-8b", *args)
    assert r.exit_code == 2, r.output
    assert needle in r.stderr


def test_toml_values_are_validated_like_flags(tmp_path):
    bad = toml(tmp_path / "g.toml", "[workload]\ngpu_memory_utilization = 7\n")
    with pytest.raises(UsageError, match=r"'workload.gpu_memory_utilization' is 7.0"):
        load_settings(toml=bad)


def test_each_default_written_once():
    """Workload defaults are the decision stage's own (Need), deploy defaults the KEYS table's."""
    from planner.decide.plan import Need

    s = Settings()
    assert s.need() == Need()
    assert (s.out, s.stack, s.wait_healthy) == tuple(
        KEYS[k].default for k in ("out", "stack", "wait_healthy")
    )


# ------------------------------------------------------------------ ordinary local faults
def test_save_plan_under_a_file_is_one_clear_line(cli, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    r = cli("recommend", "llama-3.1-8b", "--save-plan", str(blocker / "plan.json"))
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith(f"error: cannot write {blocker}")
    assert "unexpected" not in r.output and blocker.read_text() == "x"


def test_disk_full_while_saving_a_plan_keeps_the_old_file(cli, tmp_path, monkeypatch):
    import errno
    import os

    plan = tmp_path / "plan.json"
    plan.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("planner.fsutil.os.fsync", full)
    r = cli("recommend", "llama-3.1-8b", "--save-plan", str(plan))
    assert r.exit_code == 2, r.output
    assert "no space left on the device" in r.stderr and "unexpected" not in r.output
    assert plan.read_text() == "old" and list(tmp_path.iterdir()) == [plan]


def test_a_huge_model_id_is_cut_in_the_message(cli):
    r = cli("footprint", "m" * 5000)
    assert r.exit_code == 2, r.output
    assert "file name too long" in r.stderr and len(r.stderr) < 400


def test_interrupt_mentions_pulumi_only_where_it_applies(cli, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("planner.app.model.footprint", interrupted)
    r = cli("footprint", "llama-3.1-8b")
    assert r.exit_code == 130 and r.stderr.strip() == "interrupted"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_respect_the_umask(tmp_path, umask, mode):
    import os

    from planner.fsutil import atomic_write_text

    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_a_gpuplan_toml_that_is_a_folder_is_said_not_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gpuplan.toml").mkdir()
    with pytest.raises(UsageError, match=r"\./gpuplan\.toml is not a file"):
        load_settings({}, env={})
    with pytest.raises(UsageError, match="is not a file"):
        load_settings({}, toml=tmp_path / "gpuplan.toml", env={})


def test_a_write_goes_through_a_symlink_and_keeps_the_files_mode(tmp_path):
    """Saving over a user's file writes into it: a symlink stays a symlink (its target gets the
    content) and a private file stays private; both the one-file and all-or-nothing paths."""
    import os

    from planner.fsutil import atomic_write_many, atomic_write_text

    shared = tmp_path / "shared"
    shared.mkdir()
    real = shared / "plan.json"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "plan.json"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    assert real.stat().st_mode & 0o777 == 0o600
    other = tmp_path / "other.txt"
    other.write_text("old")
    other.chmod(0o640)
    atomic_write_many({link: "newer", other: "x"})
    assert link.is_symlink() and real.read_text() == "newer"
    assert other.stat().st_mode & 0o777 == 0o640
    assert sorted(os.listdir(tmp_path)) == ["other.txt", "plan.json", "shared"]


def test_a_writable_file_in_a_folder_that_holds_no_temp_file_is_written_in_place(
    tmp_path, monkeypatch
):
    """A symlink into a shared folder the user may not write (the file itself writable): the
    save goes into the file as an editor's would; an error names the path given, never the
    temp file's."""
    import tempfile

    from planner.errors import LocalFileError
    from planner.fsutil import atomic_write_many, atomic_write_text

    shared = tmp_path / "shared"
    shared.mkdir()
    real = shared / "plan.json"
    real.write_text("a much longer old content")
    link = tmp_path / "plan.json"
    link.symlink_to(real)

    def no_temp_files(*args, **kwargs):  # as mkstemp in a folder one may not write
        raise PermissionError(13, "Permission denied", str(shared / ".plan.json.x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", no_temp_files)
    atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    with pytest.raises(LocalFileError) as exc:  # a new file has nowhere to go
        atomic_write_text(shared / "new.json", "x")
    said = exc.value.message
    assert said.startswith("cannot write /") and said.endswith("new.json: permission denied")
    with pytest.raises(LocalFileError) as exc:  # all or nothing: no in-place fallback
        atomic_write_many({link: "newer"})
    said = exc.value.message
    assert said.endswith("/plan.json: permission denied") and ".tmp" not in said, said
    assert real.read_text() == "new"


def test_a_write_refuses_what_it_would_destroy(tmp_path):
    """A pipe or device, or a file nobody may write, is left alone with one clear line (and an
    all-or-nothing write leaves its other files untouched)."""
    import os

    from planner.errors import LocalFileError
    from planner.fsutil import atomic_write_many, atomic_write_text

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(LocalFileError, match="not a regular file") as exc:
        atomic_write_text(fifo, "x")
    assert exc.value.hint
    assert fifo.is_fifo()
    locked = tmp_path / "README.md"
    locked.write_text("mine")
    locked.chmod(0o444)
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    with pytest.raises(LocalFileError, match="read-only"):
        atomic_write_many({kept: "new", locked: "theirs"})
    assert (locked.read_text(), kept.read_text()) == ("mine", "old")
    assert sorted(os.listdir(tmp_path)) == ["README.md", "kept.txt", "pipe"]
    with pytest.raises(LocalFileError, match="folder"):
        atomic_write_text(tmp_path, "x")


def test_every_commented_key_of_the_init_template_is_a_valid_setting(tmp_path):
    """`gpuplan init` writes example keys as comments: each one, uncommented, is a key of its
    section with a valid value (all of them at once, as the merge validates each alone)."""
    import re

    from planner.inittoml import config_template
    from planner.settings import load_settings

    text = config_template("llama-3.1-8b", [], None, "dev", "infra/llm")
    uncommented, n = re.subn(r"^# (\w+ = )", r"\1", text, flags=re.M)
    assert n >= 15
    path = tmp_path / "gpuplan.toml"
    path.write_text(uncommented)
    s = load_settings({}, toml=path, env={})
    assert (s.spread, s.job_requests, s.deadline_hours, s.quant) == (True, 2_000_000, 24.0, "auto")


def test_a_gpuplan_toml_saved_with_a_byte_order_mark_reads_as_without(tmp_path):
    """Sweep: Windows Notepad saves UTF-8 with a BOM, which tomllib calls an invalid statement
    at line 1, column 1; it carries nothing, so it is read past."""
    from planner.tomlfile import read_toml_file

    plain = tmp_path / "plain.toml"
    plain.write_text('[workload]\ncontext = 4096\n[model]\nname = "llama-3.1-8b"\n')
    marked = tmp_path / "marked.toml"
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    assert read_toml_file(marked) == read_toml_file(plain) != {}
