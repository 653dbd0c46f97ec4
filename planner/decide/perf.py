"""Roofline speed model of vLLM serving (pure).

Decode: each step reads the GPU's share of the weights (for MoE, the experts a batch of B tokens
touches: 1 - (1 - k/E)^B of them) and the batch's KV cache, and does 2 x active-params FLOPs a
token (the input embedding is a lookup, not a matmul); the weight GEMMs take the longer of their
memory and compute times, then attention the longer of its KV reads (paged blocks: a lower share
of the bandwidth than the weights' streaming reads) and FLOPs, plus tensor-parallel all-reduces
(latency + bandwidth per link type: NVLink, AMD Infinity Fabric, PCIe ring, plus the engine's
cost per all-reduce), hybrid models' recurrent states (read and written back by every decode
step), a fixed step cost, a per-MoE-layer kernel cost and, when an API server streams the
tokens, a small per-sequence host cost, which vLLM's async scheduling (default since v0.14)
overlaps with the GPU work (older engines pay theirs in turn with the GPU: Hardware.engine).
Weight-only kernels (Marlin: AWQ/GPTQ, and FP8/FP4 below their native GPUs) dequantize on the
fly: their matmuls reach a lower share of the tensor peak. Block-scaled FP8 routed experts
(DeepSeek-V3 style) run in vLLM's block-FP8 fused-MoE kernels, which stream the experts and
reach the peak at a fraction of what other fused-MoE kernels do.
Prefill (time to first token) is compute bound plus a fixed per-request cost; the LM head runs
for the last prompt token only, routed experts run at the fused-MoE kernels' share of the peak,
and attention at its own share of the 16-bit peak (also under FP8 weights). With tensor parallel
each all-reduce of a lone prompt's prefill also pays an eager collective's cost (fitted; V0 ran
prefill without CUDA graphs, V1 in piecewise graphs up to its capture sizes: perf_calibration.json).
Sliding-window and chunked attention layers (gpt-oss, Gemma 3, Llama 4) are charged the whole
context like full ones, the measured and conservative choice (README, known biases).
Aggregate throughput shares GPU time between prefill and decode; the per-request host cost
overlaps with the GPU under load and is not charged to it, unless the host is the slower of the
two. A published throughput figure is usually a finite benchmark run (planner/decide/benchrun.py
models its queue, prefills and drain). The API server is one process (github.com/vllm-project/
vllm/issues/12705): requests' host work queues there, which caps a replica's request rate.

The constants (planner/decide/data/perf_calibration.json) are fitted to throughput_calibration.json;
`python benchmarks/speed_accuracy.py` prints the errors (`--fit` refits and writes them).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from planner.model.footprint import default_batched_tokens
from planner.model.kvcache import hybrid_layout, kv_bytes_per_token
from planner.model.tensor_parallel import expert_gpus
from planner.model.values import ModelSpec
from planner.offers.gpus import GpuSpec


@cache
def calibration() -> dict[str, Any]:
    text = (
        resources.files("planner.decide.data").joinpath("perf_calibration.json").read_text("utf-8")
    )
    return json.loads(text)


def constant(name: str) -> float:
    """A calibrated constant's value (perf_calibration.json)."""
    return float(calibration()["constants"][name]["value"])


