"""Speed model accuracy: estimate vs every published measurement in
planner/decide/data/throughput_calibration.json, the error per point and the median absolute error.

Run: python benchmarks/speed_accuracy.py        Target: median |error| within 25%.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.decide.perf import (  # noqa: E402
    Hardware,
    model_load,
    output_tokens_per_s,
    prefill_s,
    token_latency_s,
)
from planner.decide.rank import MAX_NUM_SEQS, _nvlink  # noqa: E402
from planner.decide.support import check_support  # noqa: E402
from planner.model.footprint import (  # noqa: E402
    count_params,
    kv_bytes_per_request,
    overhead_bytes,
    per_gpu_weight_bytes,
    resolve_format,
    weight_bytes,
)
from planner.model.quant import get_format  # noqa: E402
from planner.model.sources import load_model_spec  # noqa: E402
from planner.model.sources.hfconfig import parse_config  # noqa: E402
from planner.offers.gpus import gpu_table  # noqa: E402


def predict(point: dict) -> float:
    model = point["model"]
    if isinstance(model, dict):
        spec = parse_config(model, name=point["model_name"], source="config", source_ref="inline")
    else:
        spec = load_model_spec(model)
    fmt, qc = resolve_format(spec, point["quant"])
    wb = weight_bytes(spec, fmt, qc)
    tp = point["tp"]
    weights, experts = per_gpu_weight_bytes(spec, wb, tp)
    _, active, _ = count_params(spec)
    gpu = gpu_table()[point["gpu"]]
    support = check_support(gpu, get_format("fp16") if fmt.kind == "gguf" else fmt)
    hw = Hardware(gpu, tp, 1, support.compute, _nvlink(gpu))
    load = model_load(spec, weights, experts, active, tp, 1, "auto")
    kind = point["predict"]
    if kind == "itl_ms":
        return token_latency_s(load, hw, point["batch"], point["context"]) * 1000
    if kind == "tokens_per_s":
        return 1 / token_latency_s(load, hw, point["batch"], point["context"])
    if kind == "ttft_ms":
        return prefill_s(load, hw, point["prompt"]) * 1000
    if kind == "aggregate_tokens_per_s":
        prompt, output = point["prompt"], point["output"]
        capacity = gpu.usable_memory_bytes * point["gpu_memory_utilization"]
        free = capacity - weights - overhead_bytes(spec, tp)
        per_request = kv_bytes_per_request(spec, tp, "auto", prompt + output)
        batch = int(min(point["concurrency"], MAX_NUM_SEQS, free // per_request))
        return output_tokens_per_s(load, hw, batch, prompt, output) * 1  # one replica
    raise ValueError(kind)


def main() -> None:
    points = json.loads((ROOT / "planner/decide/data/throughput_calibration.json").read_text())[
        "points"
    ]
    errors = []
    print(f"{'id':10} {'engine':22} {'metric':24} {'estimate':>10} {'published':>10} {'error':>8}")
    for p in points:
        est = predict(p)
        err = (est - p["value"]) / p["value"] * 100
        errors.append(abs(err))
        print(
            f"{p['id']:10} {p['engine'][:22]:22} {p['predict']:24} {est:10.2f} "
            f"{p['value']:10.2f} {err:+7.1f}%"
        )
    vllm = [e for e, p in zip(errors, points, strict=True) if p["engine"].startswith("vLLM")]
    print(
        f"\nmedian |error|: all {len(errors)} points {statistics.median(errors):.1f}%, "
        f"vLLM points only ({len(vllm)}) {statistics.median(vllm):.1f}% (target <= 25%)"
    )


if __name__ == "__main__":
    main()
