"""Usage checks of a load against the model, and the refusal when no offer serves it (pure).

A Need that cannot be meant (a TP degree the model does not divide by, a context longer than it
takes, conflicting sizes) is a usage error (exit 2); a catalog where nothing serves a sound Need
is NoFeasibleOfferError (exit 3), whose one line counts the commonest reasons by kind and whose
hint fits the commonest."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from planner.decide.fit import BATCH_WORKLOAD, OTHER_COUNT, Candidate
from planner.decide.objective import OBJECTIVES, WORKLOADS
from planner.decide.plan import Need
from planner.errors import NoFeasibleOfferError, UsageError
from planner.model.tensor_parallel import tp_problem


def validate_need(need: Need) -> None:
    if need.objective not in OBJECTIVES:
        raise UsageError(f"unknown objective '{need.objective}'", f"valid: {', '.join(OBJECTIVES)}")
    if need.workload not in WORKLOADS:
        raise UsageError(f"unknown workload '{need.workload}'", f"valid: {', '.join(WORKLOADS)}")
    if need.target_output_tokens_per_s is not None and need.target_output_tokens_per_s <= 0:
        raise UsageError("the throughput target must be positive")
    if need.replica_headroom < 0:
        raise UsageError("replica headroom must be >= 0")
    if need.job_requests is not None and need.workload != BATCH_WORKLOAD:
        raise UsageError("a job size (job-requests) needs the batch workload")
    if need.deadline_hours is not None and (not need.job_requests or need.deadline_hours <= 0):
        raise UsageError("a deadline needs a job size (job-requests) and a positive duration")
    if need.job_requests is not None and need.job_requests <= 0:
        raise UsageError("job-requests must be positive")
    names = (
        "context",
        "concurrency",
        "prompt_tokens",
        "output_tokens",
        "max_nodes",
        "max_replicas",
    )
    for name in names:
        if getattr(need, name) <= 0:
            raise UsageError(f"{name.replace('_', '-')} must be positive")
    for name in ("gpus", "tp"):
        value = getattr(need, name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name} must be positive")
    if need.gpus is not None and need.tp is not None and need.gpus % need.tp:
        raise UsageError(
            f"--tp {need.tp} does not divide --gpus {need.gpus}",
            "tensor parallel runs within one machine: give a TP degree that divides its GPUs",
        )
    if need.prompt_tokens + need.output_tokens > need.context:
        raise UsageError(
            f"prompt ({need.prompt_tokens}) + output ({need.output_tokens}) tokens exceed "
            f"--context {need.context}",
            "raise --context or shorten the workload",
        )


def check_context(cands: Sequence[Candidate], need: Need) -> None:
    """A context longer than the model takes is a usage error: vLLM refuses it."""
    for cand in cands:
        if need.context > cand.spec.max_position_embeddings:
            raise UsageError(
                f"--context {need.context} exceeds {cand.spec.name}'s max_position_embeddings "
                f"({cand.spec.max_position_embeddings}); vLLM refuses it",
                f"use --context {cand.spec.max_position_embeddings} or less",
            )


def check_tp(cands: Sequence[Candidate], need: Need) -> None:
    """A --tp pin that vLLM refuses for every format of the model is a usage error, not a
    catalog without offers."""
    if need.tp is None or not cands:
        return
    problems = [tp_problem(c.spec, c.fmt, c.qc, need.tp) for c in cands]
    if all(problems):
        spec = cands[0].spec
        valid = [t for t in (1, 2, 4, 8, 16) if not tp_problem(spec, cands[0].fmt, cands[0].qc, t)]
        raise UsageError(
            f"--tp {need.tp}: {problems[0]}",
            f"valid TP degrees for this model include {', '.join(map(str, valid))}"
            if valid
            else "drop --tp",
        )


def no_feasible_offer(
    reasons: Sequence[str], offers: int, need: Need | None = None
) -> NoFeasibleOfferError:
    """The refusal when no offer serves the load: the two commonest reasons by kind (reasons
    differ in their figures, "$/h 3.10 > --max-price 1"; the example of a price is the
    cheapest, to say how far the cap is), and the hint of the commonest."""
    if not reasons:
        return NoFeasibleOfferError(
            "no offer matches the filters",
            "loosen --gpu / --instance-type / --gpus / --providers / --regions / --max-price",
        )
    # a limit the user set that stopped offers which otherwise serve the load says more than
    # the many cards too small for the model: those kinds first, then the commonest
    counted = Counter(map(_reason_kind, reasons)).most_common()
    ordered = sorted(counted, key=lambda kn: _rank_kind(kn[0]))
    # machines with another GPU count than --gpus say nothing about the ones with that count,
    # which were rejected for a reason of their own: that reason is the one to say
    own = [kn for kn in ordered if OTHER_COUNT not in kn[0]]
    kinds = (own or ordered)[:2]
    example: dict[str, str] = {}
    varied: set[str] = set()  # kinds whose reasons differ: the example is one of them
    for reason in reasons:
        kind = _reason_kind(reason)
        if kind in example and reason != example[kind]:
            varied.add(kind)
        if kind not in example or (
            "--max-price" in kind and _price(reason) < _price(example[kind])
        ):
            example[kind] = reason

    def count(kind: str, n: int) -> str:
        # "206 x $0.23/h > --max-price 0.1" read as if all 206 cost $0.23/h: the cheapest
        # is "from", another varied reason an example
        said = "from " if "--max-price" in kind else "e.g. "
        return f"{n} x {said if kind in varied else ''}{_clip(example[kind], 160)}"

    return NoFeasibleOfferError(
        f"no feasible offer among {offers}: " + " | ".join(count(k, n) for k, n in kinds),
        _hint_for(kinds[0][0], need),
    )


STATED = ("--max-ttft", "--min-tokens-per-s", "--max-price", "--max-replicas", "--deadline-hours")


def _rank_kind(kind: str) -> int:
    """0: a limit the user stated stopped it; 1: the default service level; 2: the rest."""
    if "(default service level)" in kind:
        return 1
    return 0 if any(flag in kind for flag in STATED) else 2


def _price(reason: str) -> float:
    found = re.search(r"\$([\d,.]+)/h", reason)
    return float(found.group(1).replace(",", "")) if found else float("inf")


def _clip(text: str, limit: int) -> str:
    """``text`` cut at a word boundary within ``limit`` characters, marked when cut."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(";,:") + " ..."


