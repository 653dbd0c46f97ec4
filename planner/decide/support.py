"""Whether current vLLM (0.33) can serve a quantization format on a GPU, and how.

Rules read from the vLLM 0.33.0 source (each quantization method's get_min_capability() and
kernel selectors, vllm/platforms/cuda.py) and https://docs.vllm.ai/en/latest/features/
quantization/ ("Supported Hardware", which lags Blackwell):
- compute capability < 7.0: unsupported; 7.0 (V100): the CUDA 13 wheels carry no sm_70 kernels.
- BF16 needs 8.0 (platforms/cuda.py check_if_supports_dtype); below, BF16 checkpoints run with
  --dtype half at the same size.
- FP8 W8A8 compute needs 8.9; 7.5-8.6 run FP8 checkpoints weight-only (FP8 Marlin).
- AWQ/GPTQ/W4A16 (Marlin) and INT8 W8A8 need 7.5. NVFP4 is native on Blackwell (10.0/12.0),
  weight-only (Marlin FP4) from 7.5. MXFP4 needs 8.0.
- GGUF left core vLLM in 0.33 (vllm-gguf-plugin): not planned here.
- FP8 KV cache needs 8.0 (no backend supports it on Turing; FlashInfer covers SM80-SM121).
- AMD (ROCm): BF16/FP16, FP8 and MXFP4; the docs mark AWQ/GPTQ unsupported on AMD. vLLM's
  ROCm platform keys FP8 and MX on the card's gfx target (vllm/platforms/rocm.py @001eda31:
  is_fp8_fnuz() is "gfx94" in the arch, so MI300X/MI325X (gfx942) run FP8 as e4m3fnuz and
  MI350X/MI355X (gfx950) as OCP e4m3fn; supports_mx() is "gfx95"). The gpt-oss MXFP4 method
  keeps BF16 activations on ROCm (Triton backend, mxfp4.py @007d5005), so its math runs at the
  BF16 rate on both.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.model.quant import QuantFormat
from planner.model.values import ModelSpec
from planner.offers.gpus import GpuSpec


@dataclass(frozen=True, slots=True)
class Support:
    ok: bool
    reason: str | None = None  # why not, when not ok
    compute: str = "fp16"  # which peak throughput the math runs at: fp16 | fp8 | int8
    dtype_half: bool = False  # serve a BF16 checkpoint with --dtype half
    note: str | None = None  # how it runs (weight-only, emulated...)
    # Weights stored narrower than the math: the kernels (Marlin) dequantize in the inner loop
    # and reach a lower share of the tensor peak once the batch makes them compute bound.
    weight_only: bool = False


# Model families vLLM will not run in float16 (vllm/config/model.py _FLOAT16_NOT_SUPPORTED_MODELS:
# gemma2, gemma3, gemma3_text, "Numerical instability. Please use bfloat16 or float32 instead."):
# on cards without BF16 (compute capability < 8.0) they have no dtype gpuplan plans.
NO_FLOAT16_FAMILIES = frozenset({"gemma2", "gemma3"})


def check_support(
    gpu: GpuSpec, fmt: QuantFormat, kv_cache_dtype: str = "auto", spec: ModelSpec | None = None
) -> Support:
    """Can vLLM 0.33 serve weights in ``fmt`` (and the KV cache dtype) on ``gpu``, and the
    model ``spec``'s attention there when given?"""
    problem = _model_problem(spec, gpu) if spec is not None else None
    if problem:
        return Support(False, problem)
    if fmt.kind == "gguf":
        return Support(
            False,
            "GGUF is served only through the out-of-tree vllm-gguf-plugin "
            "since vLLM 0.33; plan a native format (bf16, fp8, awq...)",
        )
    if gpu.vendor == "amd":
        return _amd(gpu, fmt)
    cc = gpu.compute_capability or 0.0
    if cc < 7.0:
        return Support(False, f"compute capability {cc:.1f} < 7.0: vLLM does not support it")
    if cc < 7.5:
        return Support(
            False,
            f"{gpu.name} (compute capability {cc:.1f}): current vLLM wheels are "
            "CUDA 13 builds without sm_70 kernels",
        )
    if kv_cache_dtype != "auto" and cc < 8.0:
        return Support(
            False, f"FP8 KV cache needs compute capability 8.0+ ({gpu.name} is {cc:.1f})"
        )
    if kv_cache_dtype != "auto" and spec is not None and cc < 8.9:
        # Below Hopper the one MLA backend is Triton's, whose TritonMLAImpl raises "FP8 KV cache
        # is not supported by the Triton MLA backend ... native FP8 (fp8e4nv) requires SM89+"
        # (vllm/v1/attention/backends/mla/triton_mla.py); FlashMLA and FA3 MLA need SM90.
        # Attention sinks (gpt-oss) run there on Triton attention too: FlashAttention takes
        # sinks only as FA3 (Hopper) and FlashInfer only through trtllm-gen (SM100), and
        # Triton attention refuses an FP8 KV cache below SM89 (vllm-project/vllm#40153 shows
        # the backend choice; ../shared/reference/vllm-support.md section 4).
        what = "MLA attention" if spec.is_mla else "attention with sinks"
        if spec.is_mla or spec.attention_sinks:
            return Support(
                False,
                f"FP8 KV cache of {what} needs compute capability 8.9+ in vLLM (its Triton "
                f"backend there; {gpu.name} is {cc:.1f})",
            )
    result = _cuda(gpu, fmt, cc)
    if result.dtype_half and spec is not None and spec.family in NO_FLOAT16_FAMILIES:
        return Support(
            False,
            f"vLLM refuses float16 for {spec.family} models (numerical instability) and "
            f"{gpu.name} (compute capability {cc:.1f}) has no BF16",
        )
    return result


