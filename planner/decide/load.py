"""A fitted layout under the user's declared load (pure): how many streams one vLLM replica
serves, at which batch, how many identical machines, and the service level it must meet.

- An interactive load of ``concurrency`` streams: each vLLM replica serves its share; with
  stream replicas (Need.stream_replicas), the fewest identical machines whose share each
  replica holds in memory and serves within the service level (stream_cap).
- A batch job at saturation: the largest batch that fits, never more requests than the job has.
- An online throughput target: replicas sized by each machine's capacity within the service
  level (level_batch); figures at the target, each replica at the smallest batch that carries
  its share (rate_batch). A job with a deadline sizes replicas to it at saturation.

planner/decide/objective.py prices and scores the result."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from planner.decide.fit import BATCH_WORKLOAD, Fit, saturates
from planner.decide.perf import loaded_token_latency_s, loaded_ttft_s, output_tokens_per_s
from planner.decide.plan import Need

# The default service level of an interactive load. TTFT within 2 s is MLPerf Inference's
# Server-scenario bound for Llama-2-70B (TTFT p99 < 2 s, TPOT p99 < 200 ms; e.g. the AMD
# v4.1 result https://github.com/mlcommons/inference_results_v4.1/blob/a2f5d66d17e8f75c02fd74dfe810ecca6a046696/closed/AMD/results/1xMI300X_2xEPYC-9374F/llama2-70b-99.9/Server/performance/run_1/mlperf_log_summary.txt
# read 2026-11-30). Its 5 tokens/s per stream is slower than people read, so the default asks
# for 20 tokens/s (50 ms between tokens, about four times a fast reader's pace): an
# assumption, stated in the README, that a chat user accepts it.
DEFAULT_MIN_TOKENS_PER_S = 20.0
# The pace matters while an answer is read as it streams. A short one (a label, a yes/no, a
# number) is read whole: it is enough that the rest of it follows the first token within 1 s,
# the limit for a user's flow of thought to stay uninterrupted (J. Nielsen, "Response Times:
# The 3 Important Limits", 1993, https://www.nngroup.com/articles/response-times-3-important-limits/).
# So an answer of o tokens is held to (o - 1) tokens in 1 s when that is below 20 tok/s: below
# 21 tokens; from 21 tokens on, the 20 tok/s applies unchanged (an assumption, in the README).
DEFAULT_REST_OF_ANSWER_S = 1.0
DEFAULT_MAX_TTFT_MS = 2000.0
# Prefill time grows with the prompt on any hardware, so one bound for every length would put a
# long document on many GPUs only to start answering in 2 s (an 8B model on 8 GPUs for a
# 120,000-token prompt). The 2 s holds up to DEFAULT_TTFT_PROMPT_TOKENS; a longer prompt may
# take proportionally longer (at least 2,048 prompt tokens/s): an assumption, in the README.
DEFAULT_TTFT_PROMPT_TOKENS = 4096


def default_min_tokens_per_s(output_tokens: int) -> float:
    """The default service level's tokens/s per stream for answers of ``output_tokens``."""
    return min(DEFAULT_MIN_TOKENS_PER_S, (output_tokens - 1) / DEFAULT_REST_OF_ANSWER_S)


def default_max_ttft_ms(prompt_tokens: int) -> float:
    """The default service level's TTFT bound for prompts of ``prompt_tokens``."""
    return round(DEFAULT_MAX_TTFT_MS * max(1.0, prompt_tokens / DEFAULT_TTFT_PROMPT_TOKENS))


@dataclass(frozen=True, slots=True)
class Operating:
    """A fit under the declared load (before prices)."""

    fit: Fit
    replicas: int  # identical machines (a throughput target, or streams one machine can't serve)
    batch: int  # sequences one vLLM replica serves at the load
    itl_s: float  # between one stream's tokens with `batch` streams in flight (TPOT)
    ttft_s: float
    machine_tokens_per_s: float  # output tokens/s of one machine (all its DP replicas)
    capacity_tokens_per_s: float | None = None  # a target's, per machine (see operate_with)
    # with stream replicas: stream_cap's (streams, bound) when operate worked it out (it is a
    # bisection over the speed model; each plan's note reads it again)
    cap: tuple[int, str] | None = None

    @property
    def machines(self) -> int:
        return self.fit.layout.nodes * self.replicas

    @property
    def tokens_per_s(self) -> float:
        return self.machine_tokens_per_s * self.replicas

    @property
    def capacity(self) -> float:  # output tokens/s all machines serve at most
        return (self.capacity_tokens_per_s or self.machine_tokens_per_s) * self.replicas


