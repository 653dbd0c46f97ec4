"""A failed `gpuplan generate` (disk full, interrupted half-way) leaves the previous project
exactly as it was: the new files are written all or nothing."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

CIDR = "203.0.113.0/24"


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def project(cli, tmp_path):
    out = tmp_path / "proj"
    r = cli(
        "generate", "llama-3.1-8b", "--providers", "aws", "--allow-cidr", CIDR, "--out", str(out)
    )
    assert r.exit_code == 0, r.output
    return out


def failing_after(n, exc):
    """An os.fsync that works n times, then raises ``exc`` (the disk filling up mid-way)."""
    calls = {"n": 0}
    real = os.fsync

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > n:
            raise exc
        return real(fd)

    return fsync


@pytest.mark.parametrize("after", [0, 2, 5])
def test_disk_full_during_generate_keeps_the_previous_project(cli, project, monkeypatch, after):
    before = snapshot(project)
    monkeypatch.setattr(
        "planner.fsutil.os.fsync", failing_after(after, OSError(errno.ENOSPC, "No space left"))
    )
    # another provider and context: every file would change
    r = cli("generate", "llama-3.1-8b", "--providers", "gcp", "--context", "4096",
            "--allow-cidr", CIDR, "--out", str(project), "--old-stack-destroyed")  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "no space left on the device" in r.stderr and "unexpected" not in r.output
    assert snapshot(project) == before  # same files, same bytes, no temp file left


def test_interrupt_during_generate_keeps_the_previous_project(cli, project, monkeypatch):
    before = snapshot(project)
    monkeypatch.setattr("planner.fsutil.os.fsync", failing_after(3, KeyboardInterrupt()))
    r = cli("generate", "llama-3.1-8b", "--providers", "gcp", "--allow-cidr", CIDR,
            "--out", str(project), "--old-stack-destroyed")  # fmt: skip
    assert r.exit_code == 130, r.output
    assert snapshot(project) == before


def test_a_cidr_with_host_bits_is_refused_not_widened(cli, tmp_path):
    r = cli("generate", "llama-3.1-8b", "--providers", "aws", "--allow-cidr", "203.0.113.7/24",
            "--out", str(tmp_path / "p"))  # fmt: skip
    assert r.exit_code == 2, r.output
    assert "has host bits set" in r.stderr
    assert "203.0.113.7/32" in r.stderr and "203.0.113.0/24" in r.stderr
    assert not (tmp_path / "p").exists()


def test_hostile_model_ids_are_escaped_in_the_generated_readme():
    from dataclasses import replace

    from infra.emit import ProjectOptions, render_project
    from tests.test_generate import make_plan

    hostile = "org/m`x\n# Pwned [link](http://evil) <b>\x1b[31m"
    base = make_plan("aws")
    plan = replace(base, model=hostile, base_model=hostile)
    readme = render_project(plan, ProjectOptions(allowed_cidrs=(CIDR,)))["README.md"]
    assert "\n# Pwned" not in readme and "\x1b" not in readme
    span = readme.split("It serves `", 1)[1].split("`", 1)[0]
    outside = readme.replace(span, "")  # a code span shows its text literally
    assert "[link](" not in outside and "<b>" not in outside
    title = readme.splitlines()[0]
    # rendered, the title reads: org/m`x\n# Pwned [link](http://evil) <b>\x1b[31m on AWS
    assert title.startswith("# org/m\\`x\\\\n\\# Pwned \\[link\\](http://evil) \\<b\\>")
    assert span == "org/m'x\\n# Pwned [link](http://evil) <b>\\x1b[31m"


# ------------------------------------------------ a doctored or damaged folder (QA sweep)
def regenerate(cli, out, *extra):
    return cli("generate", "llama-3.1-8b", "--providers", "aws", "--allow-cidr", CIDR,
               "--out", str(out), *extra)  # fmt: skip


def edit_marker(out, files):
    marker = json.loads((out / ".gpuplan").read_text())
    (out / ".gpuplan").write_text(json.dumps({**marker, "files": files}))


@pytest.mark.parametrize("name", ["../victim.txt", "ABSOLUTE", "sub/../../victim.txt"])
def test_a_marker_naming_files_outside_the_folder_removes_nothing(cli, project, name):
    """QA: a `.gpuplan` whose file list named ../victim.txt (or an absolute path) made generate
    delete that file outside --out. Such a marker is refused as damaged, before any write."""
    victim = project.parent / "victim.txt"
    victim.write_text("mine")
    name = str(victim) if name == "ABSOLUTE" else name
    edit_marker(project, [*json.loads((project / ".gpuplan").read_text())["files"], name])
    before = snapshot(project)
    r = regenerate(cli, project, "--context", "4096")
    assert r.exit_code == 2, r.output
    assert "is damaged: it lists" in r.stderr and "unexpected" not in r.output
    assert victim.read_text() == "mine"
    assert snapshot(project) == before


def test_a_digest_recorded_for_a_file_outside_the_folder_is_not_read(cli, project):
    """The marker's digests name files too: one outside --out is never read, nor called an
    edit that regenerating removes."""
    victim = project.parent / "victim.txt"
    victim.write_text("mine")
    marker = json.loads((project / ".gpuplan").read_text())
    marker["sha256"]["../victim.txt"] = "0" * 64
    (project / ".gpuplan").write_text(json.dumps(marker))
    r = regenerate(cli, project)
    assert r.exit_code == 0, r.output
    assert "victim" not in r.output and victim.read_text() == "mine"


@pytest.mark.parametrize("files", [5, [[1]], {"a": 1}, [None], "README.md"])
def test_a_marker_of_the_wrong_shape_is_damaged_not_a_crash(cli, project, files):
    edit_marker(project, files)
    before = snapshot(project)
    r = regenerate(cli, project)
    assert r.exit_code == 2, r.output
    assert ".gpuplan is damaged" in r.stderr and "unexpected" not in r.output
    assert snapshot(project) == before


def test_a_stale_name_that_is_a_folder_is_refused_before_anything_is_written(cli, project):
    """QA: the new files were written, then removing the stale folder failed, and the old marker
    stayed: the next generate called gpuplan's own files hand edits."""
    (project / "victimdir").mkdir()
    (project / "victimdir" / "keep.txt").write_text("mine")
    edit_marker(project, [*json.loads((project / ".gpuplan").read_text())["files"], "victimdir"])
    before = snapshot(project)
    r = regenerate(cli, project, "--context", "4096")  # every file would change
    assert r.exit_code == 2, r.output
    assert "victimdir: it is a folder" in r.stderr and "nothing was written" in r.stderr
    assert snapshot(project) == before
    (project / "victimdir" / "keep.txt").unlink()
    (project / "victimdir").rmdir()
    again = regenerate(cli, project, "--context", "4096")
    assert again.exit_code == 0 and "replaced your edits" not in again.output, again.output