@dataclass(frozen=True, slots=True)
class ModelLoad:
    """What one GPU of a layout holds and computes, independent of the batch."""

    weight_bytes_per_gpu: float  # non-expert + all expert bytes on one GPU (one pipeline stage)
    expert_bytes_per_gpu: float  # the routed-expert part of the above
    active_params: int  # parameters one token uses (whole model, embedding table included)
    expert_fraction: float  # k / E, or 1 for dense models
    layers: int
    hidden: int
    attn_width: int  # heads x value head dim: the PV side of attention (and QK unless below)
    kv_bytes_per_token_per_gpu: int  # over the GPU's layers
    moe_layers: int = 0  # layers with routed experts (each adds MoE kernel costs)
    weight_only: bool = False  # narrower weights than the math (Marlin): dequantizing kernels
    # Routed experts in block-scaled FP8 (one scale per 128x128 block, DeepSeek-V3 style) run by
    # vLLM's block-FP8 fused-MoE kernels, which stream the experts and reach the tensor peak
    # less well than per-tensor FP8 or 16-bit fused MoE (block_fp8_moe_bandwidth_factor,
    # block_fp8_moe_compute_factor). Below native-FP8 GPUs vLLM runs them through Marlin
    # (weight-only): tp026, Qwen3-235B-A22B-FP8 (block-scaled) on 4x A100, ran as fast as
    # modelled without the factors (+18% as FP8; -63% with them), but without them a 2-node A100
    # pipeline showed 50 tok/s per DeepSeek-R1 stream against 34 on one 8x H200 node: the
    # factors apply there too (on the side of not over-promising; no calibration figure moves).
    block_fp8_moe: bool = False
    # The input embedding is a table lookup, not a matmul (when untied, its own matrix: no
    # FLOPs); the LM head is a vocab x hidden matmul that a prefill runs for the last prompt
    # token only (vLLM computes logits only where it samples).
    lookup_params: int = 0
    lm_head_params: int = 0
    # MLA (DeepSeek-V2/V3): prefill attends with decompressed heads, scores over the
    # nope + rope query/key dims (192), values over v_head_dim (128); decode runs the absorbed
    # form, every head scoring and summing over the shared latent (kv_lora_rank + rope, 576,
    # for scores; kv_lora_rank, 512, for values). 0: the PV width (ordinary attention).
    qk_width: int = 0  # heads x query/key head dim in prefill
    decode_qk_width: int = 0  # heads x the dims decode attention scores over
    decode_pv_width: int = 0  # heads x the dims decode attention sums values over
    # Hybrid models (Nemotron-H, Qwen3-Next): only some layers attend (0: all of them); each
    # sequence's recurrent state (Mamba-2 / Gated DeltaNet conv + SSM state, over the GPU's
    # layers) is read and written back by every decode step, in place (vLLM's
    # selective_state_update / fused recurrent kernels); and a Nemotron-H block is a mixer or
    # an FFN, not both, so a forward pass all-reduces once per block (sublayers: the TP
    # all-reduces of a forward pass; 0: two per layer).
    attention_layers: int = 0
    state_bytes_per_sequence: float = 0.0
    sublayers: int = 0
    moe_dp: int = 1  # data-parallel replicas sharing the MoE layers (moe_dp_exchange_s)

    @property
    def attending_layers(self) -> int:
        return self.attention_layers or self.layers

    @property
    def allreduce_layers(self) -> float:
        """Layers' worth of all-reduces (two each) a forward pass runs."""
        return self.sublayers / 2 if self.sublayers else float(self.layers)

    @property
    def matmul_params(self) -> int:
        """Parameters a decoded token multiplies (LM head included)."""
        return self.active_params - self.lookup_params

    def prefill_flops(self, prompt: float, requests: float, tp: int) -> float:
        """Weight-matmul FLOPs of prefilling ``requests`` prompts of ``prompt`` tokens on one of
        tp GPUs: the layers for every token, the LM head once a prompt."""
        body = self.matmul_params - self.lm_head_params
        return (2 * body * prompt * requests + 2 * self.lm_head_params * requests) / tp

    def prefill_attention_flops(self, prompt: float, requests: float, tp: int) -> float:
        """Causal attention FLOPs of those prompts (prompt^2 / 2 query-key pairs a layer, 2 FLOPs
        a pair for the scores over the QK width and 2 for the values over the PV width), which
        run in 16-bit whatever the weights' format."""
        return requests * prompt**2 * self.prefill_width * self.attending_layers / tp

    @property
    def prefill_width(self) -> int:
        """QK plus PV width of prefill attention (2 x heads x head_dim without MLA)."""
        return (self.qk_width or self.attn_width) + self.attn_width

    def decode_attention_flops(self, batch: float, context: float, layers: float, tp: int) -> float:
        """Attention FLOPs of one decode step: scores and values over the whole context."""
        width = (self.decode_qk_width or self.attn_width) + (
            self.decode_pv_width or self.attn_width
        )
        return 2 * batch * context * width * layers / tp


