"""Footprint accuracy: estimate vs published figure for every registry model that has one, plus
the overhead calibration points and GGUF k-quant mix estimates.

Run: python benchmarks/footprint_accuracy.py
Targets: parameter counts exact, unquantized weight bytes exact, quantized checkpoints within 1%.
"""

from __future__ import annotations

import json
from pathlib import Path

from planner.model.architecture import list_tensors
from planner.model.footprint import (
    GIB,
    estimate_footprint,
    overhead_bytes,
    resolve_format,
    weight_bytes,
)
from planner.model.kvcache import kv_bytes_per_token
from planner.model.sources import (
    find_registry_entry,
    load_model_spec,
    registry_entries,
    spec_from_registry,
)

ROOT = Path(__file__).resolve().parents[1]

# Published GGUF file sizes (whole file, so tokenizer and metadata are included).
GGUF_FILES = [
    (
        "Qwen/Qwen2.5-7B-Instruct",
        "q4_k_m",
        4683074336,
        "qwen2.5-7b-instruct-q4_k_m.gguf in https://huggingface.co/Qwen/Qwen2.5-7B-Instruct-GGUF "
        "(size from a public copy of the Hub's file listing, 2026-11; not re-fetched)",
    ),
    (
        "meta-llama/Llama-3.1-70B-Instruct",
        "q4_k_m",
        45655502848,
        "a DeepSeek-R1-Distill-Llama-70B Q4_K_M file (same shapes as Llama-3.1-70B), size from "
        "public code, repository not recorded: unverified evidence",
    ),
]


def pct(est: int, pub: int) -> float:
    return (est - pub) / pub * 100


def _included(fp, count: int) -> str:
    """What the compared total includes besides the decoder's weights."""
    parts = []
    if fp.model.vision is not None:
        vision = sum(t.numel for t in list_tensors(fp.model) if t.role == "vision")
        parts.append(f"vision tower {vision:,}")
    if fp.mtp_params:
        parts.append(f"MTP {fp.mtp_params:,}")
    if count == fp.stored_elements and fp.stored_elements != fp.total_params:
        parts.append(f"quant scales {fp.stored_elements - fp.total_params:,}")
    return ("incl. " + ", ".join(parts)) if parts else ""


def main() -> None:
    print(f"{'model':55} {'what':18} {'estimate':>18} {'published':>18} {'error':>9}")
    param_errors, byte_errors = [], []
    exact = 0
    for entry in registry_entries():
        pub = entry["published"]
        if not pub["parameter_count"] and not pub["safetensors_total_size_bytes"]:
            continue
        fp = estimate_footprint(spec_from_registry(entry))
        if pub["parameter_count"]:
            count = (
                fp.stored_elements
                if fp.stored_elements == pub["parameter_count"]
                else fp.total_params
            )
            err = pct(count, pub["parameter_count"])
            param_errors.append(abs(err))
            exact += count == pub["parameter_count"]
            extra = _included(fp, count)
            if count != pub["parameter_count"]:
                extra = f"differs by {count - pub['parameter_count']:+,} (see registry note)"
            print(
                f"{entry['id']:55} {'parameters':18} {count:>18,} "
                f"{pub['parameter_count']:>18,} {err:>8.4f}%  {extra}"
            )
        if pub["safetensors_total_size_bytes"]:
            err = pct(fp.weight_bytes, pub["safetensors_total_size_bytes"])
            byte_errors.append(abs(err))
            print(
                f"{entry['id']:55} {'weight bytes':18} {fp.weight_bytes:>18,} "
                f"{pub['safetensors_total_size_bytes']:>18,} {err:>8.4f}%"
            )
    gguf_errors = []
    for model, quant, size, _source in GGUF_FILES:
        fp = estimate_footprint(spec_from_registry(find_registry_entry(model)), quant)
        err = pct(fp.weight_bytes, size)
        gguf_errors.append(abs(err))
        print(
            f"{model:55} {'gguf ' + quant + ' file':18} {fp.weight_bytes:>18,} {size:>18,} "
            f"{err:>8.4f}%"
        )
    print()
    print("vLLM memory calibration (KV tokens vLLM logged vs what gpuplan leaves for KV):")
    points = json.loads((ROOT / "planner/model/data/vllm_memory_calibration.json").read_text())[
        "points"
    ]
    for p in points:
        spec = load_model_spec(p["model"])
        fmt, qc = resolve_format(spec, None)
        budget = int(p["gpu_total_memory_bytes"] * p["gpu_memory_utilization"])
        weights = weight_bytes(spec, fmt, qc).served
        per_layer, layers = kv_bytes_per_token(spec, 1, "auto")
        actual_overhead = budget - weights - p["logged_kv_tokens"] * per_layer * layers
        est_overhead = overhead_bytes(spec, 1)
        tokens = (budget - weights - est_overhead) // (per_layer * layers)
        print(
            f"  {p['model']:30} on {p['gpu']:26} overhead est {est_overhead / GIB:5.2f} GiB vs "
            f"actual {actual_overhead / GIB:5.2f} GiB "
            f"({(est_overhead - actual_overhead) / GIB:+.2f}); "
            f"KV tokens {tokens:,} vs logged {p['logged_kv_tokens']:,} "
            f"({pct(tokens, p['logged_kv_tokens']):+.1f}%)"
        )
    print()
    print(
        f"summary: parameter counts {len(param_errors)} checked ({exact} exact), max |error| "
        f"{max(param_errors):.4f}%; weight bytes {len(byte_errors)} checked, max |error| "
        f"{max(byte_errors):.4f}%; GGUF k-quant mix estimates max |error| {max(gguf_errors):.2f}%"
    )


if __name__ == "__main__":
    main()
