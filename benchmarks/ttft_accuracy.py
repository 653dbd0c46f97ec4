"""Time to first token under load: the speed model against published vLLM benchmark runs
(benchmarks/data/ttft_under_load.json: mean TTFTs of runs at a stated concurrency, all prompts
sent at once, or one request at a time). Never fitted: each source's runs are predicted with the
constants refitted without that source's calibration points (leave one source out, as
benchmarks/speed_accuracy.py does), by planner/decide/benchrun.benchmark_ttft_s (a run's first
wave, its queue, then the planner's own loaded TTFT, perf.loaded_ttft_s) or, for one request at a
time, perf.prefill_s. The vLLM points graded A or B are scored; grade C apart.

Run:  python benchmarks/ttft_accuracy.py            (refits per source: 3-8 min on 2 cores)
      python benchmarks/ttft_accuracy.py --shipped  (the shipped constants, in sample for the
                                                     runs whose throughput they were fitted on)
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import speed_accuracy as sa

from planner.decide import benchrun, perf
from planner.errors import UsageError

# A closed-loop run whose prompt count is not published is taken as long (its mean is then
# about the steady state's): 100 prompts per stream, an assumption said in the output.
UNSTATED_PROMPTS_PER_STREAM = 100


def unmodelled(p: dict) -> str | None:
    """Why a point is not predicted (None: it is)."""
    if p.get("pp", 1) > 1:
        return "pipeline parallel (the calibration setup runs one stage)"
    if p.get("speculative"):
        return "speculative decoding"
    try:
        sa._setup(p["id"])
    except UsageError as exc:
        return str(exc)
    return None


def load_kind(p: dict) -> str:
    if p.get("batch") == 1:
        return "one request at a time"
    return "all prompts at once" if p.get("batch") is None else "closed loop"


def predict_ms(p: dict) -> float:
    cand, hw, load, free = sa._setup(p["id"])
    prompt, output = p["prompt"], p["output"]
    if p.get("batch") == 1:
        return perf.prefill_s(load, hw, prompt) * 1000
    running = sa._admitted(p, cand, hw, free)
    client = p.get("batch")
    requests = p.get("num_prompts") or UNSTATED_PROMPTS_PER_STREAM * client
    return 1000 * benchrun.benchmark_ttft_s(
        load, hw, requests, prompt, round(output), running, client,
        p.get("lengths") == "fixed", p.get("max_num_batched_tokens"),
    )  # fmt: skip


def estimates(pts: list[dict], shipped: bool) -> dict[str, float]:
    """Each point's estimate (ms), with constants refitted without its source unless
    ``shipped``."""
    if shipped:
        return {p["id"]: predict_ms(p) for p in pts}
    sa._set(sa.HELD)
    train = [q for q in sa.points() if sa.fitted(q)]
    return sa.leave_one_source_out(pts, train, measure=predict_ms)


def line(label: str, err: dict[str, float], sel: list[dict]) -> None:
    if sel:
        values = [err[p["id"]] for p in sel]
        print(f"  {label:44} median |error| {statistics.median(map(abs, values)):5.1f}%, "
              f"median signed {statistics.median(values):+6.1f}% (n={len(sel)})")  # fmt: skip


def main() -> None:
    shipped = "--shipped" in sys.argv
    every = list(sa.ttft_load_points())
    skipped = {p["id"]: why for p in every if (why := unmodelled(p))}
    pts = [p for p in every if p["id"] not in skipped]
    est = estimates(pts, shipped)  # each as its source's refit predicted it
    err = {p["id"]: (est[p["id"]] - p["value"]) / p["value"] * 100 for p in pts}
    print(f"{'id':7} {'load':22} {'gpu':14} {'tp':>2} {'prompt':>6} {'out':>5} {'streams':>7} "
          f"{'prompts':>7} {'estimate':>9} {'published':>9} {'error':>8}  source")  # fmt: skip
    for p in pts:
        streams = "all" if p.get("batch") is None else p["batch"]
        print(f"{p['id']:7} {load_kind(p):22} {p['gpu'][:14]:14} {p['tp']:2} {p['prompt']:6} "
              f"{p['output']:5.0f} {streams!s:>7} {p.get('num_prompts', '-')!s:>7} "
              f"{est[p['id']]:9.0f} {p['value']:9.0f} {err[p['id']]:+7.1f}%  "
              f"{sa.source_of(p)}")  # fmt: skip
    graded = [p for p in pts if p["quality"] in {"A", "B"}]
    how = "shipped constants (in sample)" if shipped else "constants fitted without the source"
    print(f"\nvLLM runs graded A/B ({len(graded)}; {how}):")
    line("all", err, graded)
    for kind in ("one request at a time", "closed loop", "all prompts at once"):
        line(kind, err, [p for p in graded if load_kind(p) == kind])
    for src in sorted({sa.source_of(p) for p in graded}):
        line(src[:44], err, [p for p in graded if sa.source_of(p) == src])
    line("grade C (apart)", err, [p for p in pts if p["quality"] == "C"])
    unstated = [p["id"] for p in pts if p.get("batch") not in (None, 1) and "num_prompts" not in p]
    if unstated:
        print(f"  prompt count not published, taken as {UNSTATED_PROMPTS_PER_STREAM} per stream: "
              f"{len(unstated)} points")  # fmt: skip
    for pid, why in skipped.items():
        print(f"  not predicted: {pid}: {why}")


if __name__ == "__main__":
    main()