def _reason_kind(reason: str) -> str:
    return re.sub(r"\d[\d,.]*", "#", reason)


_HINTS = (  # (text of the commonest rejection, digit-free: digits read as #; what to try)
    ("--max-price", "raise --max-price, or try --quant auto for a smaller checkpoint"),
    ("needed to finish", "raise --max-replicas, or allow more time (--deadline-hours)"),
    ("--max-replicas", "raise --max-replicas, or relax the load (--concurrency, --context)"),
    ("--max-ttft", "relax --max-ttft, or shorten --prompt-tokens"),
    ("--deadline-hours", "allow more time (--deadline-hours), or shorten --output-tokens"),
    ("monthly rental", "include providers that rent by the hour, or drop --job-requests"),
    ("--min-tokens-per-s", "relax --min-tokens-per-s, or allow more GPUs per machine"),
    ("spot", "drop --spot: these offers have no spot price"),
    ("no published dense", "choose another --gpu: this card's speed cannot be estimated"),
    ("KV cache needs", "use --kv-cache-dtype auto, or choose another --gpu"),
    (
        "in vLLM (its Triton",
        "use --kv-cache-dtype auto, or a --gpu of compute capability 8.9+ (L40S, H100 and later)",
    ),
    (
        "refuses float",
        "choose a --gpu with BF16 (compute capability 8.0+: A10, L4, A100 and later)",
    ),
    # the format or the card, not the load: a smaller context or more memory does not help
    (
        "not supported on AMD GPUs",
        "choose another --quant (bf16 or fp8 run on AMD GPUs), or an NVIDIA --gpu",
    ),
    ("builds without sm_", "choose a newer --gpu (compute capability 7.5+: T4 and later)"),
    ("sparse MLA attention", "choose --gpu h100-sxm, h200-sxm or b200 (or an AMD Instinct)"),
    (
        "needs compute capability",
        "choose a newer --gpu (compute capability 8.0+: A10, A100 and later)",
    ),
    ("GGUF is served only", "give --quant bf16, fp8 or awq, or a checkpoint's Hugging Face id"),
    (
        "is not a whole number of blocks",
        "vLLM cannot split these FP8 blocks over that many GPUs: allow --max-nodes 2 (fewer "
        "GPUs per node, a pipeline over nodes on AWS and GCP) or choose a --gpu with more memory",
    ),
    (
        "one node in the catalog holds",
        "the machines that hold the model are rejected for "
        "their own reasons: see them with --format json, or relax the load",
    ),
    ("--gpus", "no offer has that many GPUs per machine: give another --gpus, or drop it"),
)


def _hint_for(kind: str, need: Need | None = None) -> str:
    for needle, hint in _HINTS:
        if needle in kind:
            return hint
    more = "another --tp" if need is not None and need.tp is not None else "more GPUs per node"
    nodes = (
        ", --max-nodes 2 (a pipeline over nodes on AWS and GCP)"
        if need is not None and need.max_nodes == 1
        else ""
    )
    return (
        f"try --quant auto, a smaller --context or --concurrency, {more}{nodes}, or a higher "
        "--gpu-memory-utilization"
    )
