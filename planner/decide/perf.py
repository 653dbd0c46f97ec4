"""Roofline speed model of vLLM serving (pure).

Decode: each step reads the GPU's share of the weights (for MoE, the experts a batch of B tokens
touches: 1 - (1 - k/E)^B of them) and the batch's KV cache, and does 2 x active-params FLOPs a
token; the step takes the longer of the memory and compute times, plus tensor-parallel
all-reduces and a fixed and a per-sequence overhead. Prefill (time to first token) is compute
bound. Aggregate throughput shares GPU time between prefill and decode.

The efficiency constants live in planner/decide/data/perf_calibration.json with the published
measurements they were fitted to; `python benchmarks/speed_accuracy.py` prints the error of
every calibration point.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from planner.model.footprint import kv_bytes_per_token
from planner.model.values import ModelSpec
from planner.offers.gpus import GpuSpec


@cache
def calibration() -> dict[str, Any]:
    text = (
        resources.files("planner.decide.data").joinpath("perf_calibration.json").read_text("utf-8")
    )
    return json.loads(text)


def _c(name: str) -> float:
    return float(calibration()["constants"][name]["value"])


@dataclass(frozen=True, slots=True)
class ModelLoad:
    """What one GPU of a layout holds and computes, independent of the batch."""

    weight_bytes_per_gpu: float  # non-expert + all expert bytes on one GPU (one pipeline stage)
    expert_bytes_per_gpu: float  # the routed-expert part of the above
    active_params: int  # parameters one token multiplies (whole model)
    expert_fraction: float  # k / E, or 1 for dense models
    layers: int
    hidden: int
    attn_width: int  # heads x head_dim (query side), for attention FLOPs
    kv_bytes_per_token_per_gpu: int  # over the GPU's layers


@dataclass(frozen=True, slots=True)
class Hardware:
    gpu: GpuSpec
    tp: int
    pp: int
    compute: str  # fp16 | fp8 | int8: which peak the matmuls run at
    nvlink: bool  # GPUs of a node talk over NVLink/NVSwitch rather than PCIe


def peak_flops(gpu: GpuSpec, compute: str) -> float:
    fp16 = gpu.bf16_tflops_dense or gpu.fp16_tflops_dense or 0.0
    value = {"fp8": gpu.fp8_tflops_dense, "int8": gpu.int8_tops_dense}.get(compute) or fp16
    return value * 1e12


def link_bytes_per_s(hw: Hardware) -> float:
    if hw.nvlink and hw.gpu.nvlink_gb_s:
        return hw.gpu.nvlink_gb_s / 2 * 1e9  # per direction
    gen = 5 if "Gen5" in hw.gpu.interconnect else 3 if "Gen3" in hw.gpu.interconnect else 4
    return _c(f"pcie_gen{gen}_gb_s") * 1e9


def allreduce_s(hw: Hardware, tokens: float, hidden: int, layers: int) -> float:
    """Two ring all-reduces a layer of tokens x hidden bf16 activations."""
    if hw.tp == 1:
        return 0.0
    latency = (
        _c("nvlink_allreduce_latency_us") if hw.nvlink else _c("pcie_allreduce_latency_us")
    ) * 1e-6
    size = tokens * hidden * 2
    per = latency + 2 * (hw.tp - 1) / hw.tp * size / link_bytes_per_s(hw)
    return 2 * layers * per


def decode_step_s(load: ModelLoad, hw: Hardware, batch: float, context: float) -> float:
    """Seconds for one decode step of ``batch`` sequences at ``context`` tokens on one stage."""
    touched = 1.0 - (1.0 - load.expert_fraction) ** max(batch, 1.0)
    weights = load.weight_bytes_per_gpu - load.expert_bytes_per_gpu * (1 - touched)
    kv = batch * context * load.kv_bytes_per_token_per_gpu
    t_mem = (weights + kv) / (hw.gpu.memory_bandwidth_gb_s * 1e9 * _c("bandwidth_efficiency"))
    layers = load.layers / hw.pp
    flops = (
        2 * load.active_params * batch / hw.pp + 4 * batch * context * load.attn_width * layers
    ) / hw.tp
    t_cmp = flops / (peak_flops(hw.gpu, hw.compute) * _c("decode_compute_efficiency"))
    overhead = (_c("step_overhead_ms") + _c("per_sequence_overhead_ms") * batch) * 1e-3
    return max(t_mem, t_cmp) + allreduce_s(hw, batch, load.hidden, math.ceil(layers)) + overhead


def prefill_s(load: ModelLoad, hw: Hardware, prompt: int) -> float:
    """Seconds to prefill one prompt (time to first token), all pipeline stages."""
    flops = (
        2 * load.active_params * prompt + 2 * prompt * prompt * load.attn_width * load.layers
    ) / hw.tp
    t_cmp = flops / (peak_flops(hw.gpu, hw.compute) * _c("prefill_compute_efficiency"))
    chunks = math.ceil(prompt / _c("prefill_chunk_tokens"))
    t_mem = (
        chunks
        * load.weight_bytes_per_gpu
        * hw.pp
        / (hw.gpu.memory_bandwidth_gb_s * 1e9 * _c("bandwidth_efficiency"))
    )
    net = (hw.pp - 1) * (
        _c("internode_latency_us") * 1e-6 + prompt * load.hidden * 2 / (_c("internode_gb_s") * 1e9)
    )
    return max(t_cmp, t_mem) + allreduce_s(hw, prompt, load.hidden, load.layers) + net


def token_latency_s(load: ModelLoad, hw: Hardware, batch: float, context: float) -> float:
    """Inter-token latency one stream sees with ``batch`` streams decoding."""
    stage = decode_step_s(load, hw, batch, context)
    net = (hw.pp - 1) * (
        _c("internode_latency_us") * 1e-6 + batch * load.hidden * 2 / (_c("internode_gb_s") * 1e9)
    )
    return hw.pp * stage + net if hw.pp > 1 else stage


def output_tokens_per_s(
    load: ModelLoad, hw: Hardware, batch: int, prompt: int, output: int
) -> float:
    """Output tokens a second of one replica serving ``batch`` requests of prompt+output tokens,
    with prefill and decode sharing the GPUs (pipeline stages work on micro-batches)."""
    context = prompt + output / 2
    if hw.pp > 1:
        micro = max(batch / hw.pp, 1.0)
        step = decode_step_s(load, hw, micro, context) * hw.pp / (batch / micro)
    else:
        step = decode_step_s(load, hw, batch, context) / batch  # GPU time per output token
    per_request = prefill_s(load, hw, prompt) / max(1, hw.pp) + output * step
    return output / per_request


def model_load(
    spec: ModelSpec,
    weight_bytes_per_gpu: float,
    expert_bytes_per_gpu: float,
    active_params: int,
    tp: int,
    pp: int,
    kv_cache_dtype: str,
) -> ModelLoad:
    per_layer, layers = kv_bytes_per_token(spec, tp, kv_cache_dtype)
    return ModelLoad(
        weight_bytes_per_gpu=weight_bytes_per_gpu, expert_bytes_per_gpu=expert_bytes_per_gpu,
        active_params=active_params,
        expert_fraction=(spec.experts_per_token / spec.num_experts) if spec.is_moe else 1.0,
        layers=spec.num_layers, hidden=spec.hidden_size,
        attn_width=spec.num_attention_heads * (spec.v_head_dim or spec.head_dim),
        kv_bytes_per_token_per_gpu=per_layer * math.ceil(layers / pp),
    )  # fmt: skip
