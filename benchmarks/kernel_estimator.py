"""AIConfigurator (NVIDIA's estimator built on measured kernels, PyPI `aiconfigurator`) against
gpuplan's speed model, on the published measurements that AIConfigurator covers
(planner/decide/data/throughput_calibration.json): per point the published value,
AIConfigurator's estimate and error, gpuplan's estimate and error (in sample, and leave one
source out as benchmarks/speed_accuracy.py computes it); then the median |error| of each,
overall and per class. Points it cannot cover are listed with the reason.

AIConfigurator is optional and heavy (pandas, pyarrow, matplotlib, plotly, bokeh; ~100 MB of
kernel tables): install it in a separate venv together with gpuplan, never in gpuplan's extras:
    python3 -m venv .venv-aic && .venv-aic/bin/pip install aiconfigurator -e .
Run:  .venv-aic/bin/python benchmarks/kernel_estimator.py          (~1 min; its tables load in
      .venv-aic/bin/python benchmarks/kernel_estimator.py --no-loso (~15 s, no refit of gpuplan)
      .venv-aic/bin/python benchmarks/kernel_estimator.py --ids tp015,gs001
Without aiconfigurator it says so in one line and exits 0.
How it is called: aiconfigurator.cli.api.cli_estimate(model, system, backend_name=...,
backend_version="current", mode="agg" | "static", batch_size, isl, osl, ctx_tokens, tp_size,
moe_tp_size, moe_ep_size, gemm/moe/kvcache_quant_mode) -> EstimateResult (ttft and tpot in ms,
raw["tokens/s"] = output tokens/s of the worker, raw["request_latency"] in ms).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import speed_accuracy as sa  # noqa: E402

from planner.model.footprint import (  # noqa: E402
    default_batched_tokens,
)

MISSING = "aiconfigurator is not installed: pip install aiconfigurator (optional)"
# gpuplan GPU -> AIConfigurator system with measured kernel tables (aiconfigurator-core 0.12.0,
# systems/data/<system>/<op>/<backend>/<version>). a100_sxm is the 80 GB card.
SYSTEMS = {
    "h100-sxm": "h100_sxm", "h200-sxm": "h200_sxm", "b200": "b200_sxm",
    "a100-80gb-sxm": "a100_sxm", "l40s": "l40s",
}  # fmt: skip
NO_SYSTEM = {
    "a100-40gb-sxm": "AIConfigurator's a100_sxm tables are the 80 GB card (2.0 vs 1.6 TB/s HBM)",
    "h100-pcie": "AIConfigurator's h100_pcie is a spec sheet without measured kernels",
    "l4": "AIConfigurator's l4 is a spec sheet without measured kernels",
}
BACKENDS = {"vLLM": "vllm", "SGLang": "sglang", "TensorRT-LLM": "trtllm"}
# Registry model -> a config bundled with aiconfigurator-core of the same shape (the Instruct
# and base checkpoints, Llama 3.1 and 3.3 70B share their architecture and sizes).
BUNDLED = {
    "Qwen/Qwen3-8B": "Qwen/Qwen3-8B", "Qwen/Qwen3-32B": "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B": "Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-235B-A22B": "Qwen/Qwen3-235B-A22B",
    "meta-llama/Llama-3.1-8B": "meta-llama/Meta-Llama-3.1-8B",
    "meta-llama/Llama-3.1-8B-Instruct": "meta-llama/Meta-Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B-Instruct": "meta-llama/Meta-Llama-3.1-70B",
    "meta-llama/Llama-3.3-70B-Instruct": "meta-llama/Meta-Llama-3.1-70B",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mistralai/Mixtral-8x7B-v0.1",
    "mistralai/Mixtral-8x22B-Instruct-v0.1": "mistralai/Mixtral-8x22B-v0.1",
    "deepseek-ai/DeepSeek-R1": "deepseek-ai/DeepSeek-R1",
    "deepseek-ai/DeepSeek-V3.2": "deepseek-ai/DeepSeek-V3.2",
    "openai/gpt-oss-20b": "openai/gpt-oss-20b", "openai/gpt-oss-120b": "openai/gpt-oss-120b",
}  # fmt: skip
# FP8 checkpoints bundled with their quantization config (block FP8 for Qwen, per-tensor
# ModelOpt FP8 for Llama); any other fp8 point is vLLM's on-the-fly per-tensor FP8.
FP8_BUNDLED = {
    "Qwen/Qwen3-32B": "Qwen/Qwen3-32B-FP8", "Qwen/Qwen3-235B-A22B": "Qwen/Qwen3-235B-A22B-FP8",
    "meta-llama/Llama-3.1-70B-Instruct": "nvidia/Llama-3.1-70B-Instruct-FP8",
    "meta-llama/Llama-3.3-70B-Instruct": "nvidia/Llama-3.1-70B-Instruct-FP8",
}  # fmt: skip
# Dense registry models whose architecture AIConfigurator models: their registry config.json
# (copied from the Hub) is handed to it as a local model directory.
ARCHITECTURES = {
    "qwen3": "Qwen3ForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "llama": "LlamaForCausalLM",
}


@dataclass(frozen=True, slots=True)
class AicQuery:
    """One AIConfigurator call and how its result maps to the point's metric. `read` is ttft
    (ms), tpot (ms), stream (1000 / tpot, tok/s of one stream), e2e (output / request latency,
    tok/s of one stream end to end), output (tok/s) or total (input + output tok/s)."""

    model: str  # a bundled HF id, or "registry:<id>" (a local config written at call time)
    system: str
    backend: str
    tp: int
    moe: bool
    mode: str  # agg: continuous batching at a steady `batch`; static: one batch start to end
    batch: int
    isl: int
    osl: int
    batched_tokens: int  # vLLM's max_num_batched_tokens: the prefill tokens one step can take
    read: str
    gemm_quant: str | None = None
    moe_quant: str | None = None
    kv_quant: str | None = None
    replicas: int = 1
    rate: float | None = None  # Poisson requests/s at one replica: Little's law gives the batch


def backend_of(engine: str) -> str | None:
    return next((b for prefix, b in BACKENDS.items() if engine.startswith(prefix)), None)


def registry_config(model: str) -> dict | None:
    doc = json.loads((ROOT / "planner/model/registry/models.json").read_text())
    entry = next((m for m in doc["models"] if m["id"] == model), None)
    if entry is None or entry["config"].get("model_type") not in ARCHITECTURES:
        return None
    return {"architectures": [ARCHITECTURES[entry["config"]["model_type"]]], **entry["config"]}


def model_path(p: dict) -> tuple[str, dict[str, str]] | str:
    """(AIConfigurator model, quant-mode overrides) for a point, or why there is none."""
    quant, model = p["quant"], p["model"]
    overrides = {"kv_quant": "fp8"} if p["kv_cache_dtype"].startswith("fp8") else {}
    if quant not in (None, "fp8"):
        return f"quant {quant}: no measured {quant} GEMM kernels for this backend in AIConfigurator"
    if quant == "fp8" and model in FP8_BUNDLED:
        return FP8_BUNDLED[model], overrides
    if model in BUNDLED:
        path = BUNDLED[model]
    elif registry_config(model) is not None:
        path = f"registry:{model}"
    else:
        return f"model {model}: no config of its architecture that AIConfigurator models"
    if quant == "fp8":  # vLLM --quantization fp8: dynamic per-tensor FP8 weights and activations
        overrides |= {"gemm_quant": "fp8", "moe_quant": "fp8"}
    return path, overrides


def serving_batch(p: dict) -> int:
    """Requests in flight for a throughput point: its concurrency capped by max_num_seqs (vLLM's
    default) and by the KV cache gpuplan's memory model finds, as speed_accuracy.predict does
    (replicas behind a router each take their share of it): both estimators are asked about the
    same batch, so the comparison is of speed models only."""
    cand, hw, _load, free = sa._setup(p["id"])
    return sa.serving_batch(p, cand, hw, free)


def aic_query(p: dict) -> AicQuery | str:
    """The AIConfigurator query answering the same question as the published point, or the
    reason it has none. Approximations (say so in the report):
    - a serving benchmark that sends N prompts at once (num_prompts) is a finite run whose
      batch shrinks at the end; AIConfigurator's agg mode is the steady state of `batch`
      requests (it charges each request's prefill in mixed steps, so one wave's prefill burst is
      in it, the drain is not; ShareGPT length spread is not either: mean lengths are used);
    - a Poisson rate becomes a batch by Little's law on AIConfigurator's own latencies;
    - benchmark_latency runs (offline, e2e) are one static batch: AIConfigurator's static mode;
    - AIConfigurator's tables are for one vLLM release per GPU ('current': 0.24.0, 0.14.0 on
      A100) while most points were measured on vLLM 0.9-0.13."""
    backend = backend_of(p["engine"])
    if backend is None:
        return f"engine {p['engine'][:30]}: no AIConfigurator backend"
    if p["gpu"] not in SYSTEMS:
        return NO_SYSTEM.get(p["gpu"], f"GPU {p['gpu']}: no AIConfigurator system with kernels")
    found = model_path(p)
    if isinstance(found, str):
        return found
    path, quant = found
    cand, hw, _load, _free = sa._setup(p["id"])
    isl, osl = max(1, int(p.get("prompt", 0))), max(1, int(p.get("output", 128)))
    budget = p.get("max_num_batched_tokens") or default_batched_tokens(
        hw.gpu.usable_memory_bytes, hw.gpu.name
    )
    base = dict(
        model=path, system=SYSTEMS[p["gpu"]], backend=backend, tp=p["tp"],
        moe=cand.spec.is_moe, isl=isl, osl=osl, batched_tokens=budget,
        replicas=p.get("replicas", 1), **quant,
    )  # fmt: skip
    metric = p["metric"]
    if metric == "ttft_ms":  # one request alone
        return AicQuery(mode="agg", batch=1, read="ttft", **base)
    if metric in {"itl_ms", "tokens_per_s"}:
        batch = p.get("batch") or 1
        if p.get("offline") and p.get("e2e"):
            return AicQuery(mode="static", batch=batch, read="e2e", **base)
        if p.get("e2e") or p.get("offline"):
            return AicQuery(mode="static", batch=batch, read="stream", **base)
        read = "tpot" if metric == "itl_ms" else "stream"
        return AicQuery(mode="agg", batch=batch, read=read, rate=p.get("rate"), **base)
    read = "total" if metric == "total_tokens_per_s" else "output"
    return AicQuery(mode="agg", batch=serving_batch(p), read=read, rate=sa.replica_rate(p), **base)


@cache
def _local_model(model: str) -> str:
    """A model AIConfigurator reads without the network: its bundled HF id, or a local folder
    with the bundled config (it would download the config of an id outside DefaultHFModels,
    Mixtral's among them) or with gpuplan's registry config."""
    from importlib import resources

    from aiconfigurator_core.sdk.common import DefaultHFModels

    files: dict[str, str] = {}
    if model.startswith("registry:"):
        files["config.json"] = json.dumps(registry_config(model.split(":", 1)[1]))
    elif model in DefaultHFModels:
        return model
    else:
        bundled = resources.files("aiconfigurator_core") / "model_configs"
        for name in ("config.json", "hf_quant_config.json"):
            path = bundled / f"{model.replace('/', '--')}_{name}"
            if path.is_file():
                files[name] = path.read_text()
    folder = Path(tempfile.mkdtemp(prefix="gpuplan-aic-"))
    for name, text in files.items():
        (folder / name).write_text(text)
    return str(folder)


def _offline() -> None:
    """Refuse AIConfigurator's Hub downloads: a benchmark talks to no network."""
    from aiconfigurator_core.sdk import utils

    def refuse(hf_id: str, filename: str, **_kwargs):
        raise RuntimeError(f"not bundled, and no network here: {hf_id}/{filename}")

    utils._download_hf_json = refuse


def _call(q: AicQuery, batch: int):
    from aiconfigurator.cli.api import cli_estimate

    model = _local_model(q.model)
    # Context tokens per mixed step: vLLM packs waiting prefills up to max_num_batched_tokens
    # (one request's prompt alone at batch 1); AIConfigurator needs >= 1 decode in the step.
    ctx = min(q.isl, q.batched_tokens) if batch == 1 else min(q.batched_tokens, q.isl * (batch - 1))
    # vLLM shards experts with TP unless --enable-expert-parallel (no covered point sets it).
    moe = {"moe_tp_size": q.tp, "moe_ep_size": 1} if q.moe else {}
    return cli_estimate(
        model, q.system, mode=q.mode, backend_name=q.backend, backend_version="current",
        isl=q.isl, osl=q.osl, batch_size=batch, ctx_tokens=ctx, tp_size=q.tp,
        gemm_quant_mode=q.gemm_quant, moe_quant_mode=q.moe_quant, kvcache_quant_mode=q.kv_quant,
        **moe,
    )  # fmt: skip


def estimate(q: AicQuery) -> tuple[float, str, int]:
    """AIConfigurator's figure for the query in the point's unit, the table version it used and
    the batch it was asked about."""
    batch = q.batch
    if q.rate:  # Little's law: requests in flight = rate x request latency
        for _ in range(4):
            r = _call(q, batch)
            batch = max(1, round(q.rate * (r.ttft + r.tpot * (q.osl - 1)) / 1000))
    r = _call(q, batch)
    if q.read == "ttft":
        value = r.ttft
    elif q.read == "tpot":
        value = r.tpot
    elif q.read == "stream":
        value = 1000 / r.tpot
    elif q.read == "e2e":
        value = q.osl * 1000 / r.raw["request_latency"]
    else:
        tps = float(r.raw["tokens/s"])
        if q.rate:  # an open-loop rate below capacity delivers what arrives
            tps = min(tps, q.rate * q.osl)
        tps *= q.replicas
        value = tps * (q.isl + q.osl) / q.osl if q.read == "total" else tps
    return float(value), str(r.raw.get("version", r.backend_version)), batch


def all_at_once(p: dict) -> bool:
    """A finite run whose prompts are all sent at t=0: its batch fills, then drains; not the
    steady state AIConfigurator's agg mode (or a stated concurrency) describes."""
    return "num_prompts" in p and not p.get("rate") and p["concurrency"] >= p["num_prompts"]


def _loso(pts: list[dict], ids: set[str]) -> dict[str, float]:
    """gpuplan's leave-one-source-out error on `ids` (speed_accuracy's refits); the committed
    constants are restored."""
    saved = {n: sa.perf.calibration()["constants"][n]["value"] for n in sa.FITTED}
    try:
        return sa.leave_one_source_out(pts, [p for p in pts if sa.fitted(p)], ids)
    finally:
        sa._set(saved)


def _medians(rows: list[dict], key: str) -> str:
    """speed_accuracy's overall and per-class medians of the rows that have ``key``."""
    got = [r for r in rows if r.get(key) is not None]
    if not got:
        return "-"
    return sa._medians({r["p"]["id"]: r[key] for r in got}, [r["p"] for r in got])


def _by_batch(rows: list[dict], key: str) -> str:
    parts = []
    for low, high in ((1, 1), (2, 64), (65, 256), (257, 1 << 30)):
        sel = [abs(r[key]) for r in rows if low <= r["batch"] <= high and r.get(key) is not None]
        name = f"{low}" if low == high else f"{low}-{high}" if high < 1 << 30 else f">{low - 1}"
        if sel:
            parts.append(f"batch {name} {statistics.median(sel):.1f}% (n={len(sel)})")
    return "; ".join(parts) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", help="comma-separated point ids (default: all)")
    parser.add_argument("--no-loso", action="store_true", help="skip gpuplan's refits")
    args = parser.parse_args(argv)
    try:
        import aiconfigurator.cli.api  # noqa: F401
    except ImportError:
        print(MISSING)
        return 0
    _offline()
    logging.disable(logging.WARNING)  # its table loader warns about fallback rows per query
    warnings.simplefilter("ignore")
    pts = sa.points()
    if args.ids:
        wanted = set(args.ids.split(","))
        pts = [p for p in pts if p["id"] in wanted]
    rows, uncovered = [], []
    for p in pts:
        q = aic_query(p)
        if isinstance(q, str):
            uncovered.append((p, q))
            continue
        try:
            value, version, batch = estimate(q)
        except Exception as exc:  # any refusal of AIConfigurator is a reason, listed below
            uncovered.append((p, f"AIConfigurator: {type(exc).__name__}: {str(exc)[:90]}"))
            continue
        rows.append({
            "p": p, "q": q, "aic": value, "version": version, "batch": batch,
            "classes": sa.classes(p),
            "aic_err": (value - p["value"]) / p["value"] * 100,
            "gp": sa.predict(p), "gp_err": sa.error_pct(p),
        })  # fmt: skip
        print(f"  {p['id']}: {value:.1f} vs {p['value']:.1f}", file=sys.stderr, flush=True)
    if not args.no_loso:
        loso = _loso(sa.points(), {r["p"]["id"] for r in rows})
        for r in rows:
            r["gp_loso"] = loso.get(r["p"]["id"])
    print(f"{'id':14} {'class':30} {'metric':10} {'aic db':14} {'mode':6} {'batch':>5} "
          f"{'published':>9} {'AIC':>9} {'AIC err':>8} {'gpuplan':>9} {'in-sample':>9} "
          f"{'LOSO':>7}")  # fmt: skip
    for r in rows:
        p, loso_err = r["p"], r.get("gp_loso")
        db = f"{r['q'].backend} {r['version']}"
        print(
            f"{p['id']:14} {', '.join(r['classes'])[:30]:30} {p['metric'][:10]:10} {db:14} "
            f"{r['q'].mode:6} {r['batch']:5} "
            f"{p['value']:9.1f} {r['aic']:9.1f} {r['aic_err']:+7.1f}% {r['gp']:9.1f} "
            f"{r['gp_err']:+8.1f}% " + (f"{loso_err:+6.1f}%" if loso_err is not None else "     -")
        )
    fit_rows = [r for r in rows if sa.fitted(r["p"])]
    other = [r for r in rows if not sa.fitted(r["p"])]
    groups = (
        ("vLLM points graded A/B", fit_rows),
        ("  of which finite runs sent all at once", [r for r in fit_rows if all_at_once(r["p"])]),
        ("  of which the rest (steady loads)", [r for r in fit_rows if not all_at_once(r["p"])]),
        ("other engines and grade C", other),
    )
    for title, sel in groups:
        print(f"\n{title} that AIConfigurator covers ({len(sel)}), median |error|:")
        print(f"  AIConfigurator:                   {_medians(sel, 'aic_err')}")
        print(f"  gpuplan leave-one-source-out:     {_medians(sel, 'gp_loso')}")
        print(f"  gpuplan in-sample (fitted on all): {_medians(sel, 'gp_err')}")
    print("\nvLLM points graded A/B by the batch both estimators were asked about, median |error|:")
    print(f"  AIConfigurator:               {_by_batch(fit_rows, 'aic_err')}")
    print(f"  gpuplan leave-one-source-out: {_by_batch(fit_rows, 'gp_loso')}")
    print(f"\nnot covered ({len(uncovered)} of {len(pts)}):")
    for p, why in uncovered:
        print(f"  {p['id']:14} {p['gpu']:14} {p['model'][:36]:36} {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