def test_a_failed_removal_leaves_the_new_project_and_a_marker_that_lists_it(
    cli, project, monkeypatch
):
    """A stale file that cannot be removed: the new files are in place and the marker written
    for them also lists the file left, so the next generate removes it (and calls nothing a
    hand edit or a foreign file)."""
    (project / "gpuplan_old.py").write_text("# an older gpuplan's module\n")
    edit_marker(
        project, [*json.loads((project / ".gpuplan").read_text())["files"], "gpuplan_old.py"]
    )
    real = Path.unlink

    def unlink(self, missing_ok=False):
        if self.name == "gpuplan_old.py":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    r = regenerate(cli, project, "--context", "4096")
    assert r.exit_code == 2, r.output
    assert "cannot remove gpuplan_old.py: permission denied in --out" in r.stderr
    marker = json.loads((project / ".gpuplan").read_text())
    assert "gpuplan_old.py" in marker["files"]
    assert (project / "gpuplan.plan.json").read_text().count('"context": 4096') == 1
    monkeypatch.setattr(Path, "unlink", real)
    again = regenerate(cli, project, "--context", "4096")
    assert again.exit_code == 0, again.output
    assert "replaced your edits" not in again.output
    assert not (project / "gpuplan_old.py").exists()


def test_a_pulumi_yaml_that_is_not_utf8_is_an_edit_or_one_clear_line(cli, project):
    """QA: a Pulumi.yaml with a byte that is not UTF-8 ended in `unexpected UnicodeDecodeError`.
    Elsewhere in the file it is a hand edit (replaced, and said); in the project name, which
    guards the deployed stacks, it is refused with one line."""
    yaml_file = project / "Pulumi.yaml"
    good = yaml_file.read_bytes()
    yaml_file.write_bytes(good + b"# caf\xe9\n")
    r = regenerate(cli, project)
    assert r.exit_code == 0, r.output
    assert "replaced your edits to Pulumi.yaml" in r.stderr
    assert yaml_file.read_bytes() == good
    yaml_file.write_bytes(b"name: \xff\xfe\n" + good)
    before = snapshot(project)
    r = regenerate(cli, project)
    assert r.exit_code == 2, r.output
    assert "Pulumi project name is not UTF-8" in r.stderr and "unexpected" not in r.output
    assert snapshot(project) == before