@dataclass(frozen=True, slots=True)
class Hardware:
    gpu: GpuSpec
    tp: int
    pp: int
    compute: str  # fp16 | fp8 | int8: which peak the matmuls run at
    nvlink: bool  # GPUs of a node talk over NVLink/NVSwitch rather than PCIe
    # The engine prepares step n+1 on the CPU while the GPU runs step n (vLLM's async
    # scheduling, on by default since v0.14.0: github.com/vllm-project/vllm/releases/tag/v0.14.0).
    # The generated projects run a later vLLM, so the planner's estimates assume it.
    async_scheduling: bool = True
    # The measured engine's host design (calibration data only; the generated projects run a
    # later vLLM): "v1" (the default engine since v0.8.0), "v0" (v0.6-v0.7) or "pre-0.6".
    # vLLM's profile of Llama 3 8B on one H100 under v0.5.3 found the GPU busy 38% of the time:
    # the HTTP API server 33%, scheduling 29% (blog.vllm.ai/2024/09/05/perf-update.html). Before
    # v0.6 the API server shared the engine's process and scheduling and output processing ran
    # in turn with the GPU: a host cost per sequence and step (legacy_per_sequence_overhead_ms)
    # never overlapped, offline (the LLM class, no API server) its scheduling share, 29 / 62.
    # v0.6 moved the API server to its own process and overlapped output processing; the V0
    # scheduler still ran in turn with the GPU: its share, 29 / 62, online and offline.
    engine: str = "v1"
    # V0's multi-step scheduling (--num-scheduler-steps n, v0.6-v0.9): the engine schedules once,
    # then runs n forward steps without the host (github.com/vllm-project/vllm/pull/7000, RFC
    # 6854): V0's in-turn host cost is paid once every n steps. Calibration data only.
    scheduler_steps: int = 1


# Scheduling's share of an older vLLM's host work: 29% of the time against the API server's
# 33% in vLLM's profile of v0.5.3 (blog.vllm.ai/2024/09/05/perf-update.html; Hardware.engine).
V0_SCHEDULING_SHARE = 29 / (29 + 33)


def peak_flops(gpu: GpuSpec, compute: str) -> float:
    fp16 = gpu.bf16_tflops_dense or gpu.fp16_tflops_dense or 0.0
    value = {"fp8": gpu.fp8_tflops_dense, "int8": gpu.int8_tops_dense}.get(compute) or fp16
    return value * 1e12 * gpu.matmul_scale(compute)  # as measured, where measured


def link_kind(hw: Hardware) -> str:
    """How the GPUs of a node talk: nvlink | xgmi (AMD Infinity Fabric) | pcie."""
    if hw.nvlink:
        return "nvlink"
    if "Infinity Fabric" in hw.gpu.interconnect or "xGMI" in hw.gpu.interconnect:
        return "xgmi"
    return "pcie"


def link_bytes_per_s(hw: Hardware) -> float:
    kind = link_kind(hw)
    if kind == "nvlink" and hw.gpu.nvlink_gb_s:
        return hw.gpu.nvlink_gb_s / 2 * 1e9  # per direction
    if kind == "xgmi":
        return constant("xgmi_gb_s") * 1e9
    gen = 5 if "Gen5" in hw.gpu.interconnect else 3 if "Gen3" in hw.gpu.interconnect else 4
    return constant(f"pcie_gen{gen}_gb_s") * 1e9


def allreduce_s(hw: Hardware, tokens: float, hidden: int, layers: float) -> float:
    """Two all-reduces a layer of tokens x hidden bf16 activations (ring: 2(n-1)/n of the data
    over the link), each with the link's fixed latency plus the engine's own cost around every
    all-reduce (engine_allreduce_overhead_us: one fitted constant for CUDA's stack, one for
    ROCm's). NVLink/NVSwitch and AMD Infinity Fabric connect every pair directly (one-shot
    all-reduce): one latency, from collective benchmarks. Over PCIe, beyond two GPUs vLLM leaves
    its custom all-reduce off and runs NCCL's ring (vllm/distributed/device_communicators/
    custom_all_reduce.py: "not supported on more than two PCIe-only GPUs"), whose 2(n-1) steps
    each pay the link latency (NCCL src/graph/tuning.cc: ring latency = base + 2(n-1) x hwLat):
    the constant is what each added GPU brings, an effective value chosen on serving
    measurements (benchmarks/speed_accuracy.py HELD_SOURCES says how; a bare NCCL all-reduce is
    faster). At TP2 with peer-to-peer vLLM runs its own one-shot all-reduce instead; that it costs
    the same one latency is an assumption. Cards without PCIe peer-to-peer (GpuSpec.pcie_p2p;
    gpus.json says which, with sources) stage each step through host memory, two PCIe crossings
    instead of one: twice the latency, an assumption (the bandwidth term stays: each GPU's link
    still carries its share once each way)."""
    if hw.tp == 1:
        return 0.0
    size = tokens * hidden * 2
    per = _collective_latency_s(hw, hw.tp) + 2 * (hw.tp - 1) / hw.tp * size / link_bytes_per_s(hw)
    return 2 * layers * per