def _cuda(gpu: GpuSpec, fmt: QuantFormat, cc: float) -> Support:
    """The format on an NVIDIA card of compute capability ``cc`` (7.5 or more)."""
    kind = fmt.kind
    if kind == "float":
        if fmt.name == "fp32":
            return Support(True, compute="fp16", note="FP32 weights; math in FP32 is slower")
        if fmt.name == "bf16" and cc < 8.0:
            return Support(
                True,
                compute="fp16",
                dtype_half=True,
                note="no BF16 on this GPU: served with --dtype half",
            )
        return Support(True)
    if kind == "fp8":
        if cc >= 8.9:
            return Support(True, compute="fp8")
        return Support(
            True,
            compute="fp16",
            dtype_half=cc < 8.0,
            note="FP8 weight-only (FP8 Marlin): memory saving, no FP8 math",
            weight_only=True,
        )
    if kind == "int8":
        return Support(True, compute="int8")
    if kind in {"awq", "gptq", "w4a16"}:
        return Support(
            True, compute="fp16", dtype_half=cc < 8.0, note="int4 weight-only (Marlin)",
            weight_only=True,
        )  # fmt: skip
    if kind == "nvfp4":
        if cc >= 10.0:
            return Support(True, compute="fp8", note="native FP4 tensor cores")
        return Support(
            True,
            compute="fp16",
            dtype_half=cc < 8.0,
            note="NVFP4 weight-only (Marlin FP4) below Blackwell",
            weight_only=True,
        )
    if kind == "mxfp4":
        if cc < 8.0:
            return Support(False, f"MXFP4 needs compute capability 8.0+ ({gpu.name} is {cc:.1f})")
        return Support(True, compute="fp16", note="MXFP4 experts (Marlin/Triton) below Blackwell")
    return Support(False, f"format {fmt.name} is not planned")


def _model_problem(spec: ModelSpec, gpu: GpuSpec) -> str | None:
    """Why vLLM has no attention backend for this model on this card, or None.

    Sparse MLA (DeepSeek-V3.2's indexer, index_head_dim) runs on CUDA only through FlashMLA
    sparse, which vllm/v1/attention/ops/flashmla.py is_flashmla_sparse_supported() limits to
    device-capability families 90 and 100 ("FlashMLA Sparse is only supported on Hopper and
    Blackwell DC devices."); elsewhere start-up fails with "No valid attention backend found
    ... use_sparse=True" (vllm-project/vllm#54059 on sm_89, #31936 on RTX PRO 6000). ROCm has
    its own sparse MLA backend (rocm_aiter_mla_sparse)."""
    if not (spec.is_mla and spec.index_head_dim) or gpu.vendor == "amd":
        return None
    cc = gpu.compute_capability or 0.0
    if int(cc) in {9, 10}:
        return None
    return (
        f"sparse MLA attention (DeepSeek-V3.2's indexer) runs only on Hopper and Blackwell "
        f"data-center GPUs in vLLM (FlashMLA sparse); {gpu.name} is compute capability {cc:.1f}"
    )


def _amd(gpu: GpuSpec, fmt: QuantFormat) -> Support:
    arch = gpu.gfx_arch or "an unknown gfx target"
    if fmt.kind == "float":
        return Support(True)
    if fmt.kind == "fp8":
        if arch.startswith("gfx94"):
            note = f"FP8 as e4m3fnuz on {arch}: OCP e4m3fn checkpoints are converted at load"
        elif arch.startswith("gfx95"):
            note = f"FP8 as OCP e4m3fn on {arch}"
        else:
            note = f"FP8 on {arch}"
        return Support(True, compute="fp8", note=note)
    if fmt.kind == "mxfp4":
        # gfx950's scaled matrix instructions take MX (FP8/FP6/FP4) operands on both sides;
        # this method keeps BF16 activations, so the weights are upcast and the math is BF16.
        unused = " (its MX hardware unused)" if arch.startswith("gfx95") else ""
        note = f"MXFP4 experts on {arch}{unused}: BF16 activations, BF16 math"
        return Support(True, compute="fp16", note=note)
    return Support(False, f"{fmt.name} is not supported on AMD GPUs in vLLM's docs table")
