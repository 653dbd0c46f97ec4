"""Quantization formats: how many bytes each weight takes, what stays unquantized, and what
vLLM calls the format.

Byte layouts follow the checkpoint formats as stored on the Hugging Face Hub:
- AWQ (AutoAWQ GEMM): ``qweight`` int32 [in, out/8], ``qzeros`` int32 [in/g, out/8],
  ``scales`` fp16 [in/g, out].
- GPTQ (AutoGPTQ / GPTQModel): ``qweight`` int32 [in/8, out], ``qzeros`` int32 [in/g, out/8],
  ``scales`` fp16 [in/g, out], ``g_idx`` int32 [in].
- compressed-tensors W4A16 (pack-quantized, symmetric): ``weight_packed`` int32 [out, in/8],
  ``weight_scale`` bf16 [out, in/g], ``weight_shape`` int64 [2].
- FP8: e4m3 weights with fp32 scales per tensor, per output channel, or per 128x128 block
  (``weight_scale_inv``, DeepSeek-V3 / Qwen3-FP8); static checkpoints add an fp32 ``input_scale``.
- NVFP4 (ModelOpt): packed uint8 [out, in/2], fp8 ``weight_scale`` per 16 values, fp32
  ``weight_scale_2`` and ``input_scale``.
- MXFP4 (gpt-oss): packed uint8 ``*_blocks`` (2 values a byte) and uint8 E8M0 ``*_scales`` per 32.
- GGUF: llama.cpp blocks; bytes per block from ``gguf.GGML_QUANT_SIZES``.
Modules that stay in the float dtype: embeddings, lm_head, norms, MoE routers and biases
(and whatever a checkpoint's ignore list names).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

from planner.errors import UsageError, did_you_mean
from planner.model.values import ModelSpec, QuantConfig, Tensor

LINEAR_ROLES = frozenset(
    {"attn_q", "attn_kv", "attn_o", "attn_latent", "mlp", "expert", "shared_expert"}
)
FLOAT_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}

# llama.cpp block sizes: (values per block, bytes per block), from gguf.GGML_QUANT_SIZES
# (copied so that `gpuplan footprint` need not import numpy through gguf).
GGML_BLOCKS: dict[str, tuple[int, int]] = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2),
    "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24),
    "Q8_0": (32, 34), "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144),
    "Q5_K": (256, 176), "Q6_K": (256, 210), "IQ4_NL": (32, 18),
}  # fmt: skip
# When a row does not divide into 256-value super-blocks llama.cpp falls back to these.
GGML_FALLBACK = {"Q2_K": "IQ4_NL", "Q3_K": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


@dataclass(frozen=True, slots=True)
class QuantFormat:
    """A storage format for weights. ``kind`` selects the byte layout in ``linear_bytes``."""

    name: str
    kind: str  # float | fp8 | int8 | awq | gptq | w4a16 | nvfp4 | mxfp4 | gguf
    description: str
    bits: float  # nominal bits per weight before scales
    scale: str = "none"  # none | tensor | channel | block | group
    group_size: int | None = None
    block: tuple[int, int] | None = None
    quantized_roles: frozenset[str] = LINEAR_ROLES
    vllm_quantization: str | None = None  # value for `vllm serve --quantization`, if any
    gguf_base: str | None = None  # base GGML type for GGUF mixes
    gguf_more_bits: str | None = None  # type for attn_v / ffn_down on "more bits" layers
    quality_note: str = ""
    estimate: bool = False  # True when the layout is approximated, not exact


_QUALITY_INT4 = (
    "int4 weight-only: typically ~1-3% lower on benchmarks than BF16 for 7B+ models, "
    "more for small models (Red Hat / Neural Magic, 'We ran over half a million "
    "evaluations on quantized LLMs', 2024)"
)
_QUALITY_FP8 = (
    "FP8 W8A8: within ~1% of BF16 on standard benchmarks (Red Hat / Neural Magic evaluations, 2024)"
)

FORMATS: dict[str, QuantFormat] = {
    f.name: f
    for f in [
        QuantFormat("fp32", "float", "32-bit float (vLLM serves FP32 checkpoints as BF16 unless "
                    "--dtype float32)", 32),
        QuantFormat("bf16", "float", "bfloat16, the usual released precision", 16,
                    quality_note="reference quality"),
        QuantFormat("fp16", "float", "float16 (for GPUs without BF16, compute capability < 8.0)",
                    16, quality_note="same as BF16 for inference"),
        QuantFormat("fp8", "fp8", "FP8 e4m3 weights, one fp32 scale per tensor (vLLM online "
                    "--quantization fp8, ModelOpt FP8)", 8, scale="tensor",
                    vllm_quantization="fp8", quality_note=_QUALITY_FP8),
        QuantFormat("fp8-channel", "fp8", "FP8 e4m3 weights, bf16 scale per output channel "
                    "(compressed-tensors FP8-dynamic)", 8, scale="channel",
                    quality_note=_QUALITY_FP8),
        QuantFormat("fp8-block", "fp8", "FP8 e4m3 weights, fp32 scale per 128x128 block "
                    "(DeepSeek-V3, Qwen3-FP8)", 8, scale="block", block=(128, 128),
                    quality_note=_QUALITY_FP8),
        QuantFormat("int8", "int8", "INT8 W8A8, fp32 scale per output channel "
                    "(compressed-tensors)", 8, scale="channel",
                    quality_note="INT8 W8A8: within ~1-2% of BF16 (Red Hat evaluations, 2024)"),
        QuantFormat("awq", "awq", "AWQ int4, group 128, with zero points (AutoAWQ GEMM)", 4,
                    scale="group", group_size=128, vllm_quantization="awq",
                    quality_note=_QUALITY_INT4),
        QuantFormat("gptq", "gptq", "GPTQ int4, group 128 (AutoGPTQ/GPTQModel)", 4,
                    scale="group", group_size=128, vllm_quantization="gptq",
                    quality_note=_QUALITY_INT4),
        QuantFormat("w4a16", "w4a16", "int4 weight-only, group 128, symmetric "
                    "(compressed-tensors pack-quantized)", 4, scale="group", group_size=128,
                    quality_note=_QUALITY_INT4),
        QuantFormat("nvfp4", "nvfp4", "NVFP4: FP4 e2m1 with an FP8 scale per 16 values "
                    "(ModelOpt); native on Blackwell, weight-only elsewhere", 4, scale="group",
                    group_size=16, vllm_quantization="modelopt_fp4",
                    quality_note="NVFP4: ~1-2% below FP8 on reasoning benchmarks "
                    "(NVIDIA ModelOpt model cards)"),
        QuantFormat("mxfp4", "mxfp4", "MXFP4: FP4 e2m1 with an E8M0 scale per 32 values, on MoE "
                    "experts only (gpt-oss)", 4, scale="group", group_size=32,
                    quantized_roles=frozenset({"expert"}), vllm_quantization="mxfp4",
                    quality_note="gpt-oss was trained for MXFP4 experts: its released quality "
                    "(OpenAI gpt-oss model card, 2025)"),
        QuantFormat("q8_0", "gguf", "GGUF Q8_0", 8.5, gguf_base="Q8_0", gguf_more_bits="Q8_0",
                    quality_note="Q8_0: indistinguishable from F16 in llama.cpp perplexity tables"),
        QuantFormat("q6_k", "gguf", "GGUF Q6_K", 6.5625, gguf_base="Q6_K", gguf_more_bits="Q6_K",
                    quality_note="Q6_K: ~+0.004 perplexity vs F16 on 7B "
                    "(llama.cpp quantize README)"),
        QuantFormat("q5_k_m", "gguf", "GGUF Q5_K_M (llama.cpp mix: Q5_K, Q6_K on some "
                    "attn_v/ffn_down)", 5.5, gguf_base="Q5_K", gguf_more_bits="Q6_K",
                    estimate=True,
                    quality_note="Q5_K_M: ~+0.01 perplexity vs F16 on 7B "
                    "(llama.cpp quantize README)"),
        QuantFormat("q4_k_m", "gguf", "GGUF Q4_K_M (llama.cpp mix: Q4_K, Q6_K on some "
                    "attn_v/ffn_down)", 4.5, gguf_base="Q4_K", gguf_more_bits="Q6_K",
                    estimate=True,
                    quality_note="Q4_K_M: ~+0.05 perplexity vs F16 on 7B "
                    "(llama.cpp quantize README)"),
        QuantFormat("q4_0", "gguf", "GGUF Q4_0", 4.5, gguf_base="Q4_0", gguf_more_bits="Q4_0",
                    quality_note="Q4_0: legacy, ~+0.2 perplexity vs F16 on 7B "
                    "(llama.cpp quantize README)"),
    ]
}  # fmt: skip

ALIASES = {
    "float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
    "int4": "awq", "awq-int4": "awq", "gptq-int4": "gptq", "w8a8": "int8", "fp8-dynamic": "fp8",
    "modelopt_fp4": "nvfp4", "fp4": "nvfp4", "q8": "q8_0", "q4_k": "q4_k_m", "q5_k": "q5_k_m",
}  # fmt: skip


def get_format(name: str) -> QuantFormat:
    """Look a format up by name or alias (case-insensitive); unknown names list the valid ones."""
    key = name.strip().lower().replace(" ", "")
    key = ALIASES.get(key, key)
    if key in FORMATS:
        return FORMATS[key]
    hint = did_you_mean(name, list(FORMATS)) or ""
    raise UsageError(
        f"unknown quantization format '{name}'",
        f"{hint} valid formats: {', '.join(FORMATS)}".strip(),
    )


def _use_more_bits(layer: int, n_layers: int) -> bool:
    # llama.cpp llama-quant.cpp: first and last eighth of the layers, and every third between.
    return layer < n_layers // 8 or layer >= 7 * n_layers // 8 or (layer - n_layers // 8) % 3 == 2


def gguf_type_for(t: Tensor, fmt: QuantFormat, n_layers: int) -> str:
    """The GGML type llama.cpp's k-quant mixes give a tensor (approximate for *_M mixes)."""
    assert fmt.gguf_base is not None
    if len(t.shape) < 2:
        return "F32"
    if t.role == "lm_head":
        return "Q6_K" if fmt.gguf_base != "Q8_0" else "Q8_0"
    chosen = fmt.gguf_base
    if fmt.gguf_more_bits and fmt.gguf_more_bits != fmt.gguf_base:
        is_v = t.role == "attn_kv" and ".v_proj" in t.name
        is_down = "down_proj" in t.name
        layer = layer_index(t.name)
        if (is_v or is_down) and layer is not None and _use_more_bits(layer, n_layers):
            chosen = fmt.gguf_more_bits
    block = GGML_BLOCKS[chosen][0]
    if t.shape[-1] % block:
        chosen = GGML_FALLBACK.get(chosen, "Q8_0")
    return chosen


