"""Map a checkpoint's ``quantization_config`` (config.json) or ModelOpt ``hf_quant_config.json``
to a gpuplan QuantConfig."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.errors import ModelSpecError, UsageError
from planner.model.values import QuantConfig


def _keep_patterns(names: Any) -> tuple[str, ...]:
    out = []
    for n in names or []:
        s = str(n)
        if s.startswith("re:"):
            s = s[3:].replace(".*", "*").replace("\\.", ".").rstrip("$")
        out.append(s)
    return tuple(out)


def parse_quantization_config(qc: Any, where: str) -> QuantConfig:
    """Map a checkpoint's ``quantization_config`` to a gpuplan format."""
    if not isinstance(qc, Mapping):
        raise ModelSpecError(f"{where}: 'quantization_config' must be an object")
    method = str(qc.get("quant_method", "")).lower()
    keep = _keep_patterns(
        qc.get("modules_to_not_convert") or qc.get("ignored_layers") or qc.get("ignore")
    )
    if method in {"awq", "gptq", "awq_marlin", "gptq_marlin"}:
        bits = qc.get("bits", qc.get("w_bit", 4))
        if bits != 4:
            raise UsageError(
                f"{where}: {method} with {bits} bits is not supported yet",
                "gpuplan sizes 4-bit AWQ/GPTQ checkpoints",
            )
        group = qc.get("group_size", qc.get("q_group_size", 128))
        return QuantConfig(
            format=method.split("_")[0], group_size=int(group), keep_unquantized=keep
        )
    if method == "fp8":
        block = qc.get("weight_block_size")
        static = qc.get("activation_scheme") == "static"
        if block:
            return QuantConfig(
                "fp8-block",
                block=(int(block[0]), int(block[1])),
                keep_unquantized=keep,
                static_activation_scales=static,
            )
        return QuantConfig("fp8", keep_unquantized=keep, static_activation_scales=static)
    if method == "fbgemm_fp8":
        return QuantConfig("fp8-channel", keep_unquantized=keep)
    if method == "mxfp4":
        return QuantConfig("mxfp4", keep_unquantized=keep)
    if method == "modelopt":
        return parse_modelopt({"quantization": qc}, where)
    if method == "compressed-tensors":
        return _parse_compressed_tensors(qc, keep, where)
    if method == "bitsandbytes":
        raise UsageError(
            f"{where}: bitsandbytes checkpoints are not served by current vLLM",
            "bitsandbytes left core vLLM (absent from 0.33); use an AWQ/GPTQ variant",
        )
    raise UsageError(
        f"{where}: quantization method '{method}' is not supported yet",
        "supported: awq, gptq, fp8, fbgemm_fp8, compressed-tensors, modelopt, mxfp4",
    )


def _parse_compressed_tensors(
    qc: Mapping[str, Any], keep: tuple[str, ...], where: str
) -> QuantConfig:
    groups = qc.get("config_groups") or {}
    if not isinstance(groups, Mapping) or not groups:
        raise ModelSpecError(f"{where}: compressed-tensors config without 'config_groups'")
    g = next(iter(groups.values()))
    w = g.get("weights") or {}
    acts = g.get("input_activations") or {}
    bits, typ, strategy = w.get("num_bits"), w.get("type"), w.get("strategy")
    static = bool(acts) and acts.get("dynamic") is False
    if bits == 8 and typ == "float":
        if strategy == "block":
            b = w.get("block_structure") or [128, 128]
            return QuantConfig(
                "fp8-block",
                block=(int(b[0]), int(b[1])),
                keep_unquantized=keep,
                static_activation_scales=static,
            )
        fmt = "fp8-channel" if strategy == "channel" else "fp8"
        return QuantConfig(fmt, keep_unquantized=keep, static_activation_scales=static)
    if bits == 8 and typ == "int":
        return QuantConfig("int8", keep_unquantized=keep)
    if bits == 4 and typ == "int":
        return QuantConfig(
            "w4a16", group_size=int(w.get("group_size") or 128), keep_unquantized=keep
        )
    if bits == 4 and typ == "float":
        return QuantConfig("nvfp4", group_size=16, keep_unquantized=keep)
    raise UsageError(f"{where}: compressed-tensors scheme {bits}-bit {typ} is not supported yet")


def parse_modelopt(hqc: Mapping[str, Any], where: str) -> QuantConfig:
    """Map NVIDIA ModelOpt's ``hf_quant_config.json`` to a gpuplan format."""
    q = hqc.get("quantization") if isinstance(hqc, Mapping) else None
    if not isinstance(q, Mapping):
        raise ModelSpecError(f"{where}: hf_quant_config.json without a 'quantization' object")
    algo = str(q.get("quant_algo", "")).upper()
    keep = _keep_patterns(q.get("exclude_modules"))
    if algo == "FP8":
        return QuantConfig(
            "fp8", keep_unquantized=keep, static_activation_scales=True, source="hf_quant_config"
        )
    if algo == "NVFP4":
        return QuantConfig(
            "nvfp4",
            group_size=int(q.get("group_size") or 16),
            keep_unquantized=keep,
            source="hf_quant_config",
        )
    raise UsageError(
        f"{where}: ModelOpt quant_algo '{algo}' is not supported yet", "supported: FP8, NVFP4"
    )