def _collective_latency_s(hw: Hardware, gpus: int) -> float:
    """Fixed cost of one collective over ``gpus`` GPUs of the node (allreduce_s says how)."""
    kind = link_kind(hw)
    steps = (gpus - 1) * (1 if hw.gpu.pcie_p2p else 2) if kind == "pcie" else 1.0
    return (
        constant(f"{kind}_allreduce_latency_us") * steps + engine_allreduce_overhead_us(kind)
    ) * 1e-6


def moe_dp_exchange_s(load: ModelLoad, hw: Hardware, tokens: float) -> float:
    """Data-parallel replicas of an MoE model on one node share its MoE layers: vLLM shards the
    routed experts over all tp x dp GPUs (FusedMoEParallelConfig.make flattens TP across DP,
    vllm/model_executor/layers/fused_moe/config.py), so each MoE layer all-gathers all the
    replicas' ``tokens`` over the DP group and reduce-scatters the outputs (AgRsAll2AllManager;
    the TP all-reduce is allreduce_s's): two collectives of the ring's share of the data each,
    at the link's latency and bandwidth. Not calibrated: no published measurement runs it."""
    if load.moe_dp <= 1 or not load.moe_layers:
        return 0.0
    gpus = load.moe_dp
    size = tokens * load.hidden * 2
    per = 2 * _collective_latency_s(hw, gpus) + 2 * (gpus - 1) / gpus * size / link_bytes_per_s(hw)
    return load.moe_layers / hw.pp * per


def engine_allreduce_overhead_us(kind: str) -> float:
    """The engine's own cost around one all-reduce (synchronisation, the fused residual/norm
    kernels, the graph's launch of them), beyond the link's latency: one fitted constant for
    CUDA's stack (NVLink and PCIe alike) and one for ROCm's (AMD Infinity Fabric), fitted on the
    AMD sources. ROCm's kernels and HIP graphs are not CUDA's: with one constant for both, set
    mostly by the CUDA sources, AMD's measurements were predicted 22-28% fast at batch 1 and
    18-33% slow at full batch out of sample (with xgmi_gb_s, now fitted too, the link's
    bandwidth share, both fall within the others' error)."""
    return constant("xgmi_allreduce_overhead_us" if kind == "xgmi" else "allreduce_overhead_us")


def chunk_tokens(hw: Hardware) -> int:
    """Prompt tokens a step prefills at most (chunked prefill's max_num_batched_tokens): vLLM's
    default for the card, which the generated projects keep (footprint.default_batched_tokens:
    8192 on cards of 70 GiB or more but A100s, 2048 elsewhere), as the memory model does."""
    return default_batched_tokens(hw.gpu.usable_memory_bytes, hw.gpu.name)