@pytest.mark.parametrize("name", ["README.md", "Pulumi.yaml", ".gpuplan"])
def test_check_reports_a_committed_file_that_is_not_utf8_as_drift(cli, tmp_path, monkeypatch, name):
    from tests.test_deploy import write_toml

    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path / "gpuplan.toml")
    assert cli("generate").exit_code == 0
    path = tmp_path / "infra/llm" / name
    path.write_bytes(path.read_bytes() + b"\xff\n")
    r = cli("check")
    assert r.exit_code == 6, r.output
    assert f"changed: infra/llm/{name}" in r.output and "unexpected" not in r.output


def test_check_names_a_plan_file_that_is_not_utf8(cli, tmp_path, monkeypatch):
    from tests.test_deploy import write_toml

    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path / "gpuplan.toml")
    assert cli("generate").exit_code == 0
    plan = tmp_path / "infra/llm/gpuplan.plan.json"
    plan.write_bytes(plan.read_bytes() + b"\xff")
    r = cli("check")
    assert r.exit_code == 2, r.output
    assert "gpuplan.plan.json is not UTF-8 text (byte 0xff" in r.stderr
    assert "unexpected" not in r.output


def test_a_symlink_out_of_the_project_is_refused_before_anything_is_written(cli, project, tmp_path):
    """QA: README.md linked to a file outside the folder, and generate overwrote that file.
    A link within the folder stays a link and gets the new content."""
    outside = tmp_path / "outside.py"
    outside.write_text("mine")
    (project / "README.md").unlink()
    (project / "README.md").symlink_to(outside)
    before = snapshot(project)
    r = regenerate(cli, project, "--context", "4096")
    assert r.exit_code == 2, r.output
    assert f"README.md is a symlink to {outside}" in r.stderr and "unexpected" not in r.output
    assert outside.read_text() == "mine"
    assert snapshot(project) == before
    (project / "README.md").unlink()
    (project / "venv").mkdir()  # ignored by generate, inside the folder
    (project / "venv" / "readme.md").write_text("old")
    (project / "README.md").symlink_to("venv/readme.md")
    ok = regenerate(cli, project, "--context", "4096")
    assert ok.exit_code == 0, ok.output
    assert (project / "README.md").is_symlink()
    assert "gpuplan" in (project / "venv" / "readme.md").read_text()


def test_check_reads_a_crlf_checkout_as_the_same_files(cli, tmp_path, monkeypatch):
    """Review: comparing bytes (for files that are not UTF-8) made every file of a CRLF checkout
    (git's core.autocrlf on Windows, eol=crlf) drift, exit 6; text comparison had read past it."""
    from tests.test_deploy import write_toml

    monkeypatch.chdir(tmp_path)
    write_toml(tmp_path / "gpuplan.toml")
    assert cli("generate").exit_code == 0
    for name in ("README.md", "__main__.py", "Pulumi.yaml"):
        path = tmp_path / "infra/llm" / name
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    r = cli("check")
    assert r.exit_code == 0, r.output
    main = tmp_path / "infra/llm/__main__.py"
    main.write_bytes(main.read_bytes() + b"# edited\r\n")  # a real edit still shows
    r = cli("check")
    assert r.exit_code == 6 and "changed: infra/llm/__main__.py" in r.output, r.output