def layer_index(name: str) -> int | None:
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def _names_module(name: str, pattern: str) -> bool:
    """Whether an ignore-list entry names this tensor's module.

    A plain entry matches whole dotted components ("gate" names "mlp.gate" but not
    "gate_proj", as vLLM's is_layer_skipped compares module names, not substrings: MiniMax-M2
    ignores "gate" and stores its gate_proj-like experts in FP8); wildcards match as globs."""
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(name, f"*{pattern}*")
    return f".{pattern}." in f".{name}." or f".{pattern}[" in f".{name}"


def is_quantized(t: Tensor, fmt: QuantFormat, qc: QuantConfig | None) -> bool:
    """Whether a tensor is stored in the quantized layout under this format."""
    if fmt.kind == "float":
        return False
    if fmt.kind == "gguf":
        return len(t.shape) >= 2 and t.role not in {"router"}
    if not t.linear or t.role not in fmt.quantized_roles:
        return False
    if qc is not None:
        for pattern in qc.keep_unquantized:
            if _names_module(t.name, pattern):
                return False
    return True


@dataclass(frozen=True, slots=True)
class TensorBytes:
    dtype: str
    nbytes: int
    scale_elements: int  # stored scale / zero-point elements beside the weight


def linear_bytes(
    t: Tensor, fmt: QuantFormat, qc: QuantConfig | None, n_layers: int
) -> list[TensorBytes]:
    """Bytes of a quantized linear weight (shape (out, in)), split by stored dtype."""
    out_f, in_f = t.shape[-2], t.shape[-1]
    lead = t.numel // (out_f * in_f)  # stacked experts stored as one tensor (gpt-oss)
    n = t.numel
    group = (qc.group_size if qc and qc.group_size else None) or fmt.group_size or 128
    kind = fmt.kind
    if kind == "fp8":
        scale_granularity = fmt.scale
        block = (qc.block if qc and qc.block else None) or fmt.block or (128, 128)
        if scale_granularity == "tensor":
            scales = lead
        elif scale_granularity == "channel":
            scales = lead * out_f
        else:
            scales = lead * math.ceil(out_f / block[0]) * math.ceil(in_f / block[1])
        static = lead if (qc and qc.static_activation_scales) else 0
        # compressed-tensors stores per-channel scales in the model dtype (bf16): a Llama-70B
        # FP8-dynamic checkpoint lists 2,109,382,656 BF16 elements = embeddings + norms +
        # 6,717,440 channel scales. (The breakdown {BF16: 2,109,382,656, F8_E4M3: 68,451,041,280}
        # is the Hub's safetensors metadata of a Llama-70B FP8 checkpoint as quoted in a public
        # capacity planner's docstring, model id not named there: evidence, not a citation a
        # reader can follow; the formula below reproduces it.) Tensor and block scales: fp32.
        scale_dtype, scale_size = ("bf16", 2) if scale_granularity == "channel" else ("fp32", 4)
        parts = [TensorBytes("fp8", n, 0), TensorBytes(scale_dtype, scale_size * scales, scales)]
        if static:
            parts.append(TensorBytes("fp32", 4 * static, static))
        return parts
    if kind == "int8":
        return [TensorBytes("int8", n, 0), TensorBytes("fp32", 4 * lead * out_f, lead * out_f)]
    groups = lead * math.ceil(in_f / group) * out_f
    if kind == "awq":
        # qweight int32 [in, out/8] and qzeros int32 [in/g, out/8]: 4 bits a value.
        return [
            TensorBytes("int4", n // 2, 0),
            TensorBytes("int4", groups // 2, groups),
            TensorBytes("fp16", 2 * groups, groups),
        ]
    if kind == "gptq":
        return [
            TensorBytes("int4", n // 2, 0),
            TensorBytes("int4", groups // 2, groups),
            TensorBytes("fp16", 2 * groups, groups),
            TensorBytes("int32", 4 * lead * in_f, lead * in_f),  # g_idx
        ]
    if kind == "w4a16":
        return [
            TensorBytes("int4", n // 2, 0),
            TensorBytes("bf16", 2 * groups, groups),
            TensorBytes("int64", 16 * lead, 2 * lead),  # weight_shape
        ]
    if kind == "nvfp4":
        g = n // 16
        return [
            TensorBytes("fp4", n // 2, 0),
            TensorBytes("fp8", g, g),
            TensorBytes("fp32", 8 * lead, 2 * lead),  # weight_scale_2 + input_scale
        ]
    if kind == "mxfp4":
        g = n // 32
        return [TensorBytes("fp4", n // 2, 0), TensorBytes("uint8", g, g)]
    if kind == "gguf":
        gtype = gguf_type_for(t, fmt, n_layers)
        block_values, block_bytes = GGML_BLOCKS[gtype]
        rows = n // in_f
        return [
            TensorBytes(f"gguf:{gtype}", rows * math.ceil(in_f / block_values) * block_bytes, 0)
        ]
    raise AssertionError(f"unhandled format kind {kind}")


def tensor_bytes(
    t: Tensor, fmt: QuantFormat, qc: QuantConfig | None, spec: ModelSpec
) -> list[TensorBytes]:
    """Bytes of any tensor under a format: exact from the file, quantized, or float."""
    if t.nbytes is not None:
        return [TensorBytes(t.dtype or "?", t.nbytes, 0)]
    if is_quantized(t, fmt, qc):
        return linear_bytes(t, fmt, qc, spec.num_layers)
    dtype = t.dtype or float_dtype(spec, fmt)
    if fmt.kind == "gguf" and len(t.shape) < 2:
        dtype = "fp32"  # llama.cpp keeps 1-D tensors (norms, biases) in F32
    return [TensorBytes(dtype, t.numel * FLOAT_BYTES.get(dtype, 2), 0)]


def float_dtype(spec: ModelSpec, fmt: QuantFormat) -> str:
    """The dtype of tensors a format leaves unquantized (and of all tensors for float formats)."""
    if fmt.kind == "float":
        return fmt.name
    if fmt.kind == "gguf":
        return "fp16"
    if fmt.kind in {"awq", "gptq"}:
        return "fp16"  # AutoAWQ / AutoGPTQ checkpoints store the rest in fp16
    return spec.dtype if spec.dtype in FLOAT_BYTES and spec.dtype != "fp32" else "bf16"
