"""CLI and ranking speed.

1. Wall time of `gpuplan recommend llama-3.1-8b` on the embedded catalog (fresh processes,
   median of 9; target < 0.5 s on the 2-core dev machine: no cloud SDK imports on this path).
2. Ranking time for a synthetic catalog of 100,000 offers (target < 1 s): a dense model, a
   dense model in every format, and a block-FP8 MoE checkpoint.

Run: python benchmarks/cli_speed.py
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cli_wall_time(runs: int = 9) -> list[float]:
    exe = shutil.which("gpuplan") or str(Path(sys.executable).parent / "gpuplan")
    env = {**os.environ, "GPUPLAN_CACHE_DIR": tempfile.mkdtemp(prefix="gpuplan-speed-")}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [exe, "recommend", "llama-3.1-8b", "--format", "json"],
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        times.append(time.perf_counter() - start)
    return times


def synthetic_offers(n: int):
    from planner.offers.catalog import snapshot_offers

    base = snapshot_offers()
    rng = random.Random(42)
    out = []
    for i in range(n):
        o = rng.choice(base)
        out.append(
            replace(
                o,
                instance_type=f"{o.instance_type}#{i}",
                price_usd_per_hour=round(o.price_usd_per_hour * rng.uniform(0.7, 1.3), 4),
            )
        )
    return out


def main() -> None:
    times = cli_wall_time()
    print(
        f"gpuplan recommend llama-3.1-8b: median {statistics.median(times):.3f} s, "
        f"min {min(times):.3f} s, max {max(times):.3f} s over {len(times)} runs "
        "(target median < 0.5 s)"
    )
    from planner.decide.plan import Need
    from planner.decide.rank import candidates_for, rank_offers
    from planner.model.sources import load_model_spec, quantized_variants

    offers = synthetic_offers(100_000)
    # MiniMax-M2: a block-FP8 MoE checkpoint, whose TP rule reads the tensor inventory (cached
    # per model; walked per layout, ranking it took seconds)
    for model, quant in [("llama-3.1-8b", None), ("llama-3.1-70b", "auto"), ("minimax-m2", None)]:
        cands = candidates_for(spec := load_model_spec(model), quant, quantized_variants(spec.name))
        start = time.perf_counter()
        ranking = rank_offers(cands, offers, Need())
        elapsed = time.perf_counter() - start
        print(
            f"rank 100,000 offers for {model} (quant {quant}): {elapsed:.3f} s, "
            f"{len(ranking.plans):,} feasible (target < 1 s)"
        )


if __name__ == "__main__":
    main()