def decode_step_s(
    load: ModelLoad,
    hw: Hardware,
    batch: float,
    context: float,
    online: bool = True,
    prefill_tokens: float = 0.0,
    prompt: float = 0.0,
) -> float:
    """Seconds for one decode step of ``batch`` sequences at ``context`` tokens on one stage.
    ``online``: an OpenAI-API server streams every sequence's token each step (detokenize,
    serialise, send), a per-sequence cost the offline LLM class does not pay.
    ``prefill_tokens`` of prompts ``prompt`` tokens long ride in the same step (chunked
    prefill): they share its weight read and add their FLOPs and activations."""
    dp = load.moe_dp  # replicas whose tokens this GPU's experts also run (moe_dp_exchange_s)
    touched = _touched(load, (batch + prefill_tokens) * dp)
    if prefill_tokens and prompt:
        # Prompts arrive whole, not spread over the steps: a chunk of one prompt (up to the
        # scheduler's token budget) rides in a share of the steps, and only those steps read
        # the experts the chunk's tokens touch; the others read what the decode batch touches.
        chunk = max(min(prompt, chunk_tokens(hw)), prefill_tokens)
        share = prefill_tokens / chunk
        touched = (1 - share) * _touched(load, batch * dp)
        touched += share * _touched(load, (batch + chunk) * dp)
    weights = load.weight_bytes_per_gpu - load.expert_bytes_per_gpu * (1 - touched)
    if load.block_fp8_moe:  # the touched experts stream at the block kernels' lower rate
        weights += (
            load.expert_bytes_per_gpu
            * touched
            * (1 / constant("block_fp8_moe_bandwidth_factor") - 1)
        )
    kv = batch * context * load.kv_bytes_per_token_per_gpu
    bandwidth = hw.gpu.streaming_gb_s * 1e9 * constant("bandwidth_efficiency")
    layers = load.attending_layers / hw.pp
    peak = peak_flops(hw.gpu, hw.compute) * _compute_efficiency(load, "decode")
    # The weight GEMMs and the attention over the KV cache are separate kernels that run one
    # after the other: each is bound by its own bytes or FLOPs, and their times add.
    pre_peak = peak_flops(hw.gpu, hw.compute) * _compute_efficiency(load, "prefill")
    flops_s = 2 * load.matmul_params / hw.pp / hw.tp * (batch / peak + prefill_tokens / pre_peak)
    t_gemm = max(weights / bandwidth, flops_s)
    # Paged decode attention reads KV blocks through a block table, per sequence and KV head:
    # a lower share of the bandwidth than the weights' long streaming reads.
    kv_bandwidth = hw.gpu.streaming_gb_s * 1e9 * constant("attention_bandwidth_efficiency")
    t_attn = max(
        kv / kv_bandwidth, load.decode_attention_flops(batch, context, layers, hw.tp) / peak
    )
    attn_peak = peak_flops(hw.gpu, "fp16") * constant("prefill_attention_efficiency")
    t_attn += prefill_tokens * prompt * load.prefill_width * layers / hw.tp / attn_peak
    in_turn = hw.engine != "v1" or not hw.async_scheduling
    if hw.engine != "v1":  # before v0.6 the API server's share too, when it runs one
        share = 1.0 if hw.engine == "pre-0.6" and online else V0_SCHEDULING_SHARE
        # per-token host work (output processing, streaming) and the engine loop's own, once a
        # step whatever the batch
        host = constant("legacy_per_sequence_overhead_ms") * batch + constant(
            "legacy_step_overhead_ms"
        )
        host *= share * 1e-3 / hw.scheduler_steps
    else:
        host = (constant("per_sequence_overhead_ms") if online else 0.0) * batch * 1e-3
    # recurrent states: each decoding sequence's read and written back, streamed whole
    t_state = 2 * batch * load.state_bytes_per_sequence / hw.pp / bandwidth
    tokens = batch + prefill_tokens
    reduces = math.ceil(load.allreduce_layers / hw.pp)
    gpu = t_gemm + t_attn + t_state + allreduce_s(hw, tokens, load.hidden, reduces)
    gpu += moe_dp_exchange_s(load, hw, tokens * dp)  # the other replicas as busy as this one
    gpu += constant("step_overhead_ms") * 1e-3
    gpu += constant("moe_layer_overhead_us") * 1e-6 * load.moe_layers / hw.pp
    # With async scheduling the host work of one step overlaps the GPU work of the next.
    return gpu + host if in_turn else max(gpu, host)


def _touched(load: ModelLoad, tokens: float) -> float:
    """Share of the routed experts that ``tokens`` tokens of one step touch (top-k of E each,
    independent): 1 - (1 - k/E)^tokens; 1 for dense models."""
    return 1.0 - (1.0 - load.expert_fraction) ** max(tokens, 1.0)


def _compute_efficiency(load: ModelLoad, phase: str) -> float:
    # Routed-expert GEMMs (fused MoE) reach another share of the peak than dense ones.
    moe = "moe_" if load.moe_layers else ""
    eff = constant(f"{moe}{phase}_compute_efficiency")
    if load.block_fp8_moe:
        eff *= constant("block_fp8_moe_compute_factor")
    return eff * constant("weight_only_compute_factor") if load.weight_only else eff


def _prefill_compute_s(load: ModelLoad, hw: Hardware, prompt: float, requests: float) -> float:
    """The weight matmuls at the format's peak and efficiency, then attention (FlashAttention
    kernels, 16-bit) at its own share of the 16-bit peak."""
    gemm = load.prefill_flops(prompt, requests, hw.tp) / (
        peak_flops(hw.gpu, hw.compute) * _compute_efficiency(load, "prefill")
    )
    attention = load.prefill_attention_flops(prompt, requests, hw.tp) / (
        peak_flops(hw.gpu, "fp16") * constant("prefill_attention_efficiency")
    )
    return gemm + attention


