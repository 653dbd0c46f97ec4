"""A chosen option made into a Plan: the `vllm serve` arguments, the reasons and the notes
(pure; planner/decide/rank.py chooses, this writes the choice down)."""

from __future__ import annotations

from planner.decide.fit import Candidate
from planner.decide.load import Operating
from planner.decide.objective import RELAXED_NOTE, objective_value, replicas_note
from planner.decide.plan import TRUST_REMOTE_CODE, Estimate, Need, Plan
from planner.model.tensor_parallel import expert_gpus, expert_parallel
from planner.offers.gpus import gpu_table
from planner.offers.offer import Offer

# The speed model charges a hybrid model's recurrent state traffic, not its recurrent kernels;
# its one published measurement (Nemotron-3-Nano-30B-A3B on an H200, vLLM recipes) ran 77%
# slower than predicted (benchmarks/speed_accuracy.py, hx004).
HYBRID_SPEED_NOTE = (
    "speed of hybrid (recurrent) models is optimistic at large batch: of two published "
    "measurements, one stream ran within 5% of the estimate and 1,024 at once 77% slower; "
    "size throughput-bound loads with a margin"
)


# Data-parallel replicas of an MoE model on one machine share its experts (fit.memory_budget), so
# MLA models (whose latent KV is whole on every GPU of a TP group) hold each request on one
# replica's GPUs: vLLM's data-parallel attention. Each replica (one machine, or a pipeline of
# several) runs its own vLLM;
# vLLM's multi-node data parallel (one DP group over several machines) is not planned.
MLA_DP_NOTE = (
    "each replica runs its own vLLM: vLLM's data parallel across machines (--data-parallel-size "
    "over several nodes, the experts shared by all their GPUs) would hold more requests per GPU "
    "and may need fewer machines for this load: gpuplan does not plan it"
)


def vllm_args(cand: Candidate, op: Operating, need: Need) -> tuple[str, ...]:
    """The `vllm serve` arguments, API key excluded: the model first and positional (`--model`
    is deprecated in `vllm serve`). Multi-node runs use vLLM's native --nnodes/--node-rank,
    which the generated project adds per node (the stock image has no Ray)."""
    fit = op.fit
    lay = fit.layout
    args = [cand.spec.name, "--served-model-name", cand.base_model]
    if cand.spec.revision:  # the commit planned, which vLLM also takes the tokenizer and any
        # repository code from (its tokenizer_revision and transformers' code_revision default
        # to the revision): a later push to the repository changes nothing served
        args += ["--revision", cand.spec.revision]
    args += ["--tensor-parallel-size", str(lay.tp)]
    if lay.pp > 1:
        args += ["--pipeline-parallel-size", str(lay.pp)]
    if lay.dp > 1:
        args += ["--data-parallel-size", str(lay.dp)]
    if expert_parallel(cand.spec, cand.fmt, cand.qc, expert_gpus(cand.spec, lay.tp, lay.dp)):
        args += ["--enable-expert-parallel"]
    args += ["--max-model-len", str(need.context)]
    args += ["--gpu-memory-utilization", f"{need.gpu_memory_utilization:g}"]
    # The scheduler may take as many typical requests as fit, so load above the declared one
    # queues less, up to vLLM's default for the card, for which the memory model sizes the
    # sampler warm-up.
    args += ["--max-num-seqs", str(fit.max_batch)]
    if cand.online_quantization and cand.fmt.vllm_quantization:
        args += ["--quantization", cand.fmt.vllm_quantization]
    if fit.support.dtype_half:
        args += ["--dtype", "half"]
    if need.kv_cache_dtype != "auto":
        args += ["--kv-cache-dtype", need.kv_cache_dtype]
    if cand.spec.trust_remote_code:
        args += [TRUST_REMOTE_CODE]
    return tuple(args)


