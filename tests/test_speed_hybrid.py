"""The speed model of hybrid and interleaved models (planner/decide/perf.py): recurrent layers
(Mamba-2, Gated DeltaNet) stream every decoding sequence's state in and out each step, only the
attention layers attend, and only the MoE layers pay the fused-MoE kernel cost."""

from __future__ import annotations

from dataclasses import replace

import pytest

from planner.decide import perf
from planner.model.recurrent import state_bytes_per_layer
from planner.model.sources import load_model_spec
from planner.offers.gpus import gpu_table

NEMOTRON = "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"


def _load(model: str, tp: int = 1) -> perf.ModelLoad:
    spec = load_model_spec(model)
    # the weight figures do not matter here: the shape-derived fields do
    return perf.model_load(spec, 30e9, 25e9, 3 * 10**9, tp, 1, "auto")


def _hw(tp: int = 1) -> perf.Hardware:
    return perf.Hardware(gpu_table()["h200-sxm"], tp, 1, "fp16", True)


def test_nemotron_h_counts_its_blocks_by_kind():
    # 52 blocks: 23 Mamba-2, 23 MoE, 6 attention (config.json hybrid_override_pattern); each
    # block is a mixer or an FFN, so a forward pass all-reduces once per block
    spec = load_model_spec(NEMOTRON)
    load = _load(NEMOTRON)
    assert (load.layers, load.attention_layers, load.moe_layers) == (52, 6, 23)
    assert load.sublayers == 52 and load.allreduce_layers == 26
    per_layer = state_bytes_per_layer(spec.recurrent, 1, spec.dtype)
    assert load.state_bytes_per_sequence == 23 * per_layer
    # at TP2 each GPU holds half the heads' states
    assert _load(NEMOTRON, 2).state_bytes_per_sequence < load.state_bytes_per_sequence


def test_every_decode_step_reads_and_writes_back_each_sequences_recurrent_state():
    load, hw = _load(NEMOTRON), _hw()
    stateless = replace(load, state_bytes_per_sequence=0.0)
    bandwidth = hw.gpu.streaming_gb_s * 1e9 * perf.constant("bandwidth_efficiency")
    for batch in (1, 64, 512):
        extra = perf.decode_step_s(load, hw, batch, 2048) - perf.decode_step_s(
            stateless, hw, batch, 2048
        )
        assert extra == pytest.approx(2 * batch * load.state_bytes_per_sequence / bandwidth)


def test_only_the_attention_layers_pay_prefill_attention():
    load = _load(NEMOTRON)
    everywhere = replace(load, attention_layers=0)  # 0: every layer attends
    assert load.prefill_attention_flops(8192, 1, 1) * 52 == pytest.approx(
        everywhere.prefill_attention_flops(8192, 1, 1) * 6
    )
    assert perf.prefill_s(load, _hw(), 32768) < perf.prefill_s(everywhere, _hw(), 32768)


def test_interleaved_moe_pays_the_moe_kernel_cost_only_in_its_moe_layers():
    # Llama 4 Maverick: routed experts in every second layer (interleave_moe_layer_step 2)
    maverick = _load("meta-llama/Llama-4-Maverick-17B-128E-Instruct", 8)
    scout = _load("meta-llama/Llama-4-Scout-17B-16E-Instruct", 8)
    assert (maverick.layers, maverick.moe_layers) == (48, 24)
    assert (scout.layers, scout.moe_layers) == (48, 48)
    # ordinary decoder layers: an attention and an FFN all-reduce each, no recurrent state
    assert scout.allreduce_layers == 48 and scout.state_bytes_per_sequence == 0


def test_a_dense_model_is_unchanged_by_the_hybrid_terms():
    load = _load("meta-llama/Llama-3.1-8B-Instruct")
    assert (load.attention_layers, load.moe_layers, load.sublayers) == (32, 0, 64)
    assert load.state_bytes_per_sequence == 0
    plain = replace(load, attention_layers=0, sublayers=0)
    assert perf.decode_step_s(load, _hw(2), 64, 4096) == perf.decode_step_s(plain, _hw(2), 64, 4096)