def prefill_s(load: ModelLoad, hw: Hardware, prompt: int) -> float:
    """Seconds to prefill one prompt (time to first token), all pipeline stages."""
    t_cmp = _prefill_compute_s(load, hw, prompt, 1)
    chunks = math.ceil(prompt / chunk_tokens(hw))
    t_mem = (
        chunks
        * load.weight_bytes_per_gpu
        * hw.pp
        / (hw.gpu.streaming_gb_s * 1e9 * constant("bandwidth_efficiency"))
    )
    net = (hw.pp - 1) * (
        constant("internode_latency_us") * 1e-6
        + prompt * load.hidden * 2 / (constant("internode_gb_s") * 1e9)
    )
    fixed = constant("request_overhead_ms") * 1e-3  # tokenize, schedule, first sampling, detokenize
    reduces = allreduce_s(hw, prompt, load.hidden, load.allreduce_layers)
    if hw.tp > 1:  # eager collectives (module docstring)
        reduces += 2 * load.allreduce_layers * constant("prefill_allreduce_overhead_us") * 1e-6
    reduces += moe_dp_exchange_s(load, hw, prompt + load.moe_dp - 1)  # idle: a dummy token each
    return max(t_cmp, t_mem) + reduces + net + fixed


def token_latency_s(load: ModelLoad, hw: Hardware, batch: float, context: float) -> float:
    """Inter-token latency one stream sees with ``batch`` streams decoding. With pipeline
    parallel the batch runs as pp micro-batches: a stream's next token comes after each stage
    has stepped every micro-batch once."""
    if hw.pp == 1:
        return decode_step_s(load, hw, batch, context)
    micro = max(batch / hw.pp, 1.0)
    net = (hw.pp - 1) * (
        constant("internode_latency_us") * 1e-6
        + micro * load.hidden * 2 / (constant("internode_gb_s") * 1e9)
    )
    return hw.pp * decode_step_s(load, hw, micro, context) + net


