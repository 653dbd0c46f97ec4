"""Plan quality on the embedded catalog: over 80 scenarios (models x quantizations x contexts x
concurrencies), how often the recommendation equals the brute-force optimum, and what it saves
against the usual rule of thumb ("the cheapest single GPU with enough memory for the BF16
weights", ignoring KV cache and speed). Then 20 heavy interactive loads (HEAVY x quantizations)
that no single machine of the catalog serves in some format: identical machines share their
streams, and the recommendation must still equal the brute-force optimum. Then the other
workload kinds (throughput targets, batch jobs with and without a deadline) on every model.

Run: python benchmarks/plan_quality.py      Target: optimum in every scenario.
"""

from __future__ import annotations

import collections
import itertools
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from planner.decide.plan import Need  # noqa: E402
from planner.decide.rank import candidates_for, plan_offer, recommend  # noqa: E402
from planner.errors import GpuplanError, NoFeasibleOfferError  # noqa: E402
from planner.model.footprint import count_params  # noqa: E402
from planner.model.sources import load_model_spec, quantized_variants  # noqa: E402
from planner.offers.catalog import snapshot_offers  # noqa: E402
from planner.offers.gpus import gpu_table  # noqa: E402
from tests.oracle import brute_force_best  # noqa: E402

MODELS = [
    "llama-3.1-8b",
    "qwen3-8b",
    "mistral-nemo",
    "phi-4",
    "gemma-2-27b",
    "qwen3-32b",
    "llama-3.1-70b",
    "qwen3-30b-a3b",
    "mixtral-8x7b",
    "gpt-oss-20b",
]
QUANTS = [None, "auto"]
CONTEXTS = [4096, 32768]
CONCURRENCY = [1, 16]
HEAVY = [  # (model, context, concurrency)
    ("llama-3.1-8b", 8192, 2000),
    ("llama-3.1-8b", 131072, 100),
    ("qwen3-32b", 8192, 600),
    ("llama-3.1-70b", 8192, 400),
    ("llama-3.1-405b", 8192, 256),
    ("mixtral-8x7b", 32768, 300),
    ("gpt-oss-20b", 32768, 1000),
    ("qwen3-30b-a3b", 32768, 500),
    ("gemma-2-27b", 8192, 500),
    ("phi-4", 16384, 800),
]


def naive_choice(spec, offers):
    """Cheapest single-GPU offer whose memory holds the BF16 weights."""
    total, _, _ = count_params(spec)
    need_gb = total * 2 / 1e9
    fitting = [
        (price, o)
        for o in offers
        if o.gpu_count == 1
        and o.gpu_memory_gb >= need_gb
        and o.gpu in gpu_table()
        # on demand, as the planner rents (None: not sold on demand)
        and (price := o.effective_usd_per_hour()) is not None
    ]
    best = min(fitting, key=lambda po: (po[0], po[1].provider, po[1].instance_type), default=None)
    return best[1] if best else None


def against_oracle(model, quant, ctx, conc, offers):
    """(spec, need, the recommendation's top plan or None, whether it is the brute-force
    optimum) for one scenario."""
    spec = load_model_spec(model)
    need = Need(context=min(ctx, spec.max_position_embeddings), concurrency=conc)
    cands = candidates_for(spec, quant, quantized_variants(spec.name))
    oracle = brute_force_best(cands, offers, need)
    try:
        top = recommend(cands, offers, need).plans[0]
    except NoFeasibleOfferError:
        return spec, need, None, oracle == math.inf
    return spec, need, top, math.isclose(top.objective_value, oracle, rel_tol=1e-12)


def tops(scenarios, offers, tally: collections.Counter):
    """(spec, need, top plan) of each scenario (model, quant, context, concurrency) that has a
    plan; tally counts the scenarios, the optimal answers and the infeasible ones."""
    for model, quant, ctx, conc in scenarios:
        spec, need, top, matches = against_oracle(model, quant, ctx, conc, offers)
        tally.update(rows=1, optimal=int(matches), infeasible=int(top is None))
        if top is not None:
            yield spec, need, top


