"""The canonical GPU table: one name per card, the aliases every provider uses, and the specs
(memory, bandwidth, dense tensor throughput, compute capability) that fit and speed need.

Built from planner/offers/data/gpus.json, which carries each card's sources.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from planner.errors import UsageError, did_you_mean

UNLOGGED_USABLE_FRACTION = 0.98
# The share of its datasheet dense peak a card's matmuls typically reach: the median of the
# measured BF16 rows of the table gpus.json cites for matmul_tflops_measured (NVIDIA A100 SXM
# 86.9%, GH200 83.8%, A100 PCIe 81.1%, H100 SXM 80.3%, B300 78.6%, B200 77.6%, GB200 72.9%).
# Cards without a measurement are assumed to reach their vendor's typical share at their
# precision: NVIDIA FP8 0.74 (the table's FP8 rows: H100 70.9%, GB200 72.3%, H200 73.4%, B300
# 74.5%, B200 76.3%, GH200 77.6%), AMD 0.60 (MI300X 51.4%, MI325X 60.4%, MI355X 62.2% of the
# peak gpus.json gives it): at NVIDIA's share an unmeasured MI350X was modelled 18% faster than
# the MI355X, its faster sibling
TYPICAL_MATMUL_SHARE = 0.80
_TYPICAL_SHARE = {("nvidia", "fp8"): 0.74, ("amd", "fp16"): 0.60, ("amd", "fp8"): 0.60}
# The share of its datasheet memory bandwidth a card's streaming kernels typically reach:
# about the median of the measured cards a search found (0.88 over 15 cards and several
# benchmarks, listed in benchmarks/data/search_2026-12-02.md; the four BabelStream runs
# gpus.json cites, 0.77-0.89); cards without a measurement are assumed to reach it
TYPICAL_BANDWIDTH_SHARE = 0.87
_NOISE = re.compile(r"\b(nvidia|geforce|tesla|amd|instinct|generation)\b|[\s_\-™®]", re.I)


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One GPU model. ``memory_gb`` is the marketed decimal size (80 for an H100)."""

    id: str
    name: str
    vendor: str
    compute_capability: float | None
    memory_gb: float
    memory_bandwidth_gb_s: float
    fp16_tflops_dense: float | None
    bf16_tflops_dense: float | None
    fp8_tflops_dense: float | None
    int8_tops_dense: float | None
    interconnect: str
    nvlink_gb_s: float | None
    aliases: tuple[str, ...]
    usable_memory_gib: float | None = None  # what CUDA reports as total, where a log shows it
    # AMD cards: the LLVM target ROCm names ("gfx942", "gfx950"), on which vLLM's ROCm platform
    # keys its FP8 format and MX (MXFP4) support; None on NVIDIA cards.
    gfx_arch: str | None = None
    # False for cards that cannot reach a peer's memory over PCIe: NCCL then stages every
    # transfer through host memory (gpus.json says which cards, with sources).
    pcie_p2p: bool = True
    # TFLOPS a BF16 / FP8 matmul reaches on this card, measured (gpus.json matmul_source);
    # None where no measurement was found
    bf16_matmul_tflops_measured: float | None = None
    fp8_matmul_tflops_measured: float | None = None
    memory_bandwidth_measured_gb_s: float | None = None  # BabelStream Triad (gpus.json)

    @property
    def streaming_gb_s(self) -> float:
        """The datasheet bandwidth as far as the card reaches more or less of it than a typical
        card (measured share / TYPICAL_BANDWIDTH_SHARE; unmeasured: the datasheet's): what the
        speed model's fitted bandwidth efficiencies multiply. An MI300X streams 77% of its
        5.3 TB/s, an H100 SXM 89% of its 3.35 TB/s."""
        measured = self.memory_bandwidth_measured_gb_s
        if not measured:
            return self.memory_bandwidth_gb_s
        return measured / TYPICAL_BANDWIDTH_SHARE

    def matmul_scale(self, compute: str) -> float:
        """How much faster (> 1) or slower the card's matmuls run than a typical card's at the
        same datasheet peak: its measured share of the peak over TYPICAL_MATMUL_SHARE, else its
        vendor's typical share over it (1 for NVIDIA in 16 bits). The datasheet peaks are not
        all equally far from reach: an MI300X reaches 51% of its BF16 peak, an A100 SXM 87%.
        FP8 takes its own measurement, else the BF16 share, else the vendor's typical FP8
        share; INT8 the BF16 share."""
        peak16 = self.bf16_tflops_dense or self.fp16_tflops_dense
        fp8 = compute == "fp8" and self.fp8_matmul_tflops_measured and self.fp8_tflops_dense
        if fp8:
            return self.fp8_matmul_tflops_measured / self.fp8_tflops_dense / TYPICAL_MATMUL_SHARE
        if self.bf16_matmul_tflops_measured and peak16:
            return self.bf16_matmul_tflops_measured / peak16 / TYPICAL_MATMUL_SHARE
        typical = _TYPICAL_SHARE.get((self.vendor, "fp8" if compute == "fp8" else "fp16"))
        return typical / TYPICAL_MATMUL_SHARE if typical else 1.0

    @property
    def usable_memory_bytes(self) -> int:
        """Bytes vLLM's gpu_memory_utilization multiplies: the total the CUDA runtime reports
        (from public vLLM logs, gpus.json cites each), else 0.98 x the marketed decimal size, an
        assumption below every logged card (T4 14.74 GiB = 0.989 x 16e9; A10 0.987 x 24e9)."""
        if self.usable_memory_gib:
            return int(self.usable_memory_gib * 2**30)
        return int(self.memory_gb * 10**9 * UNLOGGED_USABLE_FRACTION)