def service_level(need: Need) -> tuple[float | None, float | None]:
    """(min tokens/s per stream, max TTFT ms) the plan must meet: the user's, else for an
    interactive load the documented default."""
    min_tps, max_ttft = need.min_tokens_per_s, need.max_ttft_ms
    if need.default_service_level and (online_target(need) or not saturates(need)):
        min_tps = default_min_tokens_per_s(need.output_tokens) if min_tps is None else min_tps
        max_ttft = default_max_ttft_ms(need.prompt_tokens) if max_ttft is None else max_ttft
    if not streams_tokens(need):  # no time between tokens: only the TTFT bound
        min_tps = None
    return min_tps, max_ttft


def short_answer_note(need: Need) -> str:
    """What the default per-stream speed stands for when an answer is too short to be read as
    it streams (default_min_tokens_per_s), else ""."""
    o = need.output_tokens
    if need.min_tokens_per_s is not None or not streams_tokens(need):
        return ""
    if default_min_tokens_per_s(o) >= DEFAULT_MIN_TOKENS_PER_S:
        return ""
    return f"a {o}-token answer's rest within {DEFAULT_REST_OF_ANSWER_S:g} s"


def streams_tokens(need: Need) -> bool:
    """Whether requests stream tokens after the first: with one token a request there is no
    time between tokens, so no per-stream speed to check or show."""
    return need.output_tokens > 1


def uses_default_service_level(need: Need) -> bool:
    """Whether a default half is in force (not: whether a stated one is, which one-token
    outputs drop: service_level)."""
    min_tps, max_ttft = service_level(need)
    return (need.min_tokens_per_s is None and min_tps is not None) or (
        need.max_ttft_ms is None and max_ttft is not None
    )


def spreads(need: Need) -> bool:
    """Whether identical machines share an interactive load's streams (Need.stream_replicas)."""
    return need.stream_replicas and not saturates(need)


def online_target(need: Need) -> bool:
    """An online throughput target (not a job): figures at the target, service level applies."""
    return bool(need.target_output_tokens_per_s) and need.workload != BATCH_WORKLOAD


def _missed_level(fit: Fit, need: Need, batch: int) -> str | None:
    """The part of the service level ``batch`` streams miss, "speed" or "TTFT", or None, on
    the rounded figures that static_violation reads (both only worsen as the batch grows)."""
    min_tps, max_ttft = service_level(need)
    p, o = need.prompt_tokens, need.output_tokens

    def speed() -> float:
        return round(1 / loaded_token_latency_s(fit.load, fit.hw, batch, p, o), 2)

    def ttft_ms() -> float:
        return round(loaded_ttft_s(fit.load, fit.hw, batch, p, o) * 1000, 1)

    if min_tps is not None and speed() < min_tps:
        return "speed"
    if max_ttft is not None and ttft_ms() > max_ttft:
        return "TTFT"
    return None


def level_batch(fit: Fit, need: Need, cap: int) -> int:
    """The largest batch up to ``cap`` whose streams meet the service level (bisection); ``cap``
    when none applies, it meets it or even one stream misses it (static_violation then says
    why)."""
    if service_level(need) == (None, None) or cap < 1:
        return cap
    if _missed_level(fit, need, cap) is None or _missed_level(fit, need, 1) is not None:
        return cap
    lo, hi = 1, cap  # meets at lo, not at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _missed_level(fit, need, mid) is None else (lo, mid)
    return lo