def make_plan(cand: Candidate, offer: Offer, op: Operating, est: Estimate, need: Need) -> Plan:
    fit = op.fit
    each = f" per {fit.layout.nodes}-node replica" if fit.layout.nodes > 1 else " per machine"
    reasons = [
        f"{cand.fmt.name} on {offer.gpu_count}x {offer.gpu}: {fit.layout.label}, "
        f"{est.weights_gib_per_gpu:.1f} GiB weights + {est.overhead_gib_per_gpu:.1f} GiB "
        f"overhead per GPU, room for {fit.max_per_replica * fit.layout.dp} x "
        f"{need.context}-token requests{each if est.replicas > 1 else ''}"
    ]
    if fit.support.note:
        reasons.append(fit.support.note)
    notes = list(cand.spec.notes)
    if cand.spec.is_guess:
        notes.insert(0, "GUESS: the model's shape was guessed from its name")
    gpu = gpu_table().get(offer.gpu)
    if gpu is not None and gpu.vendor == "amd":
        notes.append("AMD GPU: vLLM runs from its ROCm image, not the CUDA one")
    if cand.spec.recurrent_layer_count:
        notes.append(HYBRID_SPEED_NOTE)
    gpus = expert_gpus(cand.spec, fit.layout.tp, fit.layout.dp)
    if gpus > fit.layout.tp:
        notes.append(
            f"the {fit.layout.dp} data-parallel replicas share the routed experts, spread over "
            f"all {gpus} GPUs (vLLM's layout for MoE models), and exchange every replica's "
            "tokens at each MoE layer: the speed estimate charges that exchange (not calibrated)"
        )
    if cand.spec.is_moe and est.replicas > 1:
        notes.append(MLA_DP_NOTE)
    if fit.layout.pp > 1:
        notes.append(
            f"multi-node: {fit.layout.nodes} nodes, TP within a node and PP across "
            "nodes over ordinary networking (vLLM's native multi-node mode, no Ray)"
        )
    used = fit.layout.tp * fit.layout.pp * fit.layout.dp // max(fit.layout.nodes, 1)
    if used < offer.gpu_count and fit.layout.pp == 1:
        notes.append(
            f"the load uses {used} of the machine's {offer.gpu_count} GPUs; a larger load "
            "would use the rest as data-parallel replicas"
        )
    if not need.default_service_level and need.workload == "interactive":
        notes.append(RELAXED_NOTE)
    replicas = replicas_note(op, est, need)
    if replicas:
        notes.append(replicas)
    if need.job_requests:
        notes.append(
            f"job: {need.job_requests:,} requests in about {job_duration(est.job_hours)} for about "
            f"${est.job_usd:,.2f}, after start-up (renting the machines, downloading "
            f"{est.replica_weights_gib(fit.layout):,.0f} GiB of weights, "
            "loading vLLM: minutes, billed too) and until `pulumi destroy` stops the billing"
        )
    if offer.billing == "monthly":
        notes.append(
            f"monthly rental: ${est.monthly_commitment_usd:,.0f}/month + "
            f"${est.setup_fee_usd:,.0f} setup; $/h spreads the setup over "
            f"{need.horizon_months:g} month(s)"
        )
    return Plan(
        model=cand.spec.name, base_model=cand.base_model, model_source=cand.spec.source,
        model_is_guess=cand.spec.is_guess, quant_format=cand.fmt.name, need=need, offer=offer,
        layout=fit.layout, vllm_args=vllm_args(cand, op, need), estimate=est,
        objective_value=objective_value(est, need), reasons=tuple(reasons), notes=tuple(notes),
    )  # fmt: skip


def job_duration(hours: float) -> str:
    """A job's duration: hours from one hour, else minutes (seconds under a minute); "0.17 h"
    beside "5.2 min" in one column read as two scales."""
    if hours * 60 >= 59.95:  # what would print as "60.0 min"
        return f"{hours:,.2f} h"
    return f"{hours * 60:.1f} min" if hours * 60 >= 1 else f"{hours * 3600:.0f} s"