def normalize(name: str) -> str:
    return _NOISE.sub("", name).lower()


@cache
def gpu_table() -> dict[str, GpuSpec]:
    raw = json.loads(
        resources.files("planner.offers.data").joinpath("gpus.json").read_text("utf-8")
    )
    table = {}
    for g in raw["gpus"]:
        cc = g["compute_capability"]
        table[g["id"]] = GpuSpec(
            id=g["id"], name=g["name"], vendor=g["vendor"],
            compute_capability=float(cc) if cc else None, memory_gb=float(g["memory_gb"]),
            memory_bandwidth_gb_s=float(g["memory_bandwidth_gb_s"]),
            fp16_tflops_dense=g["fp16_tflops_dense"], bf16_tflops_dense=g["bf16_tflops_dense"],
            fp8_tflops_dense=g["fp8_tflops_dense"], int8_tops_dense=g["int8_tops_dense"],
            interconnect=g["interconnect"], nvlink_gb_s=g["nvlink_gb_s"],
            aliases=tuple(g["aliases"]), usable_memory_gib=g.get("usable_memory_gib"),
            gfx_arch=g.get("gfx_arch"), pcie_p2p=g.get("pcie_p2p", True),
            bf16_matmul_tflops_measured=g.get("matmul_tflops_measured", {}).get("bf16"),
            fp8_matmul_tflops_measured=g.get("matmul_tflops_measured", {}).get("fp8"),
            memory_bandwidth_measured_gb_s=g.get("memory_bandwidth_measured_gb_s"),
        )  # fmt: skip
    return table


@cache
def _alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for gpu in gpu_table().values():
        for key in (gpu.id, gpu.name, *gpu.aliases):
            index.setdefault(normalize(key), gpu.id)
    return index


def canonical_gpu(name: str, memory_mib: float | None = None) -> GpuSpec:
    """The GPU a provider's name means. ``memory_mib`` (as a provider reports it) picks the
    variant where a name alone is ambiguous ("A100" with 81920 MiB is the 80 GB card)."""
    key = normalize(name)
    gpu_id = _alias_index().get(key)
    if gpu_id is None:
        # Provider strings often append the memory ("A100-SXM4-80GB", "H100 80GB HBM3").
        stripped = re.sub(r"\d+gb.*$", "", key)
        gpu_id = _alias_index().get(stripped)
    if gpu_id is None:
        raise UsageError(
            f"unknown GPU '{name}'",
            did_you_mean(name, [g.id for g in gpu_table().values()] + _all_aliases())
            or "run `gpuplan gpus` for the known GPUs",
        )
    gpu = gpu_table()[gpu_id]
    if memory_mib:
        gpu = _closest_variant(gpu, memory_mib)
    return gpu


def gpu_ids(name: str) -> tuple[str, ...]:
    """The GPUs a user's ``--gpu NAME`` means: every variant of a family named bare ("A100": the
    40 and 80 GB, SXM and PCIe cards; "H100": SXM, PCIe and NVL; "A100 80GB": both 80 GB
    cards: whatever names several ids' common start), else the one GPU the name means
    (canonical_gpu: "A100 SXM4", "NVIDIA A100", "h100-sxm"). A provider's bare "A100" is one
    card (its default variant); a user asking for A100s wants the cheapest that serves."""
    key = re.sub(r"[\s_]+", "-", name.strip().lower())
    family = tuple(g.id for g in gpu_table().values() if g.id.startswith(key + "-"))
    if len(family) > 1 and any(c.isdigit() for c in key):
        return family
    return (canonical_gpu(name).id,)


def _closest_variant(gpu: GpuSpec, memory_mib: float) -> GpuSpec:
    reported_gb = memory_mib * 2**20 / 1e9
    if abs(reported_gb - gpu.memory_gb) / gpu.memory_gb <= 0.2:
        return gpu  # e.g. AWS's 22888 MiB for 24 GB cards
    family = re.match(r"[a-z]*\d+", gpu.id)
    prefix = family.group(0) if family else gpu.id
    candidates = [g for g in gpu_table().values() if g.id.startswith(prefix)]
    return min(candidates, key=lambda g: (abs(g.memory_gb - reported_gb), g.id != gpu.id))


def _all_aliases() -> list[str]:
    return [a for g in gpu_table().values() for a in g.aliases]