def rate_batch(fit: Fit, need: Need, rate: float, cap: int) -> int:
    """The smallest batch up to ``cap`` at which one vLLM replica serves ``rate`` output
    tokens/s (throughput only grows with the batch), or ``cap`` when none does."""
    prompt, output = need.prompt_tokens, need.output_tokens

    def serves(batch: int) -> bool:
        return output_tokens_per_s(fit.load, fit.hw, batch, prompt, output) >= rate

    if cap <= 1 or serves(1):
        return min(cap, 1)
    if not serves(cap):
        return cap
    lo, hi = 1, cap  # serves at hi, not at lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if serves(mid) else (mid, hi)
    return hi


def stream_cap(fit: Fit, need: Need) -> tuple[int, str]:
    """The most streams one vLLM replica of ``fit`` serves under ``need`` and what bounds it:
    "memory" (full-context requests its KV cache holds), "max-num-seqs" (the sequences vLLM
    schedules at once: more would queue) or the part of the service level one more stream
    would miss, "speed" or "TTFT" (the largest batch that meets it). When even one stream
    misses the service level, replicas cannot help, and the memory bound stands
    (static_violation then says why the plan fails)."""
    cap, limit = fit.max_per_replica, "memory"
    if fit.max_batch < cap:
        cap, limit = fit.max_batch, "max-num-seqs"
    best = level_batch(fit, need, cap)
    missed = _missed_level(fit, need, best + 1) if best < cap else None
    return (best, missed) if missed else (cap, limit)


def operate(fit: Fit, need: Need) -> Operating:
    """The fit at the user's load: per-replica batch, speeds, and machines for a target or,
    with stream replicas, the fewest machines whose share of the streams each serves."""
    if spreads(need):
        cap = stream_cap(fit, need)
        per_machine = fit.layout.dp * max(cap[0], 1)
        machines = max(1, math.ceil(need.concurrency / per_machine))
        return replace(operate_with(fit, need, machines), cap=cap)
    return operate_with(fit, need, 1)


def operate_with(fit: Fit, need: Need, machines: int) -> Operating:
    """``operate`` with ``machines`` identical machines sharing an interactive load's streams
    (1 unless stream replicas); a throughput target sizes its own replicas."""
    lay = fit.layout
    needed = math.ceil(need.concurrency / (machines * lay.dp))
    prompt, output = need.prompt_tokens, need.output_tokens
    replicas, capacity = machines, None
    if saturates(need):
        batch = fit.max_batch
        if need.job_requests:  # a job never has more requests in flight than it has
            batch = max(1, min(batch, math.ceil(need.job_requests / lay.dp)))
        if online_target(need):  # a machine's capacity: its batch within the service level
            batch = level_batch(fit, need, batch)
        machine = lay.dp * output_tokens_per_s(fit.load, fit.hw, batch, prompt, output)
    else:
        # Each stream gets the speed of the busiest replica's share of the load.
        batch = needed
        per_stream = output_tokens_per_s(fit.load, fit.hw, batch, prompt, output) / batch
        machine = need.concurrency * per_stream / machines
    if need.target_output_tokens_per_s:
        wanted = need.target_output_tokens_per_s * (1 + need.replica_headroom)
        replicas = max(1, math.ceil(wanted / machine))
        while need.job_requests:  # each replica runs its share of the job, not all of it
            share = max(1, min(batch, math.ceil(need.job_requests / (replicas * lay.dp))))
            if share == batch:
                break
            batch, machine = (
                share,
                lay.dp * output_tokens_per_s(fit.load, fit.hw, share, prompt, output),
            )
            replicas = max(1, math.ceil(wanted / machine))
        if online_target(need):  # figures at the target: each replica carries its share
            capacity = machine
            share = need.target_output_tokens_per_s / (replicas * lay.dp)
            batch = rate_batch(fit, need, share, batch)
            machine = need.target_output_tokens_per_s / replicas
    # What one stream sees between its tokens with `batch` streams in flight on its replica:
    # the decode step at that batch plus the prefills of the requests that replace finished
    # ones (chunked prefill shares the steps), as serving benchmarks report TPOT. The service
    # level is checked on it, so it must not be the speed of a stream alone on the GPU.
    itl = loaded_token_latency_s(fit.load, fit.hw, batch, prompt, output)
    ttft = loaded_ttft_s(fit.load, fit.hw, batch, prompt, output)
    return Operating(fit, replicas, batch, itl, ttft, machine, capacity)
