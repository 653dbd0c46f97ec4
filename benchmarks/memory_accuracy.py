"""Memory model accuracy on published vLLM start-up logs
(planner/decide/data/vllm_memory_logs.json): the KV cache the planner leaves per GPU vs what
vLLM logged, the margin, and whether every logged refusal is refused. The overhead constants in
planner/model/footprint.py are fitted to these same logs (largest residual), so the figures
are in-sample: they show that nothing is over-promised, not an out-of-sample error.

Run: python benchmarks/memory_accuracy.py
Target: no over-promise (predicted KV <= logged on every start-up; every refusal refused);
median |error| of the KV cache within 10%.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.memory_logs import check, points  # noqa: E402


def main() -> None:
    print(
        f"{'id':5} {'model':36} {'gpu':22} {'TP':>2} {'PP':>2} {'util':>5} "
        f"{'KV pred':>8} {'KV log':>8} {'margin':>7} {'error':>7}  outcome"
    )
    errors, margins, over, refusals, refused, false_refusals = [], [], 0, 0, 0, 0
    public = 0
    for p in points():
        c = check(p)
        logged = c.logged_kv_gib
        margin = error = ""
        if p["started"] and logged is not None and logged > 0:
            margins.append(logged - c.predicted_kv_gib)
            errors.append(abs(c.predicted_kv_gib - logged) / logged * 100)
            margin = f"{logged - c.predicted_kv_gib:+.2f}"
            error = f"{(c.predicted_kv_gib - logged) / logged * 100:+.1f}%"
        if not p["started"]:
            refusals += 1
            refused += c.refused
        elif c.refused:
            false_refusals += 1
        over += c.over_promised
        public += not p["source"].startswith("not public")
        outcome = ("vLLM refused" if not p["started"] else "vLLM started") + (
            "; gpuplan refuses" if c.refused else "; gpuplan accepts"
        )
        if c.over_promised:
            outcome += "  OVER-PROMISE"
        print(
            f"{p['id']:5} {p['model'][:36]:36} {p['gpu'][:22]:22} {p['tp']:>2} {p['pp']:>2} "
            f"{p['gpu_memory_utilization']:>5g} {c.predicted_kv_gib:8.2f} "
            f"{logged if logged is not None else '-':>8} {margin:>7} {error:>7}  {outcome}"
        )
    print(
        f"\n{len(points())} logs ({public} with a public source): over-promised {over} "
        f"(target 0); refusals refused {refused}/{refusals}; started logs the planner would "
        f"refuse (conservative) {false_refusals}"
    )
    print(
        f"KV cache predicted vs logged on {len(errors)} start-ups (in-sample): median |error| "
        f"{statistics.median(errors):.1f}% (target <= 10%), margin logged - predicted median "
        f"{statistics.median(margins):.2f} GiB, min {min(margins):.2f} GiB, max "
        f"{max(margins):.2f} GiB"
    )


if __name__ == "__main__":
    main()