def _quality_line(title: str, tally: collections.Counter) -> str:
    return (
        f"{title}: {tally['rows']}; recommendation == brute-force optimum: "
        f"{tally['optimal']}/{tally['rows']} (target: all); no feasible offer: "
        f"{tally['infeasible']}"
    )


def heavy(offers) -> None:
    """The HEAVY loads: optimum or not, and how many machines the top plan shares them with."""
    tally: collections.Counter = collections.Counter()
    scenarios = ((m, q, ctx, conc) for (m, ctx, conc), q in itertools.product(HEAVY, QUANTS))
    shared = [
        top.estimate.replicas
        for _, _, top in tops(scenarios, offers, tally)
        if top.need.stream_replicas
    ]
    print(
        f"{_quality_line('heavy interactive loads', tally)}; streams shared by identical "
        f"machines in {len(shared)} (replicas: median "
        f"{statistics.median(shared) if shared else 0:g}, max {max(shared, default=0)})"
    )


OTHER_LOADS = {  # the other workload kinds, each on every model of MODELS (unquantized)
    "target 500 tok/s": Need(target_output_tokens_per_s=500),
    "target 5,000 tok/s": Need(target_output_tokens_per_s=5000),
    "batch job of 10,000 requests": Need(workload="batch", job_requests=10_000),
    "job of 200,000 requests in 2 h": Need(
        workload="batch", job_requests=200_000, deadline_hours=2,
        target_output_tokens_per_s=200_000 * 250 / (2 * 3600),
    ),
}  # fmt: skip


def other_loads(offers) -> None:
    """Throughput targets and batch jobs: the recommendation against the brute-force optimum."""
    tally: collections.Counter = collections.Counter()
    for model, need in itertools.product(MODELS, OTHER_LOADS.values()):
        spec = load_model_spec(model)
        cands = candidates_for(spec, None, quantized_variants(spec.name))
        oracle = brute_force_best(cands, offers, need)
        try:
            top = recommend(cands, offers, need).plans[0]
            ok = math.isclose(top.objective_value, oracle, rel_tol=1e-12)
        except NoFeasibleOfferError:
            top, ok = None, oracle == math.inf
        tally.update(rows=1, optimal=int(ok), infeasible=int(top is None))
    print(_quality_line(f"targets and jobs ({', '.join(OTHER_LOADS)})", tally))


def main() -> None:
    offers = snapshot_offers()
    tally: collections.Counter = collections.Counter()
    naive_fail = naive_none = 0
    savings = []
    scenarios = itertools.product(MODELS, QUANTS, CONTEXTS, CONCURRENCY)
    for spec, need, top in tops(scenarios, offers, tally):
        naive = naive_choice(spec, offers)
        if naive is None:
            naive_none += 1
            continue
        # What the rule of thumb really gets: its GPU, served the way the user asked.
        result = plan_offer(candidates_for(spec, None), naive, need)
        if isinstance(result, str):
            naive_fail += 1
            continue
        savings.append(
            result.estimate.usd_per_million_output_tokens
            / top.estimate.usd_per_million_output_tokens
        )
    print(_quality_line("scenarios", tally))
    print(
        f"rule of thumb (cheapest 1 GPU with memory >= BF16 weights): would not start in "
        f"{naive_fail} scenarios (KV cache or overhead do not fit), no such GPU in "
        f"{naive_none}; where it starts, it costs {statistics.median(savings):.2f}x the "
        f"recommended $ per 1M output tokens (median; mean {statistics.mean(savings):.2f}x, "
        f"max {max(savings):.2f}x, n={len(savings)})"
    )
    heavy(offers)
    other_loads(offers)


if __name__ == "__main__":
    try:
        main()
    except GpuplanError as exc:
        raise SystemExit(f"error: {exc.message}") from None