def batched_prefill_s(
    load: ModelLoad,
    hw: Hardware,
    prompt: float,
    requests: float,
    max_batched_tokens: int | None = None,
) -> float:
    """GPU seconds to prefill ``requests`` prompts of ``prompt`` tokens when the server batches
    them (chunked prefill): compute bound, the weights read once a chunk, activations all-reduced.
    The fixed per-request cost of prefill_s (tokenize, schedule, detokenize) is host work that
    overlaps with the GPU under load, so throughput does not pay it. ``max_batched_tokens``:
    the server's max_num_batched_tokens when a benchmark sets it (default: chunk_tokens)."""
    tokens = prompt * requests
    t_cmp = _prefill_compute_s(load, hw, prompt, requests)
    chunks = math.ceil(tokens / (max_batched_tokens or chunk_tokens(hw)))
    t_mem = (
        chunks
        * load.weight_bytes_per_gpu
        / (hw.gpu.streaming_gb_s * 1e9 * constant("bandwidth_efficiency"))
    )
    t_net = allreduce_s(hw, tokens, load.hidden, load.allreduce_layers // hw.pp)
    return (max(t_cmp, t_mem) + t_net) / hw.pp


def loaded_ttft_s(load: ModelLoad, hw: Hardware, batch: float, prompt: int, output: int) -> float:
    """Time to first token with ``batch`` streams in flight: the prompt's prefill, plus the
    other streams' step (loaded_token_latency_s, their own arriving prompts riding in it) for
    each step that carries one of its chunks (chunked prefill schedules both together), plus
    half a step's wait for the running one. Not fitted: benchmarks/ttft_accuracy.py scores it
    on published runs under load."""
    alone = prefill_s(load, hw, prompt)
    if batch <= 1:
        return alone
    # the others' steps as the speed model has them (their own arriving prompts ride in them;
    # with pipeline parallel, through every stage)
    others = loaded_token_latency_s(load, hw, batch - 1, prompt, output)
    return alone + (math.ceil(prompt / chunk_tokens(hw)) + 0.5) * others


def loaded_token_latency_s(
    load: ModelLoad, hw: Hardware, batch: float, prompt: int, output: int, online: bool = True
) -> float:
    """Time between a stream's tokens as a serving benchmark reports it (TPOT) with ``batch``
    streams in flight that each restart after ``output`` tokens: while one stream produces its
    output, the server also prefills about ``batch`` new prompts in the same steps (chunked
    prefill): every step also carries batch x prompt / output prompt tokens, which share the
    step's weight read and add their compute. Online, one API-server process does each
    request's host work in turn (github.com/vllm-project/vllm/issues/12705): ``batch`` streams
    finishing every ``output`` tokens cannot restart faster than it serves them, so a token
    takes at least batch x request_overhead_ms / output (binding short outputs at large batch).
    """
    context = prompt + output / 2
    if hw.pp > 1:  # micro-batches through the stages; each arriving prompt prefilled apart
        step = token_latency_s(load, hw, batch, context)
        if batch > 1:
            step += batch * batched_prefill_s(load, hw, prompt, 1) / max(output, 1)
    else:
        extra = batch * prompt / max(output, 1) if batch > 1 else 0.0
        step = decode_step_s(load, hw, batch, context, online, extra, prompt)
    api = batch * constant("request_overhead_ms") * 1e-3 / max(output, 1) if online else 0.0
    return max(step, api)


def output_tokens_per_s(
    load: ModelLoad, hw: Hardware, batch: int, prompt: int, output: int
) -> float:
    """Output tokens a second of one replica serving ``batch`` requests of prompt+output tokens
    in steady state, with prefill and decode sharing the GPUs: ``batch`` streams each at the
    loaded TPOT (the prompts of the requests that replace finished ones ride in the steps, and
    the API server's turn per request bounds it). With pipeline parallel that is the full
    pipeline's rate only when at least pp micro-batches are in flight: one stream waits for
    every stage in turn. One stream also waits for its own prompt between requests (TPOT
    leaves it out)."""
    if batch <= 1:
        step = token_latency_s(load, hw, 1, prompt + output / 2)
        return output / (prefill_s(load, hw, prompt) + max(output - 1, 0) * step)  # 1st: prefill's
    return batch / loaded_token_latency_s(load, hw, batch, prompt, output)


def model_load(
    spec: ModelSpec,
    weight_bytes_per_gpu: float,
    expert_bytes_per_gpu: float,
    active_params: int,
    tp: int,
    pp: int,
    kv_cache_dtype: str,
    weight_only: bool = False,
    block_scaled: bool = False,
    moe_dp: int = 1,
) -> ModelLoad:
    """``block_scaled``: the weights are block-scaled FP8 (fp8-block); with routed experts they
    run at the block-FP8 fused-MoE factors, under native FP8 math and, as an assumption, under
    Marlin below it (ModelLoad.block_fp8_moe)."""
    per_layer, layers = kv_bytes_per_token(spec, tp, kv_cache_dtype)
    kinds = [(spec.mixer_kind(i), spec.ffn_kind(i)) for i in range(spec.num_layers)]
    hybrid = hybrid_layout(spec, tp, kv_cache_dtype)
    state = hybrid.state_bytes_unpadded if hybrid else 0  # streamed as is, not as paged
    head = spec.vocab_size * spec.hidden_size
    heads = spec.num_attention_heads
    return ModelLoad(
        weight_bytes_per_gpu=weight_bytes_per_gpu, expert_bytes_per_gpu=expert_bytes_per_gpu,
        active_params=active_params,
        expert_fraction=(spec.experts_per_token / spec.num_experts) if spec.is_moe else 1.0,
        layers=spec.num_layers, hidden=spec.hidden_size,
        attn_width=heads * (spec.v_head_dim or spec.head_dim),
        qk_width=heads * (spec.qk_nope_head_dim + spec.qk_rope_head_dim) if spec.is_mla else 0,
        decode_qk_width=heads * (spec.kv_lora_rank + spec.qk_rope_head_dim) if spec.is_mla else 0,
        decode_pv_width=heads * spec.kv_lora_rank if spec.is_mla else 0,
        kv_bytes_per_token_per_gpu=per_layer * math.ceil(layers / pp),
        moe_layers=sum(f == "moe" for _, f in kinds), weight_only=weight_only,
        attention_layers=spec.attention_layer_count, state_bytes_per_sequence=state / pp,
        sublayers=sum((m != "none") + (f != "none") for m, f in kinds),
        block_fp8_moe=block_scaled and spec.is_moe,
        lookup_params=0 if spec.tie_word_embeddings else head,
        lm_head_params=head, moe_dp=expert_gpus(spec, tp, moe_dp) // tp,
    )  # fmt: skip
