"""Provider GPU names map to one canonical card (sources in planner/offers/data/gpus.json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import planner.offers
from planner.errors import UsageError
from planner.offers.gpus import canonical_gpu, gpu_table


@pytest.mark.parametrize(
    ("name", "memory_mib", "expected"),
    [
        ("NVIDIA A10G", None, "a10g"),
        ("a10g", 22888, "a10g"),  # AWS reports 22888 MiB for the 24 GB card
        ("L4", 22888, "l4"),
        ("nvidia-l4", None, "l4"),
        ("A100", 40960, "a100-40gb-sxm"),
        ("A100", 81920, "a100-80gb-sxm"),  # AWS p4de: same name, 80 GB
        ("nvidia-tesla-a100", None, "a100-40gb-sxm"),
        ("nvidia-a100-80gb", None, "a100-80gb-sxm"),
        ("A100-SXM4-80GB", None, "a100-80gb-sxm"),
        ("H100 80GB HBM3", None, "h100-sxm"),
        ("H100", 81559, "h100-sxm"),
        ("H100 NVL", None, "h100-nvl"),
        ("nvidia-h200-141gb", None, "h200-sxm"),
        ("RTX 6000Ada", None, "rtx-6000-ada"),
        ("GeForce RTX 4090", 24564, "rtx-4090"),
        ("V100", 32768, "v100-sxm2-32gb"),
        ("RTX PRO Server 6000", None, "rtx-pro-6000-blackwell"),
        ("RTX PRO 6000 S", 97887, "rtx-pro-6000-blackwell"),  # Vast's Server Edition
        ("RTX PRO 6000 WS", 97887, "rtx-pro-6000-blackwell"),  # Vast's Workstation Edition
        ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", None, "rtx-pro-6000-blackwell"),
        ("MI300X", None, "mi300x"),
        # gpuhunt names the Instinct cards "MI325X", "MI350X", "MI355X" (providers/vultr.py,
        # cloudrift.py, oci.py, daytona.py); its KNOWN_AMD_GPUS still gives the MI325X the
        # pre-launch 288 GB, Vultr's rows the shipped 256 GB
        ("MI325X", 288 * 1024, "mi325x"),
        ("MI325X", 256 * 1024, "mi325x"),
        ("MI350X", 288 * 1024, "mi350x"),
        ("MI355X", 288 * 1024, "mi355x"),
        ("MI355X_288GB", None, "mi355x"),  # Crusoe's own type name (gpuhunt providers/crusoe.py)
        ("AMD Instinct MI350X", None, "mi350x"),  # amdsmi's market name, vLLM's device name
        ("AMD Instinct MI325X", None, "mi325x"),
    ],
)
def test_canonical_names(name, memory_mib, expected):
    assert canonical_gpu(name, memory_mib).id == expected


def test_the_300_w_max_q_rtx_pro_6000_is_not_taken_for_the_600_w_editions():
    # its clocks are lower: the table's tensor figures (600 W editions) would over-promise it
    with pytest.raises(UsageError):
        canonical_gpu("RTX PRO 6000 Blackwell Max-Q")


def test_unknown_gpu_suggests():
    with pytest.raises(UsageError) as err:
        canonical_gpu("H1OO")
    assert "did you mean" in (err.value.hint or "")


def test_table_is_complete_and_sourced():
    table = gpu_table()
    assert {
        "t4",
        "l4",
        "a10g",
        "l40s",
        "rtx-a6000",
        "rtx-4090",
        "rtx-3090",
        "a100-40gb-sxm",
        "a100-80gb-sxm",
        "h100-sxm",
        "h200-sxm",
    } <= set(table)
    for gpu in table.values():
        assert gpu.memory_gb > 0 and gpu.memory_bandwidth_gb_s > 0
        if gpu.vendor == "nvidia":
            assert gpu.compute_capability is not None and gpu.compute_capability >= 7.0
        if gpu.vendor == "amd":  # support.py keys FP8 and MX on it
            assert gpu.gfx_arch and gpu.compute_capability is None, gpu.id
    # FP8 tensor cores only from compute capability 8.9 (gpu-specs.json conventions)
    assert table["a100-80gb-sxm"].fp8_tflops_dense is None
    assert table["h100-sxm"].fp8_tflops_dense == 1978.9
    assert table["rtx-a6000"].usable_memory_bytes == int(48 * 10**9 * 0.98)  # no log: 0.98 x
    assert table["t4"].usable_memory_bytes == int(14.74 * 2**30)  # logged total
    # every logged total names its source and lies near the marketed size: from 90% of its
    # decimal bytes (reserved memory) to its size in GiB (GiB-sized memory reports up to ~7.4%
    # more bytes than the decimal GB)
    raw = json.loads((Path(planner.offers.__file__).parent / "data/gpus.json").read_text())
    for entry in raw["gpus"]:
        if entry.get("usable_memory_gib"):
            assert len(entry.get("usable_memory_source", "")) > 40, entry["id"]
            ratio = entry["usable_memory_gib"] * 2**30 / (entry["memory_gb"] * 10**9)
            assert 0.9 < ratio <= 2**30 / 10**9, entry["id"]


def test_gpus_command_json(cli):
    import json

    r = cli("gpus", "--format", "json")
    assert r.exit_code == 0
    ids = {g["id"] for g in json.loads(r.output)}
    assert "h100-sxm" in ids and len(ids) == len(gpu_table())


def test_matmuls_run_at_each_cards_measured_share_of_its_peak():
    """The speed model took every card's matmuls at one share of the datasheet peak; measured
    (gpus.json matmul_source), an MI300X reaches 51% of its BF16 peak and an A100 SXM 87%.
    Each measured card's peak is scaled by its share over the typical 80%; FP8 takes its own
    row where one exists; unmeasured cards keep the datasheet peak."""
    from planner.decide.perf import peak_flops
    from planner.offers.gpus import TYPICAL_MATMUL_SHARE

    t = gpu_table()
    for gpu in t.values():
        if gpu.bf16_matmul_tflops_measured:  # measured below the datasheet peak, and sourced
            assert gpu.bf16_matmul_tflops_measured < (gpu.bf16_tflops_dense or 0)
        if gpu.fp8_matmul_tflops_measured:
            assert gpu.fp8_matmul_tflops_measured < (gpu.fp8_tflops_dense or 0)
    assert peak_flops(t["mi300x"], "fp16") == pytest.approx(668.4e12 / TYPICAL_MATMUL_SHARE)
    assert peak_flops(t["mi300x"], "fp8") == pytest.approx(2614.9e12 * 668.4 / 1307.4 / 0.8)
    assert peak_flops(t["a100-80gb-sxm"], "fp16") == pytest.approx(271.2e12 / 0.8)
    assert peak_flops(t["h100-sxm"], "fp8") == pytest.approx(1402.6e12 / 0.8)
    assert peak_flops(t["l40s"], "fp16") == 362e12  # no measurement: the datasheet
    # ... at its vendor's typical share: NVIDIA FP8 0.74, AMD 0.60 (review: an unmeasured
    # MI350X modelled 18% faster than the faster MI355X, its sibling, at NVIDIA's 0.80)
    assert peak_flops(t["l40s"], "fp8") == pytest.approx(733e12 * 0.74 / 0.8)
    assert peak_flops(t["mi350x"], "fp16") < peak_flops(t["mi355x"], "fp16")
    assert peak_flops(t["mi350x"], "fp16") == pytest.approx(2306.9e12 * 0.60 / 0.8)
    assert t["mi300x"].matmul_scale("fp16") < 0.7 < 1.05 < t["a100-80gb-sxm"].matmul_scale("fp16")


def test_every_measured_matmul_rate_names_its_source():
    import json
    from importlib import resources

    raw = json.loads(resources.files("planner.offers.data").joinpath("gpus.json").read_text())
    measured = [g for g in raw["gpus"] if "matmul_tflops_measured" in g]
    assert len(measured) >= 10
    for g in measured:
        assert "Maximum Achievable Matmul FLOPS" in g["matmul_source"], g["id"]


def test_streaming_runs_at_each_cards_measured_share_of_its_bandwidth():
    """Decode streams weights and KV cache: measured with BabelStream (gpus.json
    memory_bandwidth_source), an MI300X reaches 77% of its 5.3 TB/s and an H100 SXM 89% of its
    3.35 TB/s, where the speed model took every card at one share. Measured cards stream at
    their share over the typical 87%; the others at their datasheet bandwidth."""
    from planner.offers.gpus import TYPICAL_BANDWIDTH_SHARE

    t = gpu_table()
    assert t["mi300x"].streaming_gb_s == pytest.approx(4100 / TYPICAL_BANDWIDTH_SHARE)
    assert t["h100-sxm"].streaming_gb_s == pytest.approx(2970 / TYPICAL_BANDWIDTH_SHARE)
    assert t["mi300x"].streaming_gb_s < 0.9 * t["mi300x"].memory_bandwidth_gb_s
    assert t["l40s"].streaming_gb_s == t["l40s"].memory_bandwidth_gb_s
    for gpu in t.values():
        if gpu.memory_bandwidth_measured_gb_s:
            assert gpu.memory_bandwidth_measured_gb_s < gpu.memory_bandwidth_gb_s


def test_the_speed_model_streams_at_the_measured_bandwidth():
    """perf reads GpuSpec.streaming_gb_s, not the datasheet, for the weights and the KV cache."""
    from dataclasses import replace

    from planner.decide.perf import Hardware, decode_step_s
    from tests.test_speed_model import _load

    gpu, load = gpu_table()["mi300x"], _load()
    slow = decode_step_s(load, Hardware(gpu, 1, 1, "fp16", False), batch=1, context=1024)
    unmeasured = replace(gpu, memory_bandwidth_measured_gb_s=None)
    fast = decode_step_s(load, Hardware(unmeasured, 1, 1, "fp16", False), batch=1, context=1024)
    assert slow > fast * 1.05  # 5.3 TB/s x 0.87 / 4.1 TB/s = 1.12 at a bandwidth-bound step
