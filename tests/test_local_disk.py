"""AWS instance store: the boot step that puts the Hugging Face cache on the largest local NVMe
disk, run for real with bash against a model of /sys and stub disk tools (mkfs, mount, blkid,
blockdev, mountpoint) that record what they are asked to do; and its place in the program."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infra.emit import ProjectOptions, render_project, write_project
from tests.test_generate import CIDR, boot_files, by_type, extras_module, make_plan, run_program

GB = 1_000_000_000
STUBS = {
    # state: mounted (file: the cache is), ami (file: the AMI mounted its instance store, with
    # ami_free bytes free), label.<dev> (file), size.<dev> (bytes); calls logged in log
    "mountpoint": 'case "$2" in */nvme) [ -e "$STATE/ami" ];; *) [ -e "$STATE/mounted" ];; esac',
    "df": 'echo Avail; cat "$STATE/ami_free"',
    "blockdev": 'cat "$STATE/size.$(basename "$2")"',
    "blkid": 'cat "$STATE/label.$(basename "${@: -1}")" 2>/dev/null; true',
    "mkfs.ext4": 'echo "mkfs ${@: -1}" >> "$STATE/log"; echo gpuplan-hf > '
    '"$STATE/label.$(basename "${@: -1}")"',
    "mount": 'echo "mount ${@: -2:1} ${@: -1}" >> "$STATE/log"; touch "$STATE/mounted"',
}


@pytest.fixture
def host(tmp_path):
    """A machine with an EBS root volume and two instance store disks (1000 and 250 GB)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name, body in STUBS.items():
        (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
        (stubs / name).chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    disks = {"nvme0n1": ("Amazon Elastic Block Store", 500), "nvme1n1": (None, 1000),
             "nvme2n1": (None, 250)}  # fmt: skip
    for dev, (model, size_gb) in disks.items():
        device = tmp_path / "sys/block" / dev / "device"
        device.mkdir(parents=True)
        # the model field is padded with spaces, as the kernel shows it
        (device / "model").write_text((model or "Amazon EC2 NVMe Instance Storage") + "    \n")
        (state / f"size.{dev}").write_text(str(size_gb * GB))
    return tmp_path


def run(host: Path, min_gb: int) -> list[str]:
    script = extras_module().local_disk_script(
        min_gb, str(host / "sys"), str(host / "mnt"), str(host / "dlami/nvme"), ami_wait_s=1
    )
    env = {"PATH": f"{host / 'bin'}:/usr/bin:/bin", "STATE": str(host / "state")}
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=30, capture_output=True)
    log = host / "state" / "log"
    calls = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return calls


def test_the_cache_goes_on_the_largest_instance_store_disk_idempotently(host):
    mnt = host / "mnt"
    assert run(host, 300) == ["mkfs /dev/nvme1n1", f"mount /dev/nvme1n1 {mnt}"]
    assert run(host, 300) == []  # a restart of vLLM: already mounted, nothing done
    (host / "state/mounted").unlink()  # a reboot: the disk keeps its data
    assert run(host, 300) == [f"mount /dev/nvme1n1 {mnt}"]
    (host / "state/mounted").unlink()  # a stop and start: the instance store is blank
    (host / "state/label.nvme1n1").unlink()
    assert run(host, 300) == ["mkfs /dev/nvme1n1", f"mount /dev/nvme1n1 {mnt}"]


def test_the_instance_store_the_ami_mounted_is_used_as_it_is(host):
    """The Deep Learning Base AMIs mount the instance store at /opt/dlami/nvme themselves: a
    directory there is bind-mounted, and no disk is formatted (mkfs refuses a mounted one)."""
    (host / "dlami/nvme").mkdir(parents=True)
    assert run(host, 300) == []  # the AMI has not mounted it (yet): no mkfs of its disks
    (host / "state/ami").touch()
    (host / "state/ami_free").write_text(str(1200 * GB))
    assert run(host, 300) == [f"mount {host / 'dlami/nvme/gpuplan-hf'} {host / 'mnt'}"]
    assert (host / "dlami/nvme/gpuplan-hf").is_dir()
    assert run(host, 300) == []  # already mounted
    (host / "state/mounted").unlink()
    (host / "state/ami_free").write_text(str(100 * GB))
    assert run(host, 300) == []  # too small: the cache stays on the root volume, no mkfs


def test_a_small_or_missing_instance_store_leaves_the_cache_on_the_root_volume(host):
    assert run(host, 2000) == []  # 1000 GB is not enough: nothing formatted
    for dev in ("nvme1n1", "nvme2n1"):
        (host / "sys/block" / dev / "device/model").write_text("Amazon Elastic Block Store\n")
    assert run(host, 10) == []  # EBS volumes are never formatted


def test_aws_program_prepares_the_local_disk_before_each_vllm_start(tmp_path):
    out = tmp_path / "aws"
    write_project(render_project(make_plan("aws"), ProjectOptions(allowed_cidrs=(CIDR,))), out)
    result = run_program(out, {})
    [inst] = by_type(result, "aws:ec2/instance:Instance")
    files = boot_files(inst["inputs"]["userData"])
    unit = files["/etc/systemd/system/vllm.service"]
    # before vLLM starts (each start: after a stop the disk is blank), never blocking it
    assert "ExecStartPre=-/opt/gpuplan/local-disk.sh" in unit
    assert unit.index("local-disk.sh") < unit.index("ExecStart=/opt/gpuplan/run-vllm.sh")
    assert "Amazon EC2 NVMe Instance Storage" in files["/opt/gpuplan/local-disk.sh"]
    assert len(inst["inputs"]["userData"].encode()) < 16384  # EC2's user-data limit
    assert "wiped when the instance stops" in (out / "README.md").read_text()


def test_an_offer_whose_instance_store_is_too_small_does_not_try():
    from dataclasses import replace

    from infra.targets.aws import local_disk_min_gb

    plan = make_plan("aws")
    need = local_disk_min_gb(plan)
    assert need is not None and need >= 16  # an 8B model's BF16 download, with spare
    small = replace(plan, offer=replace(plan.offer, disk_gb=need - 1))
    assert local_disk_min_gb(small) is None
    files = render_project(small, ProjectOptions(allowed_cidrs=(CIDR,)))
    assert "'local_disk_min_gb': None" in files["__main__.py"]
    assert "instance store" not in files["README.md"]
